"""One score threshold that means what it says: it always filters, the proposal threshold follows it
unless set apart, `detect --threshold` changes what comes back, and every default agrees."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from kpnet_edge import config
from kpnet_edge.postprocess import (
    DEFAULT_SCORE,
    DEFAULT_SCORE_THRESHOLD,
    PostprocessParams,
    face_scores,
    lowest_proposal_score,
    postprocess,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "group.jpg"
MAP = config.OUTPUT_SIZE
PLANTED_SCORES = (0.1, 0.3, 0.6, 0.9)


def planted_maps() -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated proposals whose P_s are PLANTED_SCORES, flat heatmaps."""
    scale = np.full((config.NUM_SCALES, MAP, MAP), -12.0, np.float32)
    for index, probability in enumerate(PLANTED_SCORES):
        scale[30, 20 + 25 * index, 20 + 25 * index] = np.log(probability / (1 - probability))
    return scale, np.zeros((config.NUM_LANDMARKS, MAP, MAP), np.float32)


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.5, 0.95])
def test_score_threshold_alone_decides_which_faces_come_back(threshold):
    found = postprocess(*planted_maps(), PostprocessParams(score_threshold=threshold))
    expected = sorted(p for p in PLANTED_SCORES if p >= threshold)
    np.testing.assert_allclose(sorted(found.scores), expected, rtol=1e-6)


def test_explicit_proposal_threshold_is_a_separate_floor():
    params = PostprocessParams(score_threshold=0.05, proposal_threshold=0.5)
    found = postprocess(*planted_maps(), params)
    np.testing.assert_allclose(sorted(found.scores), [0.6, 0.9], rtol=1e-6)


@pytest.mark.parametrize("mode", ["scale", "gated", "eq8"])
def test_derived_proposal_threshold_never_drops_a_face_that_could_pass(mode):
    """At the derived proposal threshold, the best possible score (every peak probability 1)
    reaches the score threshold; just below it, it cannot."""
    threshold = 0.8
    floor = lowest_proposal_score(threshold, mode)
    peaks = np.ones((2, config.NUM_LANDMARKS))
    best = face_scores(np.array([floor, floor - 1e-6]), peaks, mode)
    assert best[0] >= threshold - 1e-12 and best[1] < threshold
    assert PostprocessParams(score_threshold=threshold, score=mode).proposal_threshold == floor


def test_thresholds_outside_unit_interval_are_refused():
    with pytest.raises(ValueError, match="score_threshold"):
        PostprocessParams(score_threshold=1.5)
    with pytest.raises(ValueError, match="proposal_threshold"):
        PostprocessParams(proposal_threshold=-0.1)


def test_defaults_agree_everywhere():
    from kpnet_edge.commands import detect
    from kpnet_edge.reporting import build, run

    params = PostprocessParams()
    assert params.score_threshold == DEFAULT_SCORE_THRESHOLD
    assert params.proposal_threshold == DEFAULT_SCORE_THRESHOLD  # P_s score: the same number
    assert params.score == DEFAULT_SCORE
    assert inspect.signature(face_scores).parameters["mode"].default == params.score
    assert inspect.signature(run.collect).parameters["operating_score"].default == DEFAULT_SCORE_THRESHOLD
    assert build.ReportSettings.__dataclass_fields__["operating_score"].default == DEFAULT_SCORE_THRESHOLD
    parser = _detect_parser(detect)
    assert parser.get_default("threshold") == DEFAULT_SCORE_THRESHOLD


def _detect_parser(detect_module):
    import argparse

    parser = argparse.ArgumentParser()
    detect_module.register(parser)
    return parser


def _detect_faces(tmp_path: Path, threshold: float) -> list[dict]:
    from kpnet_edge.cli import main

    out = tmp_path / f"faces_{threshold}.json"
    assert main(["detect", str(EXAMPLE), "--json", str(out), "--threshold", str(threshold)]) == 0
    (record,) = json.loads(out.read_text())
    return record["faces"]


def test_detect_threshold_changes_what_detect_returns(tmp_path):
    """The shipped model on the bundled photo: a higher --threshold returns exactly the faces of a
    lower one that score at least as much (greedy NMS only suppresses with higher scores)."""
    pytest.importorskip("torch")
    low = _detect_faces(tmp_path, 0.02)
    scores = sorted({face["score"] for face in low})
    assert len(scores) >= 2, f"the shipped model gave too few distinct scores: {scores}"
    # A threshold halfway between two reported scores: the JSON rounds scores, so a reported
    # score used as the threshold could sit a hair above the face's true score.
    middle = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    high = _detect_faces(tmp_path, middle)
    assert 0 < len(high) < len(low)
    assert high == [face for face in low if face["score"] >= middle]

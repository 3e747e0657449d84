"""The report's statistics and gate without running models: the bootstrap reproduces the
evaluator's figures on all images and gives paired intervals; the gate judges intervals against
bounds from defaults, a YAML file and flags; lost and gained faces are told apart by ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.evaluation.detection import evaluate_detections
from kpnet_edge.postprocess import Detections
from kpnet_edge.reporting.bootstrap import Resamples, detection_tallies, interval, landmark_metrics
from kpnet_edge.reporting.gate import (FAIL, PASS, UNDECIDED, GateConfig, judge, load_gate_config, model_verdict,
                                       overall)
from kpnet_edge.reporting.regressions import (FALSE_POSITIVE, TRUE_FACE, UNLABELLED, ground_truth_kinds,
                                              match_faces, regression_item, worst_first)


def scene(seed: int, images: int = 60) -> tuple[list[AnnotatedImage], list[dict]]:
    """Ground truth with 1-4 faces per image (some ignored) and a detector that finds about 70 %
    of them, with jitter, tied scores and false positives."""
    rng = np.random.default_rng(seed)
    truth, records = [], []
    for index in range(images):
        count = int(rng.integers(1, 5))
        corners = rng.uniform(0, 300, (count, 2))
        sides = rng.uniform(12, 90, (count, 1))
        boxes = np.hstack([corners, corners + sides])
        ignore = rng.random(count) < 0.15
        path = Path(f"/data/img_{index:03d}.jpg")
        truth.append(AnnotatedImage(path, boxes, ignore=ignore))
        faces = [{"box": (box + rng.normal(0, 2, 4)).tolist(), "score": float(np.round(rng.random(), 1)),
                  "landmarks": [[0, 0]] * 5} for box in boxes if rng.random() < 0.7]
        for _ in range(int(rng.integers(0, 3))):
            x, y, side = *rng.uniform(0, 300, 2), rng.uniform(12, 60)
            faces.append({"box": [x, y, x + side, y + side], "score": float(np.round(rng.random() * 0.5, 1)),
                          "landmarks": [[0, 0]] * 5})
        records.append({"image": str(path), "width": 400, "height": 400, "faces": faces})
    return truth, records


def test_tallies_on_all_images_equal_the_evaluator():
    truth, records = scene(0)
    full = evaluate_detections(records, truth, (16, 24))["by_min_size"]
    for key, tally in detection_tallies(records, truth, (16, 24)).items():
        figures = tally.metrics(np.ones((1, len(truth))), operating_score=0.5)
        assert figures["ap"][0] == pytest.approx(full[key]["ap"], abs=1e-12), key
        for point, recall in full[key]["recall_at_fppi"].items():
            assert figures[f"recall_at_{point}_fppi"][0] == pytest.approx(recall, abs=1e-12), (key, point)


def test_tallies_score_a_resample_like_the_evaluator_on_duplicated_images():
    truth, records = scene(1)
    rng = np.random.default_rng(5)
    picked = rng.integers(0, len(truth), len(truth))
    weights = np.bincount(picked, minlength=len(truth))[None].astype(float)
    # The evaluator on the resampled list (duplicates renamed so each is its own image).
    dup_truth, dup_records = [], []
    for n, i in enumerate(picked):
        path = Path(f"/dup/{n}.jpg")
        dup_truth.append(AnnotatedImage(path, truth[i].boxes, ignore=truth[i].ignore))
        dup_records.append({**records[i], "image": str(path)})
    expected = evaluate_detections(dup_records, dup_truth, (24,))["by_min_size"]["24"]
    figures = detection_tallies(records, truth, (24,))["24"].metrics(weights, 0.5)
    assert figures["ap"][0] == pytest.approx(expected["ap"], abs=1e-12)
    assert figures["recall_at_1_fppi"][0] == pytest.approx(expected["recall_at_fppi"]["1"], abs=1e-12)


def test_paired_interval_of_a_drop_is_narrower_than_the_models_own():
    truth, records = scene(2, images=120)
    # A small regression: every sixth image loses its first face (mostly a true one).
    worse = [{**r, "faces": r["faces"][1:] if i % 6 == 0 else r["faces"]} for i, r in enumerate(records)]
    draws = Resamples.draw(len(truth), 0, resamples=400, seed=3)
    ref = detection_tallies(records, truth, (24,))["24"].metrics(draws.wider, 0.0)["ap"]
    cand = detection_tallies(worse, truth, (24,))["24"].metrics(draws.wider, 0.0)["ap"]
    own, paired = interval(cand), interval(ref - cand)
    assert paired[1] - paired[0] < 0.5 * (own[1] - own[0]), (own, paired)
    assert paired[0] > 0, "losing a true face per image lowers AP: the paired interval must exclude 0"
    again = detection_tallies(worse, truth, (24,))["24"].metrics(Resamples.draw(len(truth), 0, 400, 3).wider, 0.0)
    assert np.array_equal(again["ap"], cand), "the same seed gives the same resamples"


def test_landmark_metrics_skip_misses_and_weight_by_resample():
    per_face = [0.1, None, 0.3, 0.2]
    figures = landmark_metrics(per_face, np.array([[1, 1, 1, 1], [0, 2, 2, 0]], dtype=float))
    assert figures["nme"] == pytest.approx([0.2, 0.3])
    assert figures["miss_rate"] == pytest.approx([0.25, 0.5])


@pytest.mark.parametrize("interval_,bound,result", [
    ([0.001, 0.008], 0.01, PASS), ([0.011, 0.03], 0.01, FAIL), ([0.005, 0.02], 0.01, UNDECIDED),
    (None, 0.01, UNDECIDED), ([-0.02, -0.01], 0.0, PASS),
])
def test_judge_reads_the_whole_interval(interval_, bound, result):
    assert judge(interval_, bound) == result


def candidate_row(key: str, ap: list[float], recall: list[float], nme: list[float], ratio: list[float]) -> dict:
    return {"key": key,
            "drop": {"wider": {"24": {"ap": sum(ap) / 2, "ap_ci": ap, "recall_at_score": sum(recall) / 2,
                                      "recall_at_score_ci": recall}},
                     "mtfl": {"nme_increase": sum(nme) / 2, "nme_increase_ci": nme}},
            "latency_ratio": {"value": sum(ratio) / 2, "interval": ratio}}


def test_one_failing_figure_fails_the_model_and_the_run():
    good = candidate_row("good-int8", [-0.002, 0.004], [0.0, 0.01], [0.0, 0.001], [0.5, 0.6])
    lossy = candidate_row("lossy-int8", [-0.002, 0.004], [0.03, 0.07], [0.0, 0.001], [0.5, 0.6])
    verdicts = {row["key"]: model_verdict(row, GateConfig()) for row in (good, lossy)}
    assert verdicts["good-int8"]["verdict"] == PASS
    assert verdicts["lossy-int8"]["verdict"] == FAIL
    assert verdicts["lossy-int8"]["checks"]["recall_drop"]["result"] == FAIL
    result = overall(verdicts)
    assert result["verdict"] == FAIL and result["exit_code"] == 3
    assert "lossy-int8: face recall drop" in result["message"]
    unsure = candidate_row("unsure-int8", [-0.002, 0.02], [0.0, 0.01], [0.0, 0.001], [0.5, 0.6])
    assert overall({"u": model_verdict(unsure, GateConfig())})["exit_code"] == 4


def test_gate_file_sets_bounds_per_model_and_flags_win(tmp_path: Path):
    path = tmp_path / "gate.yaml"
    path.write_text("bounds:\n  ap_drop: 0.02\n  latency_ratio: null\nmodels:\n  tflite-int8:\n    ap_drop: 0.05\n")
    config = load_gate_config(path)
    assert config.bound("openvino-int8", "ap_drop") == 0.02 and config.bound("tflite-int8", "ap_drop") == 0.05
    assert config.bound("openvino-int8", "latency_ratio") is None
    assert config.bound("openvino-int8", "nme_increase") == 0.005, "unset bounds keep their defaults"
    flagged = load_gate_config(path, {"ap_drop": 0.001})
    assert flagged.bound("tflite-int8", "ap_drop") == 0.001 and "--max-drop" in flagged.source
    row = candidate_row("openvino-int8", [0.0, 0.01], [0.0, 0.01], [0.0, 0.001], [3.0, 4.0])
    assert model_verdict(row, config)["checks"]["latency_ratio"]["result"] == "not gated"


@pytest.mark.parametrize("text,message", [
    ("bounds:\n  ap_dorp: 0.01\n", "bounds: unknown criteria ['ap_dorp']"),
    ("bounds:\n  ap_drop: 2\n", "bounds.ap_drop is a fraction"),
    ("bounds:\n  nme_increase: -1\n", "must be a number >= 0"),
    ("limits: {}\n", "unknown top-level key(s) ['limits']"),
    ("bounds: [1, 2\n", "not valid YAML"),
])
def test_bad_gate_files_name_the_file_and_the_key(text: str, message: str, tmp_path: Path):
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    with pytest.raises(KpnetError, match=None) as error:
        load_gate_config(path)
    assert str(path) in str(error.value) and message in str(error.value)


def detections(boxes: list[list[float]], scores: list[float]) -> Detections:
    count = len(boxes)
    return Detections(boxes=np.asarray(boxes, float).reshape(-1, 4), scores=np.asarray(scores, float),
                      landmarks=np.zeros((count, 5, 2)), proposals=np.zeros((count, 4)),
                      proposal_scores=np.asarray(scores, float))


def test_lost_and_gained_faces_are_split_by_ground_truth():
    truth = np.array([[0, 0, 50, 50], [100, 100, 150, 150], [200, 0, 240, 40]], float)
    ignore = np.array([False, False, True])
    reference = detections([[1, 1, 50, 50], [300, 300, 340, 340], [201, 1, 240, 40]], [0.9, 0.8, 0.7])
    candidate = detections([[101, 101, 150, 150], [0, 300, 30, 330]], [0.6, 0.5])
    assert ground_truth_kinds(reference.boxes, truth, ignore) == [TRUE_FACE, FALSE_POSITIVE, UNLABELLED]
    item = regression_item("x.jpg", reference, candidate, match_faces(reference, candidate), 2.0, truth, ignore)
    assert item["changes"] == {"true_faces_lost": 1, "new_false_positives": 1, "false_positives_removed": 1,
                               "true_faces_gained": 1, "unlabelled_lost": 1, "unlabelled_gained": 0}
    assert [face["truth"] for face in item["lost"]] == [TRUE_FACE, FALSE_POSITIVE, UNLABELLED]


def test_regressions_rank_lost_true_faces_above_removed_false_positives():
    improvement = {"image": "a", "lost": [{}] * 3, "gained": [], "moved": [],
                   "changes": {"true_faces_lost": 0, "new_false_positives": 0, "false_positives_removed": 3}}
    harm = {"image": "b", "lost": [{}], "gained": [], "moved": [],
            "changes": {"true_faces_lost": 1, "new_false_positives": 0, "false_positives_removed": 0}}
    assert [item["image"] for item in worst_first([improvement, harm])] == ["b", "a"]


def test_every_model_runs_at_the_convert_folders_canvas_unless_told_otherwise():
    from types import SimpleNamespace

    from kpnet_edge.reporting.build import canvas_size

    def folder(*sizes: int) -> SimpleNamespace:
        return SimpleNamespace(models=[SimpleNamespace(input_size=size) for size in sizes])

    assert canvas_size(folder(320, 320), None) == 320
    assert canvas_size(folder(), 416) == 416, "a reference-only run takes any canvas"
    for manifest, requested, message in ((folder(256, 320), None, "different input sizes [256, 320]"),
                                         (folder(256), 320, "--input-size 320: the convert folder's models take 256"),
                                         (folder(), 100, "--input-size: input size must be a positive multiple of 8")):
        with pytest.raises(KpnetError) as error:
            canvas_size(manifest, requested)
        assert message in str(error.value)

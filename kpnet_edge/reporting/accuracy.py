"""Accuracy of one model's records with the toolkit's own metrics, and its drop from the reference:
AP50, recall at fixed FPPI and face recall at the operating score on WIDER-val-200-dev@416 by face
size, inter-ocular NME on MTFL; each with a paired bootstrap interval (bootstrap.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.evaluation.detection import FPPI_POINTS, evaluate_detections, thin_curves
from kpnet_edge.evaluation.landmarks import evaluate_landmarks
from kpnet_edge.reporting.bootstrap import Resamples, detection_tallies, interval, landmark_metrics

if TYPE_CHECKING:
    from kpnet_edge.reporting.run import EvalSets, ModelRun

MIN_SIZES = (16, 24)
"""Face-size filters (sqrt(w h) in the 416 px images), as `kpnet-edge eval` and the peers use."""

GATE_MIN_SIZE = 24
"""The filter whose AP the --max-drop gate reads."""

CURVE_POINTS = 200
"""PR-curve points kept per model and size: plenty for a plot."""


def model_accuracy(run: ModelRun, sets: EvalSets, min_score: float) -> dict:
    """{"wider": detection_accuracy, "mtfl": landmark_accuracy} of one model's records."""
    return {
        "wider": detection_accuracy(run.wider_records, sets.wider),
        "mtfl": landmark_accuracy(run.mtfl_records, sets.mtfl_paths, sets.mtfl_points, min_score),
    }


Samples = dict[str, dict[str, dict[str, np.ndarray]]]
"""{"wider": {min size: {metric: values}}, "mtfl": {metric: values}}: one value per resample."""


def accuracy_samples(run: ModelRun, sets: EvalSets, operating_score: float, draws: Resamples) -> tuple[Samples, Samples]:
    """(bootstrap samples, point values) of one model: per size "ap", "recall_at_<p>_fppi",
    "recall_at_score"; on MTFL "nme" and "miss_rate". The point values are the same metrics on
    all images once (weights of one), equal to model_accuracy's figures."""
    tallies = detection_tallies(run.wider_records, sets.wider, MIN_SIZES)
    per_face = evaluate_landmarks(run.mtfl_records, sets.mtfl_paths, sets.mtfl_points, "inter_ocular",
                                  operating_score)["per_face"]
    samples: Samples = {"wider": {}, "mtfl": landmark_metrics(per_face, draws.mtfl)}
    points: Samples = {"wider": {}, "mtfl": landmark_metrics(per_face, np.ones((1, len(per_face))))}
    for key, tally in tallies.items():
        samples["wider"][key] = tally.metrics(draws.wider, operating_score)
        points["wider"][key] = tally.metrics(np.ones((1, len(sets.wider))), operating_score)
    return samples, points


def attach_intervals(rows: Sequence[dict], samples: dict[str, tuple[Samples, Samples]]) -> None:
    """Write "<figure>_ci" [low, high] beside every accuracy figure of every row, the face recall
    at the operating score ("recall_at_score") with its interval, and the same for every drop of
    a candidate: reference minus candidate (candidate minus reference for NME and misses) on
    the same resamples, so positive is worse and the interval is paired."""
    reference_samples, reference_points = samples[rows[0]["key"]]
    for row in rows:
        own, points = samples[row["key"]]
        for key, subset in row["accuracy"]["wider"].items():
            subset["ap_ci"] = interval(own["wider"][key]["ap"])
            subset["recall_at_fppi_ci"] = {f"{p:g}": interval(own["wider"][key][f"recall_at_{p:g}_fppi"])
                                           for p in FPPI_POINTS}
            subset["recall_at_score"] = _point(points["wider"][key]["recall_at_score"])
            subset["recall_at_score_ci"] = interval(own["wider"][key]["recall_at_score"])
        mtfl = row["accuracy"]["mtfl"]
        mtfl["nme_ci"], mtfl["miss_rate_ci"] = interval(own["mtfl"]["nme"]), interval(own["mtfl"]["miss_rate"])
        if row["drop"] is None:
            continue
        for key, drop in row["drop"]["wider"].items():
            ref, cand = reference_samples["wider"][key], own["wider"][key]
            for name in ("ap", *(f"recall_at_{p:g}_fppi" for p in FPPI_POINTS), "recall_at_score"):
                drop[f"{name}_ci"] = interval(ref[name] - cand[name])
            drop["recall_at_score"] = _difference(_point(reference_points["wider"][key]["recall_at_score"]),
                                                  _point(points["wider"][key]["recall_at_score"]))
        drops = row["drop"]["mtfl"]
        drops["nme_increase_ci"] = interval(own["mtfl"]["nme"] - reference_samples["mtfl"]["nme"])
        drops["miss_rate_increase_ci"] = interval(own["mtfl"]["miss_rate"] - reference_samples["mtfl"]["miss_rate"])


def _point(values: np.ndarray) -> float | None:
    value = float(values[0])
    return value if np.isfinite(value) else None


def detection_accuracy(records: Sequence[dict], ground_truth: Sequence[AnnotatedImage]) -> dict:
    """{min size: {"ap", "recall_at_fppi", "num_faces", "num_detections", "curve"}}."""
    result = thin_curves(evaluate_detections(records, ground_truth, MIN_SIZES), CURVE_POINTS)
    return summarise_detection(result)


def summarise_detection(result: dict) -> dict:
    """The report's view of an evaluate_detections result (also of the peers' stored results)."""
    return {
        key: {
            "ap": subset["ap"],
            "recall_at_fppi": subset["recall_at_fppi"],
            "num_faces": subset["num_faces"],
            "num_detections": subset["num_detections"],
            "curve": {"precision": subset["curve"]["precision"], "recall": subset["curve"]["recall"]},
        }
        for key, subset in result["by_min_size"].items()
    }


def landmark_accuracy(records: Sequence[dict], paths: Sequence[Path], points: np.ndarray,
                      min_score: float) -> dict:
    """Inter-ocular NME over found faces, and the miss rate, at min_score."""
    result = evaluate_landmarks(records, paths, points, "inter_ocular", min_score)
    return summarise_landmarks(result, min_score)


def summarise_landmarks(result: dict, min_score: float | None) -> dict:
    """The report's view of an evaluate_landmarks result (no per-face list)."""
    keys = ("nme", "miss_rate", "num_images", "num_found", "num_with_landmarks")
    return {"min_score": min_score, **{key: result.get(key) for key in keys}}


def accuracy_drop(reference: dict, candidate: dict) -> dict:
    """Reference minus candidate for AP and recalls, candidate minus reference for NME and miss
    rate: positive is always worse. None where either side is undefined."""
    wider = {}
    for key, ref in reference["wider"].items():
        cand = candidate["wider"][key]
        wider[key] = {"ap": _difference(ref["ap"], cand["ap"])}
        for point in (f"{p:g}" for p in FPPI_POINTS):
            recalls = ref["recall_at_fppi"][point], cand["recall_at_fppi"][point]
            wider[key][f"recall_at_{point}_fppi"] = _difference(*recalls)
    return {
        "wider": wider,
        "mtfl": {
            "nme_increase": _difference(candidate["mtfl"]["nme"], reference["mtfl"]["nme"]),
            "miss_rate_increase": _difference(candidate["mtfl"]["miss_rate"], reference["mtfl"]["miss_rate"]),
        },
    }


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a - b)

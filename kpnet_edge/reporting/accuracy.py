"""Accuracy of one model's records with the toolkit's own metrics, and its drop from the reference:
AP50 and recall at fixed FPPI on WIDER-val-200-dev@416 by face size, inter-ocular NME on MTFL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.evaluation.detection import FPPI_POINTS, evaluate_detections, thin_curves
from kpnet_edge.evaluation.landmarks import evaluate_landmarks

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

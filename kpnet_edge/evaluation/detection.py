"""Face-detection scores (AP at IoU 0.5, recall at fixed false positives per image) by face size.

Model-independent: it scores detect-JSON records against AnnotatedImage ground truth, so every
backend, precision and peer detector is measured by the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.evaluation.predictions import image_face_arrays

FPPI_POINTS = (0.1, 1.0)
"""False positives per image at which recall is reported."""

IGNORE_COVERAGE = 0.5
"""A detection at least this much inside an ignore region (intersection / detection area) is
neither a hit nor a false positive, even when its IoU with the region is low."""

_TP, _FP, _IGNORED = 1, 0, -1


def evaluate_detections(
    predictions: Sequence[dict],
    ground_truth: Sequence[AnnotatedImage],
    min_sizes: Sequence[float] = (16, 24),
    iou_threshold: float = 0.5,
    small_detection_ratio: float = 0.5,
) -> dict:
    """Score detections against ground truth, once per minimum face size.

    For a min size m, a ground-truth face counts when ignore is False and sqrt(w * h) >= m; every
    other face is an ignore region. Per image, detections are matched greedily by descending
    score (COCO's rule): a detection takes the unmatched counted face with the highest IoU >=
    iou_threshold and is a true positive. Otherwise it is ignored (neither TP nor FP) when its IoU
    with an ignore region is >= iou_threshold, when it lies at least IGNORE_COVERAGE inside one,
    or when its own sqrt(w * h) is below small_detection_ratio * m (too small to be judged at this
    size: ground truth of that size is not counted either); else it is a false positive.
    Duplicates of an already matched face are false positives. IoU uses continuous coordinates.

    Predictions are paired with images by path suffix (see predictions.align_predictions); an
    image without a record has no detections. Curve points are taken at each distinct score, so
    tied scores never split. AP is the all-point interpolated area under the precision envelope
    (PASCAL VOC 2010+); recall at f FPPI is the highest recall whose false positives per image
    stay <= f.

    Returns a JSON-ready dict: {"iou_threshold", "small_detection_ratio", "num_images",
    "by_min_size": {str(m): {"min_size", "num_faces", "num_ignored_faces", "num_detections",
    "ap", "recall_at_fppi": {"0.1", "1"}, "max_recall", "curve": {"score", "precision",
    "recall", "fppi"}}}}; "ap" is None when no face counts.
    """
    paths = [record.path for record in ground_truth]
    detections = [(boxes, scores) for boxes, scores, _ in image_face_arrays(predictions, paths)]
    by_size = {}
    for min_size in min_sizes:
        by_size[f"{min_size:g}"] = _evaluate_size(
            detections, ground_truth, float(min_size), iou_threshold, small_detection_ratio
        )
    return {
        "iou_threshold": iou_threshold,
        "small_detection_ratio": small_detection_ratio,
        "num_images": len(ground_truth),
        "by_min_size": by_size,
    }


def thin_curves(result: dict, max_points: int = 1000) -> dict:
    """A copy of an evaluate_detections result whose PR curves keep at most max_points points.

    Points are evenly spaced along each curve, first and last kept: enough to plot, and it keeps
    JSON files small when low score thresholds give tens of thousands of points. The metrics are
    untouched (they were computed on the full curves).
    """
    thinned = {**result, "by_min_size": {}}
    for key, subset in result["by_min_size"].items():
        length = len(subset["curve"]["score"])
        keep = np.unique(np.linspace(0, length - 1, min(length, max_points)).round().astype(int))
        curve = {name: np.asarray(values)[keep].tolist() for name, values in subset["curve"].items()}
        thinned["by_min_size"][key] = {**subset, "curve": curve}
    return thinned


def at_score(curve: dict, threshold: float) -> dict:
    """Precision, recall and F1 of the detections scoring >= threshold, read off one
    evaluate_detections curve (its "score" runs high to low): an operating point, where AP
    averages over all of them."""
    scores = np.asarray(curve["score"], dtype=np.float64)
    reached = np.flatnonzero(scores >= threshold)
    if reached.size == 0:
        return {"threshold": threshold, "precision": None, "recall": 0.0, "f1": 0.0}
    last = int(reached[-1])
    precision, recall = float(curve["precision"][last]), float(curve["recall"][last])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1}


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU (A, B) of boxes_a (A, 4) and boxes_b (B, 4), [x1, y1, x2, y2], continuous coordinates."""
    intersection = _intersection(boxes_a, boxes_b)
    union = _area(boxes_a)[:, None] + _area(boxes_b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope of a PR curve ordered by descending score (VOC 2010+)."""
    recall_points = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.concatenate([[0.0], precision, [0.0]])
    # The envelope at recall r is the best precision reached at any recall >= r.
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]
    steps = np.flatnonzero(recall_points[1:] != recall_points[:-1])
    return float(((recall_points[steps + 1] - recall_points[steps]) * envelope[steps + 1]).sum())


def _evaluate_size(
    detections: list[tuple[np.ndarray, np.ndarray]],
    ground_truth: Sequence[AnnotatedImage],
    min_size: float,
    iou_threshold: float,
    small_detection_ratio: float,
) -> dict:
    all_scores, all_labels = [], []
    num_faces = num_ignored = 0
    for (boxes, scores), record in zip(detections, ground_truth):
        counted = ~record.ignore & (_size(record.boxes) >= min_size)
        num_faces += int(counted.sum())
        num_ignored += int((~counted).sum())
        labels = _label_image(
            boxes, scores, record.boxes, counted, iou_threshold, small_detection_ratio * min_size
        )
        all_scores.append(scores)
        all_labels.append(labels)
    scores = np.concatenate(all_scores) if all_scores else np.empty(0)
    labels = np.concatenate(all_labels) if all_labels else np.empty(0, dtype=int)
    judged = labels != _IGNORED
    scores, labels = scores[judged], labels[judged]
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    true_positives = np.cumsum(labels == _TP)
    false_positives = np.cumsum(labels == _FP)
    # One curve point per distinct score: the last detection of each run of equal scores.
    last_of_run = np.flatnonzero(np.append(scores[1:] != scores[:-1], scores.size > 0))
    true_positives, false_positives = true_positives[last_of_run], false_positives[last_of_run]
    recall = true_positives / max(num_faces, 1)
    precision = true_positives / np.maximum(true_positives + false_positives, 1)
    fppi = false_positives / max(len(ground_truth), 1)
    return {
        "min_size": min_size,
        "num_faces": num_faces,
        "num_ignored_faces": num_ignored,
        "num_detections": int(labels.size),
        "ap": average_precision(recall, precision) if num_faces else None,
        "recall_at_fppi": {
            f"{point:g}": (float(recall[fppi <= point].max(initial=0.0)) if num_faces else None)
            for point in FPPI_POINTS
        },
        "max_recall": float(recall.max(initial=0.0)) if num_faces else None,
        "curve": {
            "score": scores[last_of_run].tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "fppi": fppi.tolist(),
        },
    }


def _label_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    gt_boxes: np.ndarray,
    counted: np.ndarray,
    iou_threshold: float,
    min_detection_size: float,
) -> np.ndarray:
    """_TP / _FP / _IGNORED for each detection (D,) of one image, in the input order."""
    labels = np.full(len(boxes), _FP)
    if len(boxes) == 0:
        return labels
    iou = box_iou(boxes, gt_boxes)
    hits = iou[:, counted] >= iou_threshold
    counted_iou = np.where(hits, iou[:, counted], -1.0)
    taken = np.zeros(int(counted.sum()), dtype=bool)
    # Greedy matching is sequential by nature; only detections that hit some counted face loop.
    for index in sorted(np.flatnonzero(hits.any(axis=1)), key=lambda i: -scores[i]):
        overlaps = np.where(taken, -1.0, counted_iou[index])
        best = int(overlaps.argmax())
        if overlaps[best] >= 0:
            taken[best] = True
            labels[index] = _TP
    regions = gt_boxes[~counted]
    coverage = _intersection(boxes, regions) / np.maximum(_area(boxes), 1e-12)[:, None]
    in_region = ((iou[:, ~counted] >= iou_threshold) | (coverage >= IGNORE_COVERAGE)).any(axis=1)
    too_small = _size(boxes) < min_detection_size
    labels[(labels != _TP) & (in_region | too_small)] = _IGNORED
    return labels


def _intersection(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    return np.clip(bottom_right - top_left, 0, None).prod(axis=2)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _size(boxes: np.ndarray) -> np.ndarray:
    return np.sqrt(_area(boxes))

"""Landmark accuracy: normalised mean error (NME) and a miss rate for one-face crops (MTFL, AFLW).

A face the detector misses is a miss, counted on its own, never a silently dropped sample; the
NME is taken over the faces found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kpnet_edge import config
from kpnet_edge.evaluation.predictions import image_face_arrays

NORMALISATIONS = ("inter_ocular", "box")

_LEFT_EYE = config.LANDMARK_NAMES.index("left_eye")
_RIGHT_EYE = config.LANDMARK_NAMES.index("right_eye")


def landmark_nme(
    predicted: np.ndarray,
    ground_truth: np.ndarray,
    normalisation: str = "inter_ocular",
    boxes: np.ndarray | None = None,
) -> dict:
    """Normalised mean error of predicted landmarks (N, K, 2) against ground truth (N, K, 2).

    Per face: NME_i = mean_k ||p_ik - g_ik|| / d_i over the points whose ground truth is finite
    (NaN ground-truth points are absent and skipped). d_i is
      - "inter_ocular": ||g_right_eye - g_left_eye||, the distance between the two eye points;
      - "box": sqrt(w * h) of boxes[i] ([x1, y1, x2, y2]) when boxes is given, else of the
        bounding box of face i's ground-truth landmarks (smaller than a face box: the 5 points
        span eyes to mouth only).
    Returns {"normalisation", "num_faces", "nme": mean of NME_i (None when N == 0),
    "per_face": (N,) float64}. Raises ValueError on shape mismatch, a predicted point missing
    where the ground truth has one, or a zero normaliser.

    >>> truth = np.array([[[0, 0], [10, 0], [5, 5], [2, 9], [8, 9]]], dtype=float)
    >>> landmark_nme(truth + [0, 1], truth)["nme"]
    0.1
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    if ground_truth.ndim != 3 or ground_truth.shape[2] != 2 or predicted.shape != ground_truth.shape:
        raise ValueError(
            f"predicted and ground_truth must both be (N, K, 2), got {predicted.shape} and "
            f"{ground_truth.shape}"
        )
    present = np.isfinite(ground_truth).all(axis=2)
    if not present.any(axis=1).all():
        face = int(np.flatnonzero(~present.any(axis=1))[0])
        raise ValueError(f"face {face}: no ground-truth points")
    missing = present & ~np.isfinite(predicted).all(axis=2)
    if missing.any():
        face = int(np.flatnonzero(missing.any(axis=1))[0])
        raise ValueError(f"face {face}: predicted landmarks missing where the ground truth has points")
    scale = _normaliser(ground_truth, normalisation, boxes)
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        face = int(np.flatnonzero(bad)[0])
        raise ValueError(f"face {face}: {normalisation} normaliser is zero or undefined")
    distances = np.linalg.norm(predicted - ground_truth, axis=2)
    per_face = np.where(present, distances, 0.0).sum(axis=1) / present.sum(axis=1) / scale
    return {
        "normalisation": normalisation,
        "num_faces": len(per_face),
        "nme": float(per_face.mean()) if len(per_face) else None,
        "per_face": per_face,
    }


def match_faces_to_landmarks(
    predictions: Sequence[dict],
    image_paths: Sequence[str | Path],
    ground_truth: np.ndarray,
    min_score: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick, for each one-face image, the predicted face that best fits its ground truth.

    ground_truth: (N, K, 2), one face per image in image_paths' order. A predicted face is a
    candidate when its score >= min_score and its box contains the centroid of the ground-truth
    points; among candidates the one with the smallest mean point distance is taken (candidates
    without landmarks only when none has them). Returns (landmarks (N, K, 2) float64, NaN where no
    face was found or the found face has no landmarks; found (N,) bool, False for a miss).
    """
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    if len(ground_truth) != len(image_paths):
        raise ValueError(f"{len(image_paths)} images but {len(ground_truth)} ground-truth faces")
    matched = np.full(ground_truth.shape, np.nan)
    found = np.zeros(len(ground_truth), dtype=bool)
    per_image = image_face_arrays(predictions, image_paths)
    for index, ((boxes, scores, landmarks), truth) in enumerate(zip(per_image, ground_truth)):
        present = np.isfinite(truth).all(axis=1)
        if not present.any():
            raise ValueError(f"{image_paths[index]}: ground truth has no points")
        centre = truth[present].mean(axis=0)
        inside = (boxes[:, :2] <= centre).all(axis=1) & (boxes[:, 2:] >= centre).all(axis=1)
        candidates = np.flatnonzero(inside & (scores >= min_score))
        if candidates.size == 0:
            continue
        found[index] = True
        # NaN for candidates without landmarks: they are taken only when no candidate has any.
        offsets = landmarks[candidates][:, present] - truth[present]
        errors = np.linalg.norm(offsets, axis=2).mean(axis=1)
        if np.isfinite(errors).any():
            best = np.where(np.isfinite(errors), errors, np.inf).argmin()
            matched[index] = landmarks[candidates[best]]
    return matched, found


def evaluate_landmarks(
    predictions: Sequence[dict],
    image_paths: Sequence[str | Path],
    ground_truth: np.ndarray,
    normalisation: str = "inter_ocular",
    min_score: float = 0.0,
) -> dict:
    """Miss rate and NME of detect-JSON predictions on one-face images (MTFL-style lists).

    Faces are picked by match_faces_to_landmarks; the NME is over found faces that carry
    landmarks. Returns a JSON-ready dict {"normalisation", "num_images", "num_found",
    "miss_rate", "num_with_landmarks", "nme" (None when no found face has landmarks),
    "per_face" (list, None for misses and landmark-less faces)}.
    """
    matched, found = match_faces_to_landmarks(predictions, image_paths, ground_truth, min_score)
    with_points = found & np.isfinite(matched).all(axis=(1, 2))
    scored = landmark_nme(matched[with_points], np.asarray(ground_truth)[with_points], normalisation)
    per_face: list[float | None] = [None] * len(found)
    for index, value in zip(np.flatnonzero(with_points), scored["per_face"]):
        per_face[index] = float(value)
    return {
        "normalisation": normalisation,
        "num_images": len(found),
        "num_found": int(found.sum()),
        "miss_rate": float(1 - found.mean()) if len(found) else None,
        "num_with_landmarks": int(with_points.sum()),
        "nme": scored["nme"],
        "per_face": per_face,
    }


def _normaliser(ground_truth: np.ndarray, normalisation: str, boxes: np.ndarray | None) -> np.ndarray:
    if normalisation == "inter_ocular":
        return np.linalg.norm(ground_truth[:, _RIGHT_EYE] - ground_truth[:, _LEFT_EYE], axis=1)
    if normalisation == "box":
        if boxes is None:
            corners = np.nanmin(ground_truth, axis=1), np.nanmax(ground_truth, axis=1)
            boxes = np.concatenate(corners, axis=1)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(ground_truth):
            raise ValueError(f"{len(boxes)} boxes for {len(ground_truth)} faces")
        return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    raise ValueError(
        f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}"
    )

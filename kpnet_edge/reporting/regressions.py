"""Face-by-face comparison of a candidate's detections with the reference's on one image: faces
lost, faces gained, and matched faces whose landmarks moved."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from kpnet_edge.postprocess import Detections, pairwise_iou

MATCH_IOU = 0.5
"""A candidate face is the reference face's counterpart when their boxes overlap this much."""


@dataclass(frozen=True)
class FaceMatch:
    """Greedy one-to-one matching of reference faces to candidate faces.

    pairs: (M, 2) [reference index, candidate index]; displacement: (M, K) landmark shifts in
    pixels of the matched pairs; lost / gained: unmatched reference / candidate indices.
    """

    pairs: np.ndarray
    displacement: np.ndarray
    lost: np.ndarray
    gained: np.ndarray


def above(detections: Detections, min_score: float) -> Detections:
    """The faces scoring at least min_score (the operating point the regressions are judged at)."""
    keep = detections.scores >= min_score
    return Detections(**{f.name: getattr(detections, f.name)[keep] for f in fields(Detections)})


def match_faces(reference: Detections, candidate: Detections, iou_threshold: float = MATCH_IOU) -> FaceMatch:
    """Match faces in order of reference score: each takes the free candidate face of highest IoU
    >= iou_threshold."""
    iou = pairwise_iou(reference.boxes, candidate.boxes) if len(reference) and len(candidate) else None
    taken = np.zeros(len(candidate), dtype=bool)
    pairs = []
    if iou is not None:
        for r in np.argsort(-reference.scores, kind="stable"):
            overlaps = np.where(taken, -1.0, iou[r])
            c = int(overlaps.argmax())
            if overlaps[c] >= iou_threshold:
                taken[c] = True
                pairs.append((int(r), c))
    pairs_array = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    shift = reference.landmarks[pairs_array[:, 0]] - candidate.landmarks[pairs_array[:, 1]]
    matched_reference = np.zeros(len(reference), dtype=bool)
    matched_reference[pairs_array[:, 0]] = True
    return FaceMatch(
        pairs=pairs_array,
        displacement=np.linalg.norm(shift, axis=-1),
        lost=np.flatnonzero(~matched_reference),
        gained=np.flatnonzero(~taken),
    )


def regression_item(image: str, reference: Detections, candidate: Detections, match: FaceMatch,
                    moved_px: float) -> dict | None:
    """The JSON record of one image's changes (None when nothing changed): faces lost and gained
    (box, score) and matched faces whose landmarks moved more than moved_px (both landmark sets)."""
    moved = np.flatnonzero(match.displacement.max(axis=1, initial=0.0) > moved_px)
    if not (len(match.lost) or len(match.gained) or len(moved)):
        return None

    def face(detections: Detections, index: int) -> dict:
        return {"box": _rounded(detections.boxes[index]), "score": round(float(detections.scores[index]), 4)}

    def moved_face(pair: int) -> dict:
        r, c = match.pairs[pair]
        return {
            "box": _rounded(reference.boxes[r]),
            "max_px": round(float(match.displacement[pair].max()), 2),
            "reference_landmarks": _rounded(reference.landmarks[r]),
            "candidate_landmarks": _rounded(candidate.landmarks[c]),
        }

    return {
        "image": image,
        "lost": [face(reference, i) for i in match.lost],
        "gained": [face(candidate, i) for i in match.gained],
        "moved": [moved_face(pair) for pair in moved],
    }


def worst_first(items: list[dict]) -> list[dict]:
    """Regression items ordered by their number of changed faces, most first."""
    return sorted(items, key=lambda item: len(item["lost"]) + len(item["gained"]) + len(item["moved"]),
                  reverse=True)


def _rounded(values: np.ndarray) -> list:
    return np.round(np.asarray(values, dtype=np.float64), 2).tolist()

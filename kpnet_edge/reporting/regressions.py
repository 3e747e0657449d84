"""Face-by-face comparison of a candidate's detections with the reference's on one image: faces
lost, faces gained, and matched faces whose landmarks moved; lost and gained faces are checked
against the ground truth, since losing a false positive is an improvement."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from kpnet_edge.evaluation.detection import box_iou
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


TRUE_FACE, FALSE_POSITIVE, UNLABELLED = "true face", "false positive", "unlabelled region"
"""What a lost or gained face is by the ground truth: it overlaps a labelled face (IoU >=
MATCH_IOU), a region the ground truth marks as not judged, or nothing labelled."""

CHANGE_KINDS = ("true_faces_lost", "new_false_positives", "false_positives_removed", "true_faces_gained",
                "unlabelled_lost", "unlabelled_gained")
"""Counts of one image's changes, in the order they matter to a user (harm first)."""

RANK_WEIGHTS = {"true_faces_lost": 4.0, "new_false_positives": 2.0, "moved": 1.0}
"""How much each change weighs when the regression list is ranked; improvements weigh nothing."""


def ground_truth_kinds(boxes: np.ndarray, truth_boxes: np.ndarray, truth_ignore: np.ndarray) -> list[str]:
    """TRUE_FACE, UNLABELLED or FALSE_POSITIVE for each box (B, 4) against the image's labelled
    boxes (T, 4) and their ignore flags (T,)."""
    if len(boxes) == 0:
        return []
    if len(truth_boxes) == 0:
        return [FALSE_POSITIVE] * len(boxes)
    iou = box_iou(np.asarray(boxes, dtype=np.float64), truth_boxes)
    hits_face = (iou[:, ~truth_ignore] >= MATCH_IOU).any(axis=1)
    hits_ignored = (iou[:, truth_ignore] >= MATCH_IOU).any(axis=1)
    return [TRUE_FACE if face else UNLABELLED if ignored else FALSE_POSITIVE
            for face, ignored in zip(hits_face, hits_ignored)]


def regression_item(image: str, reference: Detections, candidate: Detections, match: FaceMatch,
                    moved_px: float, truth_boxes: np.ndarray | None = None,
                    truth_ignore: np.ndarray | None = None) -> dict | None:
    """The JSON record of one image's changes (None when nothing changed): faces lost and gained
    (box, score, and with ground truth what each is), matched faces whose landmarks moved more than
    moved_px (both landmark sets), and with ground truth the counts of CHANGE_KINDS."""
    moved = np.flatnonzero(match.displacement.max(axis=1, initial=0.0) > moved_px)
    if not (len(match.lost) or len(match.gained) or len(moved)):
        return None
    judged = truth_boxes is not None
    if judged:
        ignore = np.zeros(len(truth_boxes), bool) if truth_ignore is None else np.asarray(truth_ignore, bool)
        lost_kinds = ground_truth_kinds(reference.boxes[match.lost], truth_boxes, ignore)
        gained_kinds = ground_truth_kinds(candidate.boxes[match.gained], truth_boxes, ignore)
    else:
        lost_kinds, gained_kinds = [None] * len(match.lost), [None] * len(match.gained)

    def face(detections: Detections, index: int, kind: str | None) -> dict:
        entry = {"box": _rounded(detections.boxes[index]), "score": round(float(detections.scores[index]), 4)}
        return entry if kind is None else {**entry, "truth": kind}

    def moved_face(pair: int) -> dict:
        r, c = match.pairs[pair]
        return {
            "box": _rounded(reference.boxes[r]),
            "max_px": round(float(match.displacement[pair].max()), 2),
            "reference_landmarks": _rounded(reference.landmarks[r]),
            "candidate_landmarks": _rounded(candidate.landmarks[c]),
        }

    item = {
        "image": image,
        "lost": [face(reference, i, kind) for i, kind in zip(match.lost, lost_kinds)],
        "gained": [face(candidate, i, kind) for i, kind in zip(match.gained, gained_kinds)],
        "moved": [moved_face(pair) for pair in moved],
    }
    if judged:
        item["changes"] = {
            "true_faces_lost": lost_kinds.count(TRUE_FACE),
            "new_false_positives": gained_kinds.count(FALSE_POSITIVE),
            "false_positives_removed": lost_kinds.count(FALSE_POSITIVE),
            "true_faces_gained": gained_kinds.count(TRUE_FACE),
            "unlabelled_lost": lost_kinds.count(UNLABELLED),
            "unlabelled_gained": gained_kinds.count(UNLABELLED),
        }
    return item


def harm(item: dict) -> float:
    """How much an image's changes hurt: true faces lost weigh most, then new false positives,
    then moved landmarks; without ground truth every lost or gained face counts as a true loss /
    new false positive."""
    changes = item.get("changes") or {"true_faces_lost": len(item["lost"]),
                                      "new_false_positives": len(item["gained"])}
    return (RANK_WEIGHTS["true_faces_lost"] * changes["true_faces_lost"]
            + RANK_WEIGHTS["new_false_positives"] * changes["new_false_positives"]
            + RANK_WEIGHTS["moved"] * len(item["moved"]))


def worst_first(items: list[dict]) -> list[dict]:
    """Regression items ranked by harm, most first; ties keep their order (image order)."""
    return sorted(items, key=harm, reverse=True)


def _rounded(values: np.ndarray) -> list:
    return np.round(np.asarray(values, dtype=np.float64), 2).tolist()

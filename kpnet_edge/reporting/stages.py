"""Where a candidate's error comes from, stage by stage, against the reference on the same images:
agreement of each output head, proposals found, keypoints of matched faces, per-image regressions."""

from __future__ import annotations

import numpy as np

from kpnet_edge import config
from kpnet_edge.postprocess import Detections, PostprocessParams, find_proposals
from kpnet_edge.quantization.agreement import decoded_agreement
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.reporting.regressions import CHANGE_KINDS, above, match_faces, regression_item

HEADS = ("scale_map", *config.LANDMARK_NAMES)
"""The scale map (all S channels) and each landmark heatmap, as they are compared."""

PROPOSAL_TOLERANCE = 1
"""A reference proposal is found when the candidate has one within this many cells in x and y and
this many scale bins."""


class StageAccumulator:
    """Accumulates one candidate's agreement with the reference image by image; result() sums up.

    Per head (logits): SQNR = 10 log10(sum r^2 / sum (c - r)^2) dB and cosine similarity
    sum r c / sqrt(sum r^2 sum c^2), over every value of every image. Proposal recall: the share
    of reference proposals (post-processor's thresholds) the candidate also proposes, matched
    within PROPOSAL_TOLERANCE. Keypoints of faces matched at the operating score (IoU >= 0.5), in
    image pixels; and the landmark head alone: both models' keypoints decoded in the windows of the
    reference's top proposals (quantization.agreement), so proposal shifts do not enter; its mean
    is taken per image, then over images.
    """

    def __init__(self, params: PostprocessParams, operating_score: float, moved_px: float) -> None:
        self.params = params
        self.operating_score = operating_score
        self.moved_px = moved_px
        self._sums = np.zeros((len(HEADS), 4))  # per head: sum r^2, sum (c - r)^2, sum r c, sum c^2
        self._proposals = np.zeros(2, dtype=np.int64)  # reference proposals, found by the candidate
        self._displacements: list[np.ndarray] = []
        self._window_shift: list[float] = []
        self._faces = np.zeros(3, dtype=np.int64)  # reference faces, lost, gained
        self._changes = dict.fromkeys(CHANGE_KINDS, 0)  # lost / gained faces by ground truth
        self.regressions: list[dict] = []

    def add(
        self,
        image: str,
        image_scale: float,
        reference_maps: tuple[np.ndarray, np.ndarray],
        candidate_maps: tuple[np.ndarray, np.ndarray],
        reference_faces: Detections,
        candidate_faces: Detections,
        truth: AnnotatedImage | None = None,
    ) -> None:
        """One image: maps (scale (S, H, W), landmarks (K, H, W)) logits of both models; faces in
        image pixels; image_scale: canvas pixels per image pixel (the letterbox scale); truth: the
        image's labelled faces, which lost and gained faces are checked against."""
        ref_scale, ref_heat = (np.asarray(m, dtype=np.float64) for m in reference_maps)
        cand_scale, cand_heat = (np.asarray(m, dtype=np.float64) for m in candidate_maps)
        for index, (ref, cand) in enumerate(zip([ref_scale, *ref_heat], [cand_scale, *cand_heat])):
            ref, cand = ref.ravel(), cand.ravel()
            error = cand - ref
            self._sums[index] += (_dot(ref, ref), _dot(error, error), _dot(ref, cand), _dot(cand, cand))
        self._proposals += _proposal_recall(ref_scale, cand_scale, self.params)
        window = decoded_agreement((ref_scale[None], ref_heat[None]), (cand_scale[None], cand_heat[None]))
        self._window_shift.append(window["keypoint_px"] / image_scale)
        reference = above(reference_faces, self.operating_score)
        candidate = above(candidate_faces, self.operating_score)
        match = match_faces(reference, candidate)
        self._displacements.append(match.displacement.reshape(-1, config.NUM_LANDMARKS))
        self._faces += (len(reference), len(match.lost), len(match.gained))
        boxes, ignore = (truth.boxes, truth.ignore) if truth is not None else (None, None)
        item = regression_item(image, reference, candidate, match, self.moved_px, boxes, ignore)
        if item is not None:
            self.regressions.append(item)
            for kind, count in (item.get("changes") or {}).items():
                self._changes[kind] += count

    def result(self) -> dict:
        """JSON-ready stage figures (see the class docstring)."""
        heads = {}
        for name, (signal, noise, dot, power) in zip(HEADS, self._sums):
            heads[name] = {
                "sqnr_db": float(10 * np.log10(signal / noise)) if noise > 0 and signal > 0 else None,
                "identical": bool(noise == 0),
                "cosine": float(dot / np.sqrt(signal * power)) if signal > 0 and power > 0 else None,
            }
        displacement = np.concatenate([np.zeros((0, config.NUM_LANDMARKS)), *self._displacements])
        per_face = displacement.max(axis=1, initial=0.0)
        total, found = (int(v) for v in self._proposals)
        return {
            "heads": heads,
            "proposals": {"reference": total, "found": found, "recall": found / total if total else None},
            "matched_faces": {
                "count": len(displacement),
                "keypoint_px_mean": float(displacement.mean()) if displacement.size else None,
                "keypoint_px_p90": float(np.percentile(displacement, 90)) if displacement.size else None,
                "keypoint_px_max": float(displacement.max()) if displacement.size else None,
                "moved_faces": int((per_face > self.moved_px).sum()),
            },
            "landmark_head_px_mean": float(np.mean(self._window_shift)) if self._window_shift else None,
            "faces": {
                "reference": int(self._faces[0]),
                "lost": int(self._faces[1]),
                "gained": int(self._faces[2]),
                **self._changes,
            },
            "images_changed": len(self.regressions),
        }


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum's own loop, not BLAS: OpenBLAS's threads spin while they wait, which cost 20x the
    # arithmetic on a machine busy with other work (130 ms vs 6 ms of CPU per image, measured).
    return float(np.einsum("i,i->", a, b))


def _proposal_recall(reference: np.ndarray, candidate: np.ndarray, params: PostprocessParams) -> np.ndarray:
    """(reference proposals, how many of them the candidate has within the tolerance)."""
    ref_cells, ref_bins, _ = find_proposals(reference, params)
    cand_cells, cand_bins, _ = find_proposals(candidate, params)
    if len(ref_cells) == 0 or len(cand_cells) == 0:
        return np.array([len(ref_cells), 0])
    ref = np.column_stack([ref_cells, ref_bins])
    cand = np.column_stack([cand_cells, cand_bins])
    near = (np.abs(ref[:, None, :] - cand[None, :, :]) <= PROPOSAL_TOLERANCE).all(axis=2)  # (P_ref, P_cand)
    return np.array([len(ref), int(near.any(axis=1).sum())])

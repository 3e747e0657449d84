"""How closely a converted model reproduces PyTorch: raw logits for float files, decoded keypoints
and scale-map probabilities at proposals for INT8 ones (the metrics of targets.py's tolerances)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kpnet_edge import config
from kpnet_edge.postprocess import (
    PostprocessParams,
    find_proposals,
    proposal_windows,
    scale_adaptive_soft_argmax,
)

Outputs = Sequence[np.ndarray]
"""(scale_logits (N, S, H, W), landmark_logits (N, K, H, W)) float32, NCHW."""

PROPOSALS_PER_IMAGE = 20
"""Reference proposals per image: the top local maxima of the PyTorch scale map, thresholded at
almost zero, so a random-weight model has proposals to judge too."""

_PROPOSAL_PARAMS = PostprocessParams(
    proposal_threshold=1e-6, max_proposals=PROPOSALS_PER_IMAGE, max_candidate_cells=16 * PROPOSALS_PER_IMAGE
)


def logit_error(reference: Outputs, candidate: Outputs) -> dict[str, float]:
    """max |candidate - reference| per head and overall, and overall relative to the reference's
    largest logit magnitude (at least 1): float round-off grows with the values computed, so the
    same runtime differs by ~1.3e-6 of it on a model whose logits reach 31 (stage-1 DRNet,
    4.2e-5 absolute) or 89 (stage 2, 1.2e-4 absolute)."""
    errors = {
        f"max_abs_{name}": float(np.max(np.abs(np.asarray(c, np.float64) - np.asarray(r, np.float64))))
        for name, r, c in zip(config.OUTPUT_NAMES, reference, candidate)
    }
    errors["max_abs_logit"] = max(errors.values())
    magnitude = max(float(np.max(np.abs(np.asarray(r, np.float64)))) for r in reference)
    errors["max_rel_logit"] = errors["max_abs_logit"] / max(1.0, magnitude)
    return errors


def decoded_agreement(reference: Outputs, candidate: Outputs) -> dict[str, float]:
    """Decoded agreement of candidate with reference over a batch of images.

    For each image, the top PROPOSALS_PER_IMAGE local maxima of the reference scale map give
    windows (as the post-processor builds them). In each window both models' landmark heatmaps go
    through the scale-adaptive soft-argmax (Eq. 5-6); keypoint_nme is the mean displacement over
    keypoints divided by the proposal side, keypoint_px the same in input pixels (mean and max).
    proposal_prob is the max |sigmoid difference| of the scale map at the proposal cells.
    """
    nme, pixels, probs = [], [], []
    for ref_scale, ref_heat, cand_scale, cand_heat in zip(*reference, *candidate):
        cells, bins, _ = find_proposals(np.asarray(ref_scale), _PROPOSAL_PARAMS)
        if len(cells) == 0:
            continue
        height, width = ref_scale.shape[1:]
        sides = config.bin_to_scale(bins + 0.5) * max(height, width) * config.STRIDE
        windows = proposal_windows(cells, sides, (height, width))
        ref_points, _ = scale_adaptive_soft_argmax(np.asarray(ref_heat), windows)
        cand_points, _ = scale_adaptive_soft_argmax(np.asarray(cand_heat), windows)
        distance = np.linalg.norm(ref_points - cand_points, axis=-1) * config.STRIDE  # (P, K) pixels
        pixels.append(distance.ravel())
        nme.append((distance / sides[:, None]).ravel())
        ref_p = _sigmoid(ref_scale[bins, cells[:, 0], cells[:, 1]])
        cand_p = _sigmoid(cand_scale[bins, cells[:, 0], cells[:, 1]])
        probs.append(np.abs(ref_p - cand_p))
    if not nme:
        return {"keypoint_nme": 0.0, "keypoint_px": 0.0, "keypoint_px_max": 0.0, "proposal_prob": 0.0}
    pixels_all = np.concatenate(pixels)
    return {
        "keypoint_nme": float(np.mean(np.concatenate(nme))),
        "keypoint_px": float(np.mean(pixels_all)),
        "keypoint_px_max": float(np.max(pixels_all)),
        "proposal_prob": float(np.max(np.concatenate(probs))),
    }


def agreement_score(reference: Outputs, candidate: Outputs) -> float:
    """One number for accuracy-controlled quantization, 1 = identical decoding:
    1 - keypoint_nme - proposal_prob (a proxy for detection quality until a labelled metric)."""
    figures = decoded_agreement(reference, candidate)
    return 1.0 - figures["keypoint_nme"] - figures["proposal_prob"]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))

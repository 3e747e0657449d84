"""KPNet's post-processor in numpy, shared by every runtime: maps -> faces.

Scale map -> proposals (local maxima over x, y and scale, Eq. 1 decode) -> scale-adaptive
soft-argmax of each landmark heatmap inside each proposal (Eq. 5-6) -> score (Eq. 8) -> boxes
from the keypoints through a template -> NMS. Imports neither torch nor tensorflow.

Example:
    >>> import numpy as np
    >>> scale = np.full((60, 128, 128), -10, np.float32); scale[30, 64, 64] = 5.0
    >>> heat = np.zeros((5, 128, 128), np.float32)
    >>> postprocess(scale, heat).boxes.shape
    (1, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from kpnet_edge import config
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks

SCORE_MODES = ("eq8", "gated", "scale")

_HEATMAP_CLAMP = 1.0e4
"""Heatmap logits are clipped to +-this so NaN/Inf in a model's output cannot poison exp()."""

_MIN_RELATIVE_MASS = 1.0e-7
"""Windows holding less than this share of a channel's exp-mass are recomputed directly: their
summed-area-table difference would lose too many digits to cancellation (measured: the error in
cells is about 1e-14 / share, so 1e-7 keeps keypoints within 1e-6 cells of the exact value)."""


@dataclass(frozen=True)
class PostprocessParams:
    """Thresholds and ranking of the post-processor. Scores live in [0, 1]."""

    proposal_threshold: float = 0.2
    """Minimum scale-map probability for a proposal."""
    score_threshold: float = 0.2
    """Minimum final score of a returned face (default: best F1 on held-out synthetic scenes)."""
    max_proposals: int = 200
    """Top-k cap on proposals, so a flat or noisy map cannot explode the work."""
    max_candidate_cells: int = 4096
    """Cap on spatial cells examined for local maxima (the highest cells win)."""
    nms_iou: float = 0.6
    score: str = "scale"
    """How proposals are ranked: "eq8", (P_s + sum of eye/nose peak probabilities) / 4, as in the
    paper; "gated", P_s * (1 + that sum) / 4, where the keypoints can only confirm a proposal
    (tiny windows have peak probability ~1 whatever their content); "scale", P_s alone, the
    default: on held-out synthetic scenes it ranks best (AP 0.48 vs 0.47 gated, 0.22 Eq. 8 at
    >= 8 px; MODEL_CARD.md)."""
    template: FaceTemplate = field(default_factory=FaceTemplate.load)

    def __post_init__(self) -> None:
        if self.score not in SCORE_MODES:
            raise ValueError(f"score must be one of {SCORE_MODES}, got {self.score!r}")


@dataclass(frozen=True)
class Detections:
    """Faces of one image. boxes (N, 4) [x1, y1, x2, y2]; scores (N,); landmarks (N, K, 2) [x, y];
    proposals (N, 4): the square scale proposals they came from; proposal_scores (N,): P_s."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    proposals: np.ndarray
    proposal_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def scaled(self, factor: float) -> Detections:
        """Coordinates multiplied by `factor` (e.g. 1 / letterbox scale for original pixels)."""
        return replace(
            self,
            boxes=self.boxes * factor,
            landmarks=self.landmarks * factor,
            proposals=self.proposals * factor,
        )

    @classmethod
    def empty(cls) -> Detections:
        """No faces."""
        k = config.NUM_LANDMARKS
        zeros = np.zeros((0,), np.float64)
        return cls(np.zeros((0, 4)), zeros, np.zeros((0, k, 2)), np.zeros((0, 4)), zeros)


def postprocess(
    scale_logits: np.ndarray, landmark_logits: np.ndarray, params: PostprocessParams | None = None
) -> Detections:
    """Faces from one image's DRNet outputs, in input-canvas pixels.

    scale_logits: (S, H, W) scale-map logits (sigmoid gives Eq. 2-3's probabilities).
    landmark_logits: (K, H, W) landmark heatmap logits h of Eq. 5.
    The image's max edge is taken to span the maps' max edge (the letterbox guarantees it).
    """
    params = params or PostprocessParams()
    scale_logits = np.asarray(scale_logits)
    landmark_logits = np.asarray(landmark_logits)
    _check_shapes(scale_logits, landmark_logits)
    cells, scale_bins, proposal_logits = find_proposals(scale_logits, params)
    if len(cells) == 0:
        return Detections.empty()
    proposal_scores = _sigmoid(proposal_logits)
    height, width = scale_logits.shape[1:]
    max_edge = max(height, width) * config.STRIDE
    sizes = config.bin_to_scale(scale_bins + 0.5) * max_edge
    centres = config.cell_to_pixel(cells[:, ::-1].astype(np.float64))  # (x, y) in pixels
    proposals = np.concatenate([centres - sizes[:, None] / 2, centres + sizes[:, None] / 2], axis=1)
    windows = proposal_windows(cells, sizes, (height, width))
    keypoint_cells, peak_probabilities = scale_adaptive_soft_argmax(
        landmark_logits, windows, config.SCORE_LANDMARKS
    )
    landmarks = config.cell_to_pixel(keypoint_cells)
    scores = face_scores(proposal_scores, peak_probabilities, params.score)
    keep = scores >= params.score_threshold
    boxes = boxes_from_landmarks(landmarks[keep], params.template)
    kept = nms(boxes, scores[keep], params.nms_iou)
    select = np.flatnonzero(keep)[kept]
    return Detections(
        boxes=boxes[kept],
        scores=scores[select],
        landmarks=landmarks[select],
        proposals=proposals[select],
        proposal_scores=proposal_scores[select],
    )


def face_scores(proposal_scores: np.ndarray, peak_probabilities: np.ndarray, mode: str = "eq8") -> np.ndarray:
    """Scores in [0, 1] from P_s (P,) and peak soft-argmax probabilities (P, K); see
    PostprocessParams.score. "eq8" is Eq. 8, P = P_s + sum over eyes and nose of max Phi, / 4."""
    # The clip only absorbs float32 rounding of peaks that are exactly 1.
    peaks = np.clip(peak_probabilities[:, list(config.SCORE_LANDMARKS)], 0.0, 1.0).sum(axis=1)
    top = 1 + len(config.SCORE_LANDMARKS)
    if mode == "eq8":
        return (proposal_scores + peaks) / top
    if mode == "gated":
        return proposal_scores * (1 + peaks) / top
    return proposal_scores


def _check_shapes(scale_logits: np.ndarray, landmark_logits: np.ndarray) -> None:
    if scale_logits.ndim != 3 or scale_logits.shape[0] != config.NUM_SCALES:
        raise ValueError(f"scale_logits must be ({config.NUM_SCALES}, H, W), got {scale_logits.shape}")
    if landmark_logits.ndim != 3 or landmark_logits.shape[0] != config.NUM_LANDMARKS:
        raise ValueError(
            f"landmark_logits must be ({config.NUM_LANDMARKS}, H, W), got {landmark_logits.shape}"
        )
    if scale_logits.shape[1:] != landmark_logits.shape[1:]:
        raise ValueError(
            f"scale map {scale_logits.shape[1:]} and heatmaps {landmark_logits.shape[1:]} differ in size"
        )
    if 0 in scale_logits.shape:
        raise ValueError(f"maps are empty: {scale_logits.shape}")


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def _logit(probability: float) -> float:
    probability = min(max(probability, 1e-12), 1 - 1e-12)
    return float(np.log(probability / (1 - probability)))


_NEIGHBOUR_OFFSETS = np.array(
    [(ds, dy, dx) for ds in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (ds, dy, dx) != (0, 0, 0)]
)


def find_proposals(
    scale_logits: np.ndarray, params: PostprocessParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale-map cells above the threshold that are local maxima over (x, y, scale), top-k.

    Returns cells (P, 2) [y, x] int, bins (P,) int, logits (P,) float64, best first. One pass
    over the map (the max over scales) finds the cells worth looking at; only those are examined.
    """
    threshold = _logit(params.proposal_threshold)
    cell_peaks = np.fmax.reduce(scale_logits, axis=0)  # fmax: NaN never wins
    flat_cells = np.flatnonzero(cell_peaks > threshold)
    if len(flat_cells) > params.max_candidate_cells:
        top = np.argpartition(cell_peaks.ravel()[flat_cells], -params.max_candidate_cells)
        flat_cells = flat_cells[top[-params.max_candidate_cells :]]
    if len(flat_cells) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0)
    num_scales, height, width = scale_logits.shape
    ys, xs = np.divmod(flat_cells, width)
    vectors = np.nan_to_num(scale_logits[:, ys, xs], nan=-np.inf)  # (S, C)
    bins, which = np.nonzero(vectors > threshold)
    ys, xs = ys[which], xs[which]
    values = vectors[bins, which].astype(np.float64)
    # Neighbours beyond the border clip onto the border: comparing with an in-range cell (or
    # itself) never wrongly rejects a maximum.
    nb = np.clip(bins[:, None] + _NEIGHBOUR_OFFSETS[:, 0], 0, num_scales - 1)
    ny = np.clip(ys[:, None] + _NEIGHBOUR_OFFSETS[:, 1], 0, height - 1)
    nx = np.clip(xs[:, None] + _NEIGHBOUR_OFFSETS[:, 2], 0, width - 1)
    neighbours = np.nan_to_num(scale_logits[nb, ny, nx], nan=-np.inf)
    is_peak = np.all(values[:, None] >= neighbours, axis=1)
    bins, ys, xs, values = bins[is_peak], ys[is_peak], xs[is_peak], values[is_peak]
    if len(values) > params.max_proposals:
        top = np.argpartition(values, -params.max_proposals)[-params.max_proposals :]
        bins, ys, xs, values = bins[top], ys[top], xs[top], values[top]
    order = np.argsort(-values, kind="stable")
    cells = np.stack([ys[order], xs[order]], axis=1)
    return cells, bins[order], values[order]


def proposal_windows(cells: np.ndarray, sizes: np.ndarray, map_shape: tuple[int, int]) -> np.ndarray:
    """Square proposals as inclusive cell windows (P, 4) [x1, y1, x2, y2], clipped to the map.

    cells: (P, 2) [y, x] proposal centres; sizes: (P,) proposal sides in input pixels.
    Every window holds at least its centre cell.
    """
    height, width = map_shape
    half = sizes / (2 * config.STRIDE)
    ys, xs = cells[:, 0], cells[:, 1]
    x1 = np.clip(np.round(xs - half), 0, width - 1)
    x2 = np.clip(np.round(xs + half), 0, width - 1)
    y1 = np.clip(np.round(ys - half), 0, height - 1)
    y2 = np.clip(np.round(ys + half), 0, height - 1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


def scale_adaptive_soft_argmax(
    landmark_logits: np.ndarray, windows: np.ndarray, peak_channels: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 5-6: soft-argmax of every heatmap inside every window, in O(1) per window.

    landmark_logits: (K, H, W); windows: (P, 4) inclusive [x1, y1, x2, y2] in cells.
    Returns keypoints (P, K, 2) [x, y] in cell coordinates (the expectation of the cell position
    under the window's softmax, i.e. Eq. 6 with P(i - x1, w) / w mapped back by w and x1) and
    peak probabilities (P, K): max over the window of Eq. 5's Phi, for Eq. 8, computed for
    `peak_channels` only (all by default; NaN elsewhere).

    Summed-area tables of exp(h), x exp(h) and y exp(h) give each window's sums by four lookups;
    subtracting the channel max before exp keeps it finite. Windows whose share of the channel's
    mass is tiny are recomputed directly, where the table would lose precision.
    """
    heat = np.clip(
        np.nan_to_num(landmark_logits.astype(np.float64), nan=-_HEATMAP_CLAMP),
        -_HEATMAP_CLAMP,
        _HEATMAP_CLAMP,
    )
    num_channels, height, width = heat.shape
    weights = np.exp(heat - heat.max(axis=(1, 2), keepdims=True))  # (K, H, W), max 1
    planes = (weights, weights * np.arange(width, dtype=np.float64), weights * np.arange(height, dtype=np.float64)[:, None])
    # cv2.integral is a summed-area table in C, ~10x faster than two numpy cumsums; it writes
    # straight into one (3, K, H+1, W+1) array, plane by plane.
    tables = np.empty((3, num_channels, height + 1, width + 1))
    for plane, table in zip(planes, tables):
        for channel in range(num_channels):
            cv2.integral(plane[channel], table[channel], cv2.CV_64F)
    x1, y1, x2, y2 = windows.T
    channel_index = np.arange(num_channels)[None, :]
    rows1, rows2 = y1[:, None], y2[:, None] + 1
    cols1, cols2 = x1[:, None], x2[:, None] + 1
    sums = (
        tables[:, channel_index, rows2, cols2] - tables[:, channel_index, rows1, cols2]
        - tables[:, channel_index, rows2, cols1] + tables[:, channel_index, rows1, cols1]
    ).transpose(1, 0, 2)  # (P, 3, K)
    mass = sums[:, 0]
    total = tables[0, :, -1, -1][None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        keypoints = np.stack([sums[:, 1] / mass, sums[:, 2] / mass], axis=-1)
    channels = list(range(num_channels) if peak_channels is None else peak_channels)
    peak_probabilities = np.full((len(windows), num_channels), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        peak_probabilities[:, channels] = (
            window_max(weights[channels].astype(np.float32), windows) / mass[:, channels]
        )
    imprecise = np.argwhere(~(mass > _MIN_RELATIVE_MASS * total))
    for p, c in imprecise:
        keypoints[p, c], peak = _soft_argmax_direct(heat[c], windows[p])
        if c in channels:
            peak_probabilities[p, c] = peak
    return keypoints, peak_probabilities


def _soft_argmax_direct(heatmap: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, float]:
    """Eq. 5-6 for one window and one channel, with the window's own max subtracted."""
    x1, y1, x2, y2 = window
    patch = heatmap[y1 : y2 + 1, x1 : x2 + 1]
    weights = np.exp(patch - patch.max())
    mass = weights.sum()
    grid_y, grid_x = np.mgrid[y1 : y2 + 1, x1 : x2 + 1]
    point = np.array([(weights * grid_x).sum() / mass, (weights * grid_y).sum() / mass])
    return point, float(weights.max() / mass)


def window_max(values: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Max of values (K, H, W) over each inclusive window (P, 4) [x1, y1, x2, y2] -> (P, K).

    Row-wise sparse tables (max over 2**k consecutive columns) give every row's max inside a
    window from two lookups; the window max is the max over its rows, gathered in one go for all
    windows whose width falls in the same power-of-two level.
    """
    widths = windows[:, 2] - windows[:, 0] + 1
    row_counts = windows[:, 3] - windows[:, 1] + 1
    levels_needed = np.floor(np.log2(widths)).astype(np.int64)
    tables = [values]
    for level in range(1, int(levels_needed.max(initial=0)) + 1):
        step = 1 << (level - 1)
        tables.append(np.maximum(tables[-1][:, :, :-step], tables[-1][:, :, step:]))
    result = np.empty((len(windows), values.shape[0]), dtype=np.float64)
    for level in np.unique(levels_needed):
        members = np.flatnonzero(levels_needed == level)
        x1, y1, x2, y2 = windows[members].T
        rows = y1[:, None] + np.arange(int(row_counts[members].max()))[None, :]
        rows = np.minimum(rows, y2[:, None])  # short windows repeat their last row: max unchanged
        table = tables[int(level)]
        left = table[:, rows, x1[:, None]]  # (K, M, R)
        right = table[:, rows, (x2 - (1 << int(level)) + 1)[:, None]]
        result[members] = np.maximum(left, right).max(axis=2).T
    return result


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.6) -> np.ndarray:
    """Greedy non-maximum suppression. Returns indices of kept boxes, best score first.

    All pairwise IoUs come from one vectorised computation; the greedy pass then walks only the
    boxes that overlap another one beyond the threshold (the rest are kept as they are).
    """
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    boxes = boxes[order]
    overlaps = np.triu(pairwise_iou(boxes, boxes) > iou_threshold, k=1)  # i ranks above j
    suppressed = np.zeros(len(boxes), dtype=bool)
    for i in np.flatnonzero(overlaps.any(axis=1)):
        if not suppressed[i]:
            suppressed |= overlaps[i]
    return order[~suppressed]


def pairwise_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix (N, M) of boxes (N, 4) and (M, 4), [x1, y1, x2, y2]; 0 for empty unions."""
    ax1, ay1, ax2, ay2 = (boxes_a[:, i : i + 1] for i in range(4))
    bx1, by1, bx2, by2 = boxes_b.T
    inter_w = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    inter_h = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    inter = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
    area_a = np.maximum(ax2 - ax1, 0) * np.maximum(ay2 - ay1, 0)
    area_b = np.maximum(bx2 - bx1, 0) * np.maximum(by2 - by1, 0)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)

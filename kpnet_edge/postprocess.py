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

import math
import threading
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from kpnet_edge import config
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks
from kpnet_edge.quantized_maps import QuantizedMaps

SCORE_MODES = ("eq8", "gated", "scale")

_HEATMAP_CLAMP = 1.0e4
"""Heatmap logits are clipped to +-this so NaN/Inf in a model's output cannot poison exp()."""

_KEYPOINT_TOLERANCE = 1.0e-6
"""Largest rounding error, in cells, a soft-argmax keypoint may carry (a proven bound, see
_window_sums; the true error is usually below 1e-9)."""


DEFAULT_SCORE = "scale"
"""The default ranking (see PostprocessParams.score): P_s ranks best on held-out scenes."""

DEFAULT_SCORE_THRESHOLD = 0.25
"""The default minimum score of a returned face, everywhere (detector, CLI, reports): the best mean
F1 on the real dev sets (WIDER-val-200-dev, face-mask val, faces >= 24 px) that keeps Caltech val
recall >= 97 % (benchmarks/operating_point.py: F1 62.8 against 57.8 at 0.2, the previous default
chosen on synthetic scenes)."""


@dataclass(frozen=True)
class PostprocessParams:
    """Thresholds and ranking of the post-processor. Scores live in [0, 1].

    score_threshold decides which faces come back. proposal_threshold only bounds the work: by
    default it is derived from score_threshold as the lowest P_s whose face can still reach it
    (score_threshold itself for the "scale" and "gated" scores, 4 * score_threshold - 3 for
    "eq8"), so lowering the score threshold finds more faces. Set it explicitly to examine fewer
    (or more) proposals; `dataclasses.replace` keeps the value it resolved to.
    """

    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    """Minimum final score of a returned face."""
    proposal_threshold: float | None = None
    """Minimum scale-map probability P_s of a proposal; None: derived from score_threshold."""
    max_proposals: int = 200
    """Top-k cap on proposals, so a flat or noisy map cannot explode the work."""
    max_candidate_cells: int = 4096
    """Cap on spatial cells examined for local maxima (the highest cells win)."""
    nms_iou: float = 0.6
    score: str = DEFAULT_SCORE
    """How proposals are ranked: "eq8", (P_s + sum of eye/nose peak probabilities) / 4, as in the
    paper; "gated", P_s * (1 + that sum) / 4, where the keypoints can only confirm a proposal
    (tiny windows have peak probability ~1 whatever their content); "scale", P_s alone, the
    default: on held-out synthetic scenes it ranks best (AP 0.48 vs 0.47 gated, 0.22 Eq. 8 at
    >= 8 px; MODEL_CARD.md)."""
    template: FaceTemplate = field(default_factory=FaceTemplate.load)

    def __post_init__(self) -> None:
        if self.score not in SCORE_MODES:
            raise ValueError(f"score must be one of {SCORE_MODES}, got {self.score!r}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must lie in [0, 1], got {self.score_threshold}")
        if self.proposal_threshold is None:
            object.__setattr__(self, "proposal_threshold", lowest_proposal_score(self.score_threshold, self.score))
        elif not 0.0 <= self.proposal_threshold <= 1.0:
            raise ValueError(f"proposal_threshold must lie in [0, 1], got {self.proposal_threshold}")


def lowest_proposal_score(score_threshold: float, mode: str = DEFAULT_SCORE) -> float:
    """The lowest P_s whose face can still score score_threshold under `mode` (face_scores):
    the peak probabilities add at most len(SCORE_LANDMARKS) to "eq8" and scale "gated" by <= 1."""
    if mode == "eq8":
        top = 1 + len(config.SCORE_LANDMARKS)
        return max(top * score_threshold - (top - 1), 0.0)
    return score_threshold


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
    scale_logits: np.ndarray | QuantizedMaps,
    landmark_logits: np.ndarray | QuantizedMaps,
    params: PostprocessParams | None = None,
) -> Detections:
    """Faces from one image's DRNet outputs, in input-canvas pixels.

    scale_logits: (S, H, W) scale-map logits (sigmoid gives Eq. 2-3's probabilities).
    landmark_logits: (K, H, W) landmark heatmap logits h of Eq. 5.
    Either may be QuantizedMaps, a quantised model's integer output: the faces are the same as
    from its dequantised floats, and a quantised scale map is never dequantised whole.
    The maps may come from any canvas (256, 320, 416, ...): Eq. 1's I_max stays
    config.INPUT_SIZE, the size the bins were trained at, so a bin means the same face size in
    canvas pixels whatever the canvas.
    """
    params = params or PostprocessParams()
    if not isinstance(scale_logits, QuantizedMaps):
        scale_logits = np.asarray(scale_logits)
    if isinstance(landmark_logits, QuantizedMaps):
        landmark_logits = landmark_logits.dequantize()  # 5 channels: cheap, and soft-argmax needs reals
    landmark_logits = np.asarray(landmark_logits)
    _check_shapes(scale_logits, landmark_logits)
    cells, scale_bins, proposal_logits = find_proposals(scale_logits, params)
    if len(cells) == 0:
        return Detections.empty()
    proposal_scores = _sigmoid(proposal_logits)
    height, width = scale_logits.shape[1:]
    sizes = config.bin_to_scale(scale_bins + 0.5) * config.INPUT_SIZE
    centres = config.cell_to_pixel(cells[:, ::-1].astype(np.float64))  # (x, y) in pixels
    proposals = np.concatenate([centres - sizes[:, None] / 2, centres + sizes[:, None] / 2], axis=1)
    windows = proposal_windows(cells, sizes, (height, width))
    peak_channels = () if params.score == "scale" else config.SCORE_LANDMARKS  # "scale" needs no peaks
    keypoint_cells, peak_probabilities = scale_adaptive_soft_argmax(landmark_logits, windows, peak_channels)
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


def face_scores(
    proposal_scores: np.ndarray, peak_probabilities: np.ndarray, mode: str = DEFAULT_SCORE
) -> np.ndarray:
    """Scores in [0, 1] from P_s (P,) and peak soft-argmax probabilities (P, K); see
    PostprocessParams.score. "eq8" is Eq. 8, P = P_s + sum over eyes and nose of max Phi, / 4."""
    if mode == "scale":
        return proposal_scores
    # The clip only absorbs float32 rounding of peaks that are exactly 1.
    peaks = np.clip(peak_probabilities[:, list(config.SCORE_LANDMARKS)], 0.0, 1.0).sum(axis=1)
    top = 1 + len(config.SCORE_LANDMARKS)
    if mode == "eq8":
        return (proposal_scores + peaks) / top
    return proposal_scores * (1 + peaks) / top


def _check_shapes(scale_logits: np.ndarray | QuantizedMaps, landmark_logits: np.ndarray) -> None:
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
    scale_logits: np.ndarray | QuantizedMaps, params: PostprocessParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale-map cells above the threshold that are local maxima over (x, y, scale), top-k.

    Returns cells (P, 2) [y, x] int, bins (P,) int, logits (P,) float64, best first. One pass
    over the map (the max over scales) finds the cells worth looking at; only those are examined.
    A quantised map is searched in its integer levels (the same order as its reals), against the
    lowest level that reaches the threshold; only the proposals' logits are dequantised.
    """
    threshold: float | int = _logit(params.proposal_threshold)
    quantized = scale_logits if isinstance(scale_logits, QuantizedMaps) else None
    if quantized is not None:
        threshold, scale_logits = quantized.lowest_level(threshold), quantized.values
    cell_peaks = _max_over_channels(scale_logits)
    flat_cells = np.flatnonzero(cell_peaks >= threshold)
    if len(flat_cells) > params.max_candidate_cells:
        top = _best_first(cell_peaks.ravel()[flat_cells])[: params.max_candidate_cells]
        flat_cells = np.sort(flat_cells[top])
    if len(flat_cells) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0)
    num_scales, height, width = scale_logits.shape
    ys, xs = np.divmod(flat_cells, width)
    # The map as (H * W, S) pixel rows when it is an NHWC view, else as (S, H * W) planes (a copy
    # only for odd strides): either reads a cell's bins without a strided 3-D gather.
    pixels = _pixel_rows(scale_logits, (scale_logits.dtype,))
    planes = scale_logits.reshape(num_scales, -1) if pixels is None else None
    # (S, C); NaN is never at or above the threshold
    vectors = planes[:, flat_cells] if pixels is None else np.take(pixels, flat_cells, axis=0).T
    # Bins with a higher neighbouring bin in their own cell cannot be peaks: dropping them here,
    # on the (S, C) block, spares the 26-neighbour gather below most of its work (~5x).
    candidates = vectors >= threshold
    candidates[1:] &= ~(vectors[:-1] > vectors[1:])
    candidates[:-1] &= ~(vectors[1:] > vectors[:-1])
    bins, which = np.nonzero(candidates)
    ys, xs = ys[which], xs[which]
    values = vectors[bins, which]  # the map's dtype: int8 levels must not meet float64 rounding

    # Neighbours beyond the border clip onto the border: comparing with an in-range cell (or
    # itself) never wrongly rejects a maximum.
    nb = np.clip(bins[:, None] + _NEIGHBOUR_OFFSETS[:, 0], 0, num_scales - 1)
    ny = np.clip(ys[:, None] + _NEIGHBOUR_OFFSETS[:, 1], 0, height - 1)
    nx = np.clip(xs[:, None] + _NEIGHBOUR_OFFSETS[:, 2], 0, width - 1)
    # "No neighbour is higher" rather than "all are lower or equal": a NaN neighbour never wins.
    around = ny * width + nx
    neighbours = planes[nb, around] if pixels is None else pixels[around, nb]
    is_peak = ~np.any(neighbours > values[:, None], axis=1)
    bins, ys, xs, values = bins[is_peak], ys[is_peak], xs[is_peak], values[is_peak]
    order = _best_first(values)[: params.max_proposals]
    cells = np.stack([ys[order], xs[order]], axis=1)
    logits = quantized.real(values[order]) if quantized is not None else values[order]
    return cells, bins[order], logits.astype(np.float64)


def _best_first(values: np.ndarray) -> np.ndarray:
    """Indices of values, highest first, ties in index order: the same ranking for a quantised
    map's levels and their dequantised floats, where a partial sort would break ties by dtype."""
    return np.argsort(values.astype(np.float64) * -1, kind="stable")  # * -1: no int8 overflow


def _pixel_rows(maps: np.ndarray, dtypes: tuple[type, ...] = (np.float32,)) -> np.ndarray | None:
    """Channels-last maps (C, H, W) of one of `dtypes` as a (H * W, C) view, else None.

    An NHWC model's outputs reach the post-processor as transposed views, not copies: a copy
    costs 0.8 ms for the scale map, and numpy's reductions over the strided channel axis are
    10x slower than OpenCV's over these rows, so both layouts are read where they lie.
    """
    channels, height, width = maps.shape
    pixels = maps.transpose(1, 2, 0)
    if maps.dtype not in dtypes or not pixels.flags.c_contiguous:
        return None
    return pixels.reshape(height * width, channels)


def _max_over_channels(maps: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) maximum over channels, NaN never winning over a number."""
    if maps.dtype == np.int8:
        return _int8_max_over_channels(maps)
    rows = _pixel_rows(maps, (np.float32, np.uint8))
    if rows is not None:
        peaks = cv2.reduce(rows, 1, cv2.REDUCE_MAX).reshape(maps.shape[1:])
        if not np.isnan(peaks).any():  # OpenCV skips NaN except in a row's first place
            return peaks
    return np.fmax.reduce(maps, axis=0)


def _int8_max_over_channels(maps: np.ndarray) -> np.ndarray:
    """_max_over_channels of int8 levels. OpenCV reduces no int8, and numpy's reduction over
    60-byte rows is 6x slower than OpenCV's: flipping the sign bit maps int8 onto uint8 in the
    same order (q + 128), which OpenCV reduces; flipping it back restores the levels."""
    rows = _pixel_rows(maps, (np.int8,))
    if rows is None:
        return maps.max(axis=0)
    flipped = np.bitwise_xor(rows.view(np.uint8), np.uint8(0x80), out=_scratch("levels", rows.shape, np.uint8))
    peaks = cv2.reduce(flipped, 1, cv2.REDUCE_MAX)
    return np.bitwise_xor(peaks, np.uint8(0x80), out=peaks).view(np.int8).reshape(maps.shape[1:])


def _channel_extremes(maps: np.ndarray) -> tuple[np.ndarray, bool]:
    """Each channel's maximum (C,) and whether every value is finite within +-_HEATMAP_CLAMP."""
    rows = _pixel_rows(maps)
    if rows is None:
        flat = maps.reshape(len(maps), -1)
        highest, lowest = flat.max(axis=1), flat.min(axis=1)  # NaN anywhere makes them NaN
        return highest, bool(np.all(highest <= _HEATMAP_CLAMP) and np.all(lowest >= -_HEATMAP_CLAMP))
    in_range = cv2.checkRange(rows, True, -_HEATMAP_CLAMP, _HEATMAP_CLAMP)[0]
    # OpenCV reduces wide rows fast and 5-wide ones slowly: fold `fold` pixels into one row.
    fold = math.gcd(len(rows), 64)
    wide = rows.reshape(len(rows) // fold, fold * rows.shape[1])
    return cv2.reduce(wide, 0, cv2.REDUCE_MAX).reshape(fold, rows.shape[1]).max(axis=0), bool(in_range)


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


SOFT_ARGMAX_METHODS = ("auto", "windows", "tables")

_GROUP_OVERHEAD_CELLS = 2000
"""A gather's fixed cost in window cells (per channel): ~50 us against ~26 ns a cell, measured on
this project's 2-core dev machine."""

_WINDOWS_SHARE = 1.5
""""auto" gathers the windows when their padded cells (in _window_groups) are at most this many
times the region the tables would cover. Measured on the shipped INT8 model's heatmaps of real
photos with 300 random window sets: gathering was faster in 97 % of cases below 0.5x, 88 % at
0.5-1x, 75 % at 1-1.5x, 17 % at 1.5-2x and never above 2x."""


def scale_adaptive_soft_argmax(
    landmark_logits: np.ndarray,
    windows: np.ndarray,
    peak_channels: tuple[int, ...] | None = None,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 5-6: soft-argmax of every heatmap inside every window.

    landmark_logits: (K, H, W); windows: (P, 4) inclusive [x1, y1, x2, y2] in cells.
    Returns keypoints (P, K, 2) [x, y] in cell coordinates (the expectation of the cell position
    under the window's softmax, i.e. Eq. 6 with P(i - x1, w) / w mapped back by w and x1) and
    peak probabilities (P, K): max over the window of Eq. 5's Phi, for Eq. 8, for `peak_channels`
    only (all by default; NaN elsewhere).

    Two exact methods: "windows" gathers every window's cells (padded to the largest window) and
    weighs them relative to the window's own max; "tables" uses summed-area tables, O(1) per
    window after one pass over the region the windows cover. "auto" gathers when the windows are
    few and small against that region (the usual case: a few faces), else builds tables.
    """
    if method not in SOFT_ARGMAX_METHODS:
        raise ValueError(f"method must be one of {SOFT_ARGMAX_METHODS}, got {method!r}")
    landmark_logits = np.asarray(landmark_logits)
    num_channels = landmark_logits.shape[0]
    channels = list(range(num_channels) if peak_channels is None else peak_channels)
    if method == "tables":
        groups = None
    else:
        groups = _window_groups(windows) if method == "windows" else _groups_if_cheaper(windows)
    if groups is not None:
        keypoints, peak_probabilities = _gathered_soft_argmax(landmark_logits, windows, groups)
        peak_probabilities[:, [c for c in range(num_channels) if c not in channels]] = np.nan
        return keypoints, peak_probabilities
    heat, channel_tops = _finite_logits(landmark_logits)
    return _table_soft_argmax(heat, channel_tops, windows, channels)


def _groups_if_cheaper(windows: np.ndarray) -> list[np.ndarray] | None:
    """The windows' _window_groups when gathering them reads at most _WINDOWS_SHARE times the
    cells of the tables' region (the windows' bounding box), else None (use the tables)."""
    if len(windows) == 0:
        return []
    tall = windows[:, 3] - windows[:, 1] + 1
    wide = windows[:, 2] - windows[:, 0] + 1
    limit = _WINDOWS_SHARE * _table_region(windows)
    if int((tall * wide).sum()) > limit:  # the windows' own cells already exceed it
        return None
    groups = _window_groups(windows)
    return groups if sum(_padded_cells(tall, wide, members) for members in groups) <= limit else None


def _table_region(windows: np.ndarray) -> int:
    """Cells per channel of the tables' region: the windows' bounding box."""
    return int((windows[:, 2].max() - windows[:, 0].min() + 1) * (windows[:, 3].max() - windows[:, 1].min() + 1))


def _gathered_soft_argmax(
    landmark_logits: np.ndarray, windows: np.ndarray, groups: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-argmax (P, K, 2) and peak probabilities (P, K) of landmark_logits (K, H, W) in each
    window, from the windows' cells gathered into blocks, one per group of windows (groups, from
    _window_groups), padded to the group's largest window. Only the gathered cells
    are read, cleaned as _finite_logits cleans whole maps.

    Each window's weights are exp(h - window max) in float64: the max weighs exactly 1, so the
    mass is at least 1, nothing cancels and the peak probability is 1 / mass.
    """
    heat = np.asarray(landmark_logits, dtype=np.float32)
    if len(groups) == 1:
        keypoints, mass = _gathered_moments(heat, windows)
        return keypoints, 1.0 / mass
    keypoints = np.empty((len(windows), heat.shape[0], 2))
    mass = np.empty((len(windows), heat.shape[0]))
    for members in groups:
        keypoints[members], mass[members] = _gathered_moments(heat, windows[members])
    return keypoints, 1.0 / mass


def _window_groups(windows: np.ndarray) -> list[np.ndarray]:
    """Indices of windows in groups gathered together, each padded to its largest window.

    Windows are taken by size class (the power of two at or above the longer side); a class joins
    the group below it when padding costs fewer cells than a separate gather's fixed overhead
    (_GROUP_OVERHEAD_CELLS), so a few large windows do not pad every small one.
    """
    if len(windows) == 0:
        return []
    tall = windows[:, 3] - windows[:, 1] + 1
    wide = windows[:, 2] - windows[:, 0] + 1
    everything = np.arange(len(windows))
    if _padded_cells(tall, wide, everything) <= int((tall * wide).sum()) + _GROUP_OVERHEAD_CELLS:
        return [everything]
    classes = np.ceil(np.log2(np.maximum(tall, wide))).astype(np.int64)
    groups: list[np.ndarray] = []
    for size in np.unique(classes):
        members = np.flatnonzero(classes == size)
        if groups:
            merged = np.concatenate([groups[-1], members])
            if _padded_cells(tall, wide, merged) <= (
                _padded_cells(tall, wide, groups[-1]) + _padded_cells(tall, wide, members) + _GROUP_OVERHEAD_CELLS
            ):
                groups[-1] = merged
                continue
        groups.append(members)
    return groups


def _padded_cells(tall: np.ndarray, wide: np.ndarray, members: np.ndarray) -> int:
    """Cells of one gathered block for windows `members` (per channel)."""
    return len(members) * int(tall[members].max()) * int(wide[members].max())


def _gathered_moments(heat: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (P, K, 2) and masses (P, K) of heat (K, H, W) float32 in windows (P, 4), their
    cells gathered into one (K * P, h * w) block padded to the largest window: padding repeats
    the window's last row and column (never above its max) and weighs nothing."""
    channels, _, width = heat.shape
    x1, y1, x2, y2 = windows.T
    tall, wide = int((y2 - y1).max()) + 1, int((x2 - x1).max()) + 1
    down, across = np.arange(tall), np.arange(wide)
    rows = np.minimum(y1[:, None] + down, y2[:, None])
    cols = np.minimum(x1[:, None] + across, x2[:, None])
    cells = (rows[:, :, None] * width + cols[:, None, :]).reshape(-1)
    pixels = _pixel_rows(heat)
    if pixels is not None:  # channels-last: gather whole pixels (take: ~4x [cells]), no map copy
        gathered = np.take(pixels, cells, axis=0).T
    else:
        gathered = np.take(heat.reshape(channels, -1), cells, axis=1)
    in_range = cv2.checkRange(gathered, True, -_HEATMAP_CLAMP, _HEATMAP_CLAMP)[0]  # (K, cells)
    block = gathered.astype(np.float64, order="C").reshape(channels * len(windows), tall * wide)
    if not in_range:  # NaN fails the check too
        _clamp_logits(block)
    np.subtract(block, cv2.reduce(block, 1, cv2.REDUCE_MAX), out=block)
    cv2.exp(block, block)
    if (y2 - y1).min() + 1 < tall or (x2 - x1).min() + 1 < wide:  # some windows are padded
        inside = (down <= (y2 - y1)[:, None])[:, :, None] & (across <= (x2 - x1)[:, None])[:, None, :]
        weights = block.reshape(channels, len(windows), tall * wide)
        weights *= inside.reshape(len(windows), tall * wide)
    # One matrix product sums every window's weights, x weights and y weights.
    basis = np.stack([np.ones(tall * wide), np.tile(across, tall), np.repeat(down, wide)], axis=1)
    moments = (block @ basis).reshape(channels, len(windows), 3).transpose(1, 0, 2)
    mass = moments[:, :, 0]
    keypoints = moments[:, :, 1:] / mass[:, :, None] + windows[:, None, :2]
    return keypoints, mass


def _table_soft_argmax(
    heat: np.ndarray, channel_tops: np.ndarray, windows: np.ndarray, channels: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The "tables" method of scale_adaptive_soft_argmax, on finite logits.

    Summed-area tables of exp(h - top), x exp(h - top) and y exp(h - top) give each window's sums
    by four lookups. One table cannot serve every window: a window far below a peak that lies
    above and left of it holds so little of its corner entries' mass that the four-term difference
    cancels to noise. Two remedies. The first round sets aside a channel's few isolated top cells
    (_isolated_tops: a confident landmark's peak) and adds their weights back exactly to the
    windows holding them, so the tables hold only the rest of the map. Then the work goes in
    rounds: each round builds tables for every channel at once, relative to the first round's
    reference, then to the highest window max (exact, from window_max) still pending, clamped
    at 0 so nothing weighs more than 1, over the bounding box of the pending windows; it keeps
    the windows whose rounding-error bound is within _KEYPOINT_TOLERANCE (and always those
    holding the top, so every round finishes some) and leaves the rest to the next. The shipped
    model's maps, noise and one or five confident peaks take one round
    (benchmarks/postprocess.py); widely spread confident faces can take more."""
    num_windows, num_channels = len(windows), heat.shape[0]
    window_peaks = np.full((num_windows, num_channels), np.nan)  # exact window max logits, when needed
    if channels:
        window_peaks[:, channels] = window_max(heat[channels], windows)
    keypoints = np.empty((num_windows, num_channels, 2))
    tops = np.empty((num_windows, num_channels))
    masses = np.empty((num_windows, num_channels))
    pending = np.ones((num_windows, num_channels), dtype=bool)
    # The first round needs no window max: its reference comes from the channel max, and a few
    # isolated top cells (a confident peak) are set aside and added back exactly. On noise, on
    # the shipped model's maps and on confident peaks it is the only round.
    references, outliers = _isolated_tops(heat, channel_tops, windows)
    while pending.any():
        members, members_channels = np.nonzero(pending)
        sums, origin, error_bound = _window_sums(heat, windows[members], members_channels, references, outliers)
        # A window holding its channel's top weighs at least 1: its bound is tiny, or the map huge.
        done = (error_bound <= _KEYPOINT_TOLERANCE) | (window_peaks[members, members_channels] >= channel_tops[members_channels])
        members, members_channels, sums = members[done], members_channels[done], sums[:, done]
        masses[members, members_channels] = sums[0]
        keypoints[members, members_channels] = (sums[1:] / sums[0]).T + origin
        tops[members, members_channels] = references[members_channels]
        pending[members, members_channels] = False
        unknown = np.flatnonzero((pending & np.isnan(window_peaks)).any(axis=1))
        if len(unknown):
            window_peaks[unknown] = window_max(heat, windows[unknown])
        channel_tops = references = np.where(pending, window_peaks, -np.inf).max(axis=0)
        outliers = None
    peak_probabilities = np.full((num_windows, num_channels), np.nan)
    # The window's best cell weighs exp(peak - top) in its round's table.
    peak_probabilities[:, channels] = np.exp(window_peaks[:, channels] - tops[:, channels]) / masses[:, channels]
    return keypoints, peak_probabilities


def _finite_logits(landmark_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits as float32 within +-_HEATMAP_CLAMP, NaN as -_HEATMAP_CLAMP (no evidence), and each
    channel's max (K,) float64. A model's ordinary output passes through uncopied."""
    heat = np.asarray(landmark_logits, dtype=np.float32)
    highest, in_range = _channel_extremes(heat)
    if not in_range:
        heat = _clamp_logits(heat.copy())
        highest = heat.reshape(len(heat), -1).max(axis=1)
    return heat, highest.astype(np.float64)


def _clamp_logits(logits: np.ndarray) -> np.ndarray:
    """`logits` cleaned in place and returned: NaN as -_HEATMAP_CLAMP (no evidence), everything
    else clipped to +-_HEATMAP_CLAMP."""
    np.nan_to_num(logits, copy=False, nan=-_HEATMAP_CLAMP, posinf=_HEATMAP_CLAMP, neginf=-_HEATMAP_CLAMP)
    return np.clip(logits, -_HEATMAP_CLAMP, _HEATMAP_CLAMP, out=logits)


_OUTLIER_GAP = 16.0
"""Cells within this many logits of their channel's max are its top cells (_isolated_tops)."""

_MAX_OUTLIERS = 32
"""A channel with at most this many top cells has them set aside; with more, none."""


@dataclass(frozen=True)
class IsolatedCells:
    """A few heatmap cells held out of the summed-area tables: channels, ys, xs (S,) int and
    weights (S,) float64, exp(h - the channel's reference)."""

    channels: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    weights: np.ndarray

    def window_sums(self, windows: np.ndarray, channels: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """Sums (3, M) of w, x w and y w (x, y relative to origin) of the cells inside each window
        (M, 4) of channel channels (M,): a sum of positive terms, exact to rounding."""
        x1, y1, x2, y2 = (windows[:, i : i + 1] for i in range(4))
        inside = (
            (channels[:, None] == self.channels)
            & (x1 <= self.xs) & (self.xs <= x2) & (y1 <= self.ys) & (self.ys <= y2)
        )
        moments = np.stack([self.weights, self.weights * (self.xs - origin[0]), self.weights * (self.ys - origin[1])], axis=1)
        return (inside.astype(np.float64) @ moments).T


def _isolated_tops(heat: np.ndarray, channel_tops: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, IsolatedCells]:
    """First-round references (K,) and the isolated top cells they leave out, within the
    windows' bounding box (the tables' region; cells outside it are never read).

    A channel whose cells in the region above (top - _OUTLIER_GAP) number at most _MAX_OUTLIERS
    gets that level (as float32, the logits' precision, so no other cell lies above it) as its
    reference, and those cells become outliers; any other channel keeps its max. A confident
    landmark (logit 40 over N(0, 2)) otherwise costs every window below and right of it a
    second round.
    """
    x1, y1 = windows[:, 0].min(), windows[:, 1].min()
    region = heat[:, y1 : windows[:, 3].max() + 1, x1 : windows[:, 2].max() + 1]
    levels = (channel_tops - _OUTLIER_GAP).astype(np.float32)[:, None, None]
    # Every 8th row first: on ordinary maps it already holds too many top cells, for a 1/8 of
    # the work of counting them all.
    sample = np.greater(region[:, ::8], levels, order="C")
    isolated = np.flatnonzero(_channel_counts(sample) <= _MAX_OUTLIERS)
    above = np.greater(region[isolated], levels[isolated], order="C")
    few = _channel_counts(above) <= _MAX_OUTLIERS
    isolated, above = isolated[few], above[few]
    references = channel_tops.copy()
    references[isolated] = levels[isolated, 0, 0]
    # np.flatnonzero, then divmod: ~10x faster than np.nonzero's three index arrays.
    planes, cells = np.divmod(np.flatnonzero(above), above.shape[1] * above.shape[2])
    channels, (ys, xs) = isolated[planes], np.divmod(cells, above.shape[2])
    ys, xs = ys + y1, xs + x1
    weights = np.exp(heat[channels, ys, xs].astype(np.float64) - references[channels])
    return references, IsolatedCells(channels, ys, xs, weights)


def _channel_counts(mask: np.ndarray) -> np.ndarray:
    """True cells per channel of a (C, H, W) bool mask, channels-first or a channels-last view.
    OpenCV sums uint8 rows ~40x faster than numpy counts along an axis."""
    if mask.size == 0:
        return np.zeros(len(mask), np.int64)
    pixels = _pixel_rows(mask, (np.bool_,))
    if pixels is not None:  # fold pixels into wide rows, as _channel_extremes does
        fold = math.gcd(len(pixels), 64)
        wide = pixels.view(np.uint8).reshape(len(pixels) // fold, fold * mask.shape[0])
        return cv2.reduce(wide, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(fold, mask.shape[0]).sum(axis=0)
    if mask.flags.c_contiguous:
        return cv2.reduce(mask.view(np.uint8).reshape(len(mask), -1), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    return np.count_nonzero(mask, axis=(1, 2))


def _window_sums(
    heat: np.ndarray,
    windows: np.ndarray,
    channels: np.ndarray,
    references: np.ndarray,
    outliers: IsolatedCells | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of w, x w and y w over windows (M, 4) of heat[channels] (M,), x and y relative to the
    returned origin; and each keypoint's rounding-error bound in cells. Returns (sums (3, M),
    origin (2,) [x, y], bound (M,)).

    w = exp(h - reference) with references (K,). With `outliers` (first round) no other cell lies
    above its reference; the outliers weigh nothing in the tables and are added to each window
    holding them. Without (later rounds), w is clamped at 1: cells above the reference lie only
    in windows already done.

    The bound: every table weight is at most 1 and positive, so a table entry's rounding error is
    at most (H + W) * eps times the entry (times the region width for the moment tables); the
    four entries of a window are at most its far corner's, and the keypoint's error is at most
    twice the moments' error over the window's mass (outliers' exact weights included).
    """
    x1, y1 = windows[:, 0].min(), windows[:, 1].min()
    x2, y2 = windows[:, 2].max(), windows[:, 3].max()
    present = np.bincount(channels, minlength=len(references)) > 0
    used, plane_of = np.flatnonzero(present), np.cumsum(present) - 1  # plane_of: channel -> table plane
    count, height, width = len(used), y2 - y1 + 1, x2 - x1 + 1
    planes = _scratch("planes", (3, count, height, width))
    weights = planes[0]
    # In float64: h - top is exact for float32 logits.
    region = heat[:, y1 : y2 + 1, x1 : x2 + 1] if count == len(heat) else heat[used, y1 : y2 + 1, x1 : x2 + 1]
    np.subtract(region, references[used, None, None], out=weights)
    if outliers is None:
        np.minimum(weights, 0.0, out=weights)
    elif len(outliers.channels):
        inside = present[outliers.channels] & (outliers.xs >= x1) & (outliers.xs <= x2) & (outliers.ys >= y1) & (outliers.ys <= y2)
        weights[plane_of[outliers.channels[inside]], outliers.ys[inside] - y1, outliers.xs[inside] - x1] = -np.inf
    flat = weights.reshape(count * height, width)
    cv2.exp(flat, flat)  # cv2's float64 exp: ~5x numpy's here
    tables = _scratch("tables", (3, count, height + 1, width + 1))
    sums, far_mass = _integral_window_sums(planes, tables, windows - [x1, y1, x1, y1], plane_of[channels])
    if outliers is not None and len(outliers.channels):
        sums = sums + outliers.window_sums(windows, channels, (x1, y1))
    unit = (height + width + 2) * np.finfo(np.float64).eps
    with np.errstate(divide="ignore", invalid="ignore"):
        # A mass that cancelled to zero or below has no bound: it waits for a later round.
        bound = np.where(sums[0] > 0, 8 * unit * far_mass * max(height, width) / sums[0], np.inf)
    return sums, np.array([x1, y1], dtype=np.float64), bound


def _integral_window_sums(
    planes: np.ndarray, tables: np.ndarray, windows: np.ndarray, which: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sums of w, x w and y w over windows (M, 4) [x1, y1, x2, y2] (inclusive, relative to the
    planes' origin) of plane which (M,), from summed-area tables; planes[0] holds the weights
    w (C, H, W), planes[1:] and tables (3, C, H + 1, W + 1) are scratch.
    Returns sums (3, M) and each window's far-corner entry of the w table (M,)."""
    weights = planes[0]
    count, height, width = weights.shape
    np.multiply(weights, np.arange(width, dtype=np.float64), out=planes[1])
    np.multiply(weights, np.arange(height, dtype=np.float64)[:, None], out=planes[2])
    for plane, table in zip(planes, tables):
        for index in range(count):
            cv2.integral(plane[index], table[index], cv2.CV_64F)
    # One gather of the four corners (far, top right, bottom left, near) from flat tables.
    stride = width + 1
    near = which * ((height + 1) * stride) + windows[:, 1] * stride + windows[:, 0]
    down, across = (windows[:, 3] + 1 - windows[:, 1]) * stride, windows[:, 2] + 1 - windows[:, 0]
    corners = tables.reshape(3, -1)[:, np.stack([near + down + across, near + across, near + down, near])]
    sums = (corners[:, 0] - corners[:, 1]) - (corners[:, 2] - corners[:, 3])
    return sums, corners[0, 0]


_scratch_buffers = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
    """A contiguous array of `shape` (float64 by default), carved from a per-thread buffer kept
    across calls; one name, one dtype.

    Fresh arrays of a few MB are mapped fresh by the allocator on every call, and their page
    faults cost more than the arithmetic done in them (measured: 2x the soft-argmax's time).
    Nothing carved from here may outlive the call that asked for it.
    """
    size = math.prod(shape)
    buffer = getattr(_scratch_buffers, name, None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype)
        setattr(_scratch_buffers, name, buffer)
    return buffer[:size].reshape(shape)


def window_max(values: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Max of values (K, H, W) over each inclusive window (P, 4) [x1, y1, x2, y2] -> (P, K).

    Square sparse tables (max over 2**k x 2**k blocks, k up to the windows' shorter sides) cover
    each window with a few overlapping blocks (at most 4 a side for proposal windows, whose sides
    differ by less than 2x); windows sharing a level are gathered in one go.
    """
    widths = windows[:, 2] - windows[:, 0] + 1
    heights = windows[:, 3] - windows[:, 1] + 1
    levels_needed = np.floor(np.log2(np.minimum(widths, heights))).astype(np.int64)
    tables = [values]
    for level in range(1, int(levels_needed.max(initial=0)) + 1):
        tables.append(_double_blocks(tables[-1], 1 << (level - 1)))
    result = np.empty((len(windows), values.shape[0]), dtype=values.dtype)
    for level in np.unique(levels_needed):
        block = 1 << int(level)
        members = np.flatnonzero(levels_needed == level)
        x1, y1, x2, y2 = windows[members].T
        xs = _block_starts(x1, x2, block)  # (M, nx)
        ys = _block_starts(y1, y2, block)  # (M, ny)
        blocks = tables[int(level)][:, ys[:, :, None], xs[:, None, :]]  # (K, M, ny, nx)
        result[members] = blocks.max(axis=(2, 3)).T
    return result


def _double_blocks(block_max: np.ndarray, step: int) -> np.ndarray:
    """(K, H, W) maxima over step x step blocks (by top-left cell) -> over 2 step x 2 step blocks,
    (K, H, W). Entries whose doubled block leaves the map (the last 2 step - 1 columns or rows of
    a channel) are undefined: a block must fit in the map, so they are never read. Working on the
    flat array keeps both passes contiguous (cv2.max: ~2x numpy's, no copies)."""
    flat = np.ascontiguousarray(block_max).reshape(-1)
    down = step * block_max.shape[2]
    across = cv2.max(flat[:-step], flat[step:]).reshape(-1)
    doubled = np.empty_like(flat)
    doubled[: len(across) - down] = cv2.max(across[:-down], across[down:]).reshape(-1)
    return doubled.reshape(block_max.shape)


def _block_starts(starts: np.ndarray, stops: np.ndarray, block: int) -> np.ndarray:
    """First cells (M, n) of blocks of `block` cells that together cover each inclusive range
    [start, stop] (stop - start + 1 >= block); extra blocks repeat the last one."""
    counts = -(-(stops - starts + 1) // block)
    offsets = np.arange(int(counts.max())) * block
    return np.minimum(starts[:, None] + offsets[None, :], (stops - block + 1)[:, None])


_SOLID_AREA = float(np.finfo(np.float32).eps)
"""Smallest box area (pixels^2) that takes part in NMS: OpenCV's NMS treats two boxes whose union
is smaller as the same box."""


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.6) -> np.ndarray:
    """Greedy non-maximum suppression. Returns indices of kept boxes, best score first.

    OpenCV's C++ NMS does the greedy pass (~10x numpy's pairwise matrix at 200 boxes). It is fed
    each box's rank rather than its score, so its float32 scores cannot merge near-ties: the order
    is numpy's stable sort of the float64 scores. Zero-area boxes overlap nothing (pairwise_iou
    gives them 0); OpenCV would call two of them duplicates (any two boxes whose union is below
    float32 eps), so they, and boxes below _SOLID_AREA (rounding leaves the box of five identical
    landmarks ~1e-14 wide), skip it and are all kept.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(np.where(np.isnan(scores), np.inf, -scores), kind="stable")  # NaN last
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sides = boxes[:, 2:] - boxes[:, :2]
    solid = np.flatnonzero((sides > 0).all(axis=1) & (sides[:, 0] * sides[:, 1] >= _SOLID_AREA))
    ranks = np.empty(len(order), dtype=np.float32)
    ranks[order] = np.arange(len(order), 0, -1)
    kept = np.ones(len(boxes), dtype=bool)
    if len(solid):
        xywh = np.concatenate([boxes[solid, :2], sides[solid]], axis=1)
        survivors = np.asarray(cv2.dnn.NMSBoxes(xywh, ranks[solid], 0.0, float(iou_threshold)), dtype=np.int64)
        kept[solid] = False
        kept[solid[survivors.reshape(-1)]] = True
    return order[kept[order]]


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

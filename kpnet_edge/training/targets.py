"""Training targets: the scale map of Eq. 1-3 and the per-face windows of Eq. 5-6.

Eq. 3 as printed (sigma = 0.1 over offsets divided by r = floor(b / 10)) would leave only the host
cell non-zero. We read it as a Gaussian over offsets divided by R = max(1, floor(b / 10)) cells
with sigma 0.5 (so cells R away get e^-2), times a Gaussian over neighbouring scale bins
(sigma 1 bin): both soften the target where a cell or a bin off is an honest near-miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpnet_edge import config
from kpnet_edge.postprocess import proposal_windows

SPATIAL_SIGMA = 0.5
"""Eq. 3's sigma, over offsets in units of R cells."""
BIN_SIGMA = 1.0
"""Spread over neighbouring scale bins, in bins."""
BIN_REACH = 2


@dataclass(frozen=True)
class FaceTargets:
    """Per-face training targets of one image. cells (N, 2) [y, x] host cells; bins (N,) scale
    bins; windows (N, 4) inclusive cell windows [x1, y1, x2, y2] (the proposal inference would
    make); sizes (N,) proposal sides in pixels; valid (N,) faces with a centre inside the map and
    a bin inside [0, S)."""

    cells: np.ndarray
    bins: np.ndarray
    windows: np.ndarray
    sizes: np.ndarray
    valid: np.ndarray


def face_targets(boxes: np.ndarray, map_shape: tuple[int, int], image_max_edge: float) -> FaceTargets:
    """Host cell (Eq. 2), bin (Eq. 1) and soft-argmax window of each face box (N, 4) in pixels.

    image_max_edge is I_max of Eq. 1: the max edge of the whole image (256 for a training scene,
    even when the network sees a crop of it).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = map_shape
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    face_sizes = np.max(boxes[:, 2:] - boxes[:, :2], axis=1)
    bins = np.floor(config.scale_to_bin(face_sizes / image_max_edge)).astype(np.int64)
    cells = np.round(config.pixel_to_cell(centres[:, ::-1])).astype(np.int64)  # [y, x]
    valid = (
        (bins >= 0) & (bins < config.NUM_SCALES)
        & (cells[:, 0] >= 0) & (cells[:, 0] < height) & (cells[:, 1] >= 0) & (cells[:, 1] < width)
    )
    bins = np.clip(bins, 0, config.NUM_SCALES - 1)
    sizes = config.bin_to_scale(bins + 0.5) * image_max_edge
    clipped = np.stack([np.clip(cells[:, 0], 0, height - 1), np.clip(cells[:, 1], 0, width - 1)], 1)
    windows = proposal_windows(clipped, sizes, map_shape)
    return FaceTargets(cells=clipped, bins=bins, windows=windows, sizes=sizes, valid=valid)


def scale_map_target(targets: FaceTargets, map_shape: tuple[int, int]) -> np.ndarray:
    """Eq. 2-3: (S, H, W) float32 target, 1 at each valid face's (bin, host cell), a Gaussian
    around it, the max where faces' neighbourhoods overlap."""
    height, width = map_shape
    target = np.zeros((config.NUM_SCALES, height, width), dtype=np.float32)
    for (cy, cx), b in zip(targets.cells[targets.valid], targets.bins[targets.valid]):
        radius = max(1, b // config.BINS_PER_OCTAVE)
        reach = 2 * radius
        y0, y1 = max(0, cy - reach), min(height, cy + reach + 1)
        x0, x1 = max(0, cx - reach), min(width, cx + reach + 1)
        b0, b1 = max(0, b - BIN_REACH), min(config.NUM_SCALES, b + BIN_REACH + 1)
        dy = (np.arange(y0, y1) - cy) / radius
        dx = (np.arange(x0, x1) - cx) / radius
        db = np.arange(b0, b1) - b
        spatial = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * SPATIAL_SIGMA**2))
        across = np.exp(-(db**2) / (2 * BIN_SIGMA**2))
        patch = (across[:, None, None] * spatial[None]).astype(np.float32)
        np.maximum(target[b0:b1, y0:y1, x0:x1], patch, out=target[b0:b1, y0:y1, x0:x1])
    return target


LANDMARK_SIGMA_FRACTION = 0.025
"""Auxiliary landmark heatmaps: Gaussian sigma as a fraction of the face's window side (cells)."""
LANDMARK_MIN_SIGMA = 0.75


def landmark_heatmap_target(landmark_cells: np.ndarray, visible: np.ndarray, window_sides: np.ndarray,
                            map_shape: tuple[int, int]) -> np.ndarray:
    """(K, H, W) float32 Gaussians at each visible landmark (cells, (N, K, 2)), sigma growing with
    the face (window_sides (N,) cells), peak 1 at the nearest cell: the auxiliary target that
    teaches sharp peaks sooner than Eq. 7 alone (a departure, see MODEL_CARD.md)."""
    height, width = map_shape
    target = np.zeros((config.NUM_LANDMARKS, height, width), np.float32)
    for points, seen, side in zip(landmark_cells, visible, window_sides):
        sigma = max(LANDMARK_MIN_SIGMA, LANDMARK_SIGMA_FRACTION * float(side))
        reach = int(np.ceil(3 * sigma))
        for k, ((x, y), ok) in enumerate(zip(points, seen)):
            cx, cy = int(round(x)), int(round(y))
            if not ok or not (0 <= cx < width and 0 <= cy < height):
                continue
            x0, x1 = max(0, cx - reach), min(width, cx + reach + 1)
            y0, y1 = max(0, cy - reach), min(height, cy + reach + 1)
            # Centred on the rounded cell so the target's positive (== 1) cell is well defined.
            gy = np.exp(-((np.arange(y0, y1) - cy) ** 2) / (2 * sigma**2))
            gx = np.exp(-((np.arange(x0, x1) - cx) ** 2) / (2 * sigma**2))
            np.maximum(target[k, y0:y1, x0:x1], np.outer(gy, gx), out=target[k, y0:y1, x0:x1])
    return target

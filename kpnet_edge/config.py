"""The model's geometry in one place: input size, stride, scale bins (Eq. 1), landmarks, normalisation.

Every other module reads these constants and conversions from here, so a change of geometry is a
change of this file alone.
"""

from __future__ import annotations

import numpy as np

INPUT_SIZE = 256
"""Max edge of the network input; images are letterboxed into an INPUT_SIZE x INPUT_SIZE canvas."""

STRIDE = 2
"""Total stride of DRNet: the output maps are INPUT_SIZE / STRIDE on a side."""

OUTPUT_SIZE = INPUT_SIZE // STRIDE

NUM_SCALES = 60
"""S: scale bins of the scale map, 10 per octave from 2**5 to 2**11 in Eq. 1's units."""

SCALE_LOGIT_FLOOR = -16.0
"""Scale-map logits are clamped from below to this at inference (P_s 1.1e-7: no face). They carry
nothing there, yet a confident model's background reaches -97, and an INT8 output calibrated on
that range got a 0.385-logit grid, too coarse for the proposals near the threshold (WIDER-dev
AP50 >= 24 px 0.418 in FP32, 0.335 with the INT8 scale map; rounding the FP32 map to that grid
alone gave 0.349). Training sees the unclamped logits."""

BINS_PER_OCTAVE = 10
"""Eq. 1's factor 10: each octave [2**t, 2**(t+1)] is split into 10 bins."""

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
"""K = 5 landmarks in this order; left/right are image-left/image-right, as in MTFL and WIDER labels."""

NUM_LANDMARKS = len(LANDMARK_NAMES)

FLIP_PERMUTATION = (1, 0, 2, 4, 3)
"""Landmark order after a horizontal flip: image-left and image-right swap places."""

SCORE_LANDMARKS = (0, 1, 2)
"""Eq. 8 adds the peak soft-argmax probability of the eyes and the nose to the scale score."""

PIXEL_MEAN = 127.5
PIXEL_STD = 128.0
"""Normalisation x = (rgb - PIXEL_MEAN) / PIXEL_STD, applied inside the network graph so every
backend, INT8 ones included, takes raw RGB pixels in [0, 255]."""

PAD_VALUE = 127
"""Letterbox padding, in uint8 pixels: close to zero after normalisation."""

OUTPUT_NAMES = ("scale_logits", "landmark_logits")
"""Names of DRNet's two heads, in this order, in every exported format."""

INPUT_NAME = "image"

# Eq. 1: b = 10 * (log2(max(h, w) * 2048 / I_max) - 5). With r = max(h, w) / I_max, the relative
# face size, b = 10 * (log2(r) + 6): bin 0 starts at r = 2**-6 (4 px at I_max = 256), bin 60 ends
# at r = 1 (a face as large as the image).
_LOG2_R_OFFSET = 11 - 5


def scale_to_bin(relative_size: np.ndarray | float) -> np.ndarray:
    """Eq. 1: continuous bin coordinate b for a face of size max(h, w) / I_max.

    The integer bin is floor(b); values outside [0, NUM_SCALES) mean the face is too small or too
    large for the scale map. Sizes <= 0 give -inf.
    """
    relative_size = np.asarray(relative_size, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return BINS_PER_OCTAVE * (np.log2(relative_size) + _LOG2_R_OFFSET)


def bin_to_scale(bin_index: np.ndarray | float) -> np.ndarray:
    """Inverse of Eq. 1: relative face size max(h, w) / I_max at continuous bin coordinate b.

    An integer bin i decodes best at its centre, bin_to_scale(i + 0.5).
    """
    bin_index = np.asarray(bin_index, dtype=np.float64)
    return np.exp2(bin_index / BINS_PER_OCTAVE - _LOG2_R_OFFSET)


def cell_to_pixel(cell: np.ndarray | float) -> np.ndarray:
    """Centre of output cell `cell` in input pixel coordinates (pixel k has its centre at k)."""
    return np.asarray(cell, dtype=np.float64) * STRIDE + (STRIDE - 1) / 2


def pixel_to_cell(pixel: np.ndarray | float) -> np.ndarray:
    """Inverse of cell_to_pixel: continuous output-cell coordinate of an input pixel coordinate."""
    return (np.asarray(pixel, dtype=np.float64) - (STRIDE - 1) / 2) / STRIDE

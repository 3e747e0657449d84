"""Integer model outputs kept integer: QuantizedMaps carries a quantised output with its affine
quantisation, so the post-processor can read 1 byte a value instead of a dequantised float32 copy.

Why: a TFLite INT8 DRNet returns its 60-channel scale map as int8. Dequantising it to float32 writes
4 MB a frame that the post-processor then reads once, cold; on a 2-core CPU that costs more than the
post-processor's own work (issue 11). Dequantisation is monotone (scale > 0), so every comparison
the post-processor makes on the scale map (threshold, local maximum, ranking) gives the same answer
on the integer levels; only the few values that survive need dequantising.

Example:
    >>> import numpy as np
    >>> maps = QuantizedMaps(np.array([[[[-128, 0], [5, 127]]]], np.int8), scale=0.5, zero_point=-10)
    >>> maps.dequantize()[0, 0, 1]
    array([ 7.5, 68.5], dtype=float32)
    >>> int(maps.lowest_level(7.5)), int(maps.lowest_level(7.6))
    (5, 6)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QuantizedMaps:
    """Integer maps (any shape, e.g. (N, C, H, W) or one image's (C, H, W), views allowed) and the
    quantisation that makes them real: real = scale * (q - zero_point), per tensor."""

    values: np.ndarray
    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        dtype = getattr(self.values, "dtype", type(self.values))
        if not isinstance(self.values, np.ndarray) or dtype.kind not in "iu" or dtype.itemsize > 2:
            raise ValueError(f"QuantizedMaps holds 8- or 16-bit integer arrays, got {dtype}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"quantisation scale must be finite and > 0, got {self.scale}")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    @property
    def ndim(self) -> int:
        return self.values.ndim

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int | slice) -> QuantizedMaps:
        """The maps of one image (or a slice of images), still quantised."""
        return QuantizedMaps(self.values[index], self.scale, self.zero_point)

    def __iter__(self) -> Iterator[QuantizedMaps]:
        return (self[i] for i in range(len(self)))

    def dequantize(self) -> np.ndarray:
        """The real values as float32, in the layout of `values` (a transposed view stays one)."""
        return self.real(self.values).astype(np.float32, copy=False)

    def real(self, levels: np.ndarray) -> np.ndarray:
        """Real values of some levels, exactly as dequantize computes them (float32 arithmetic)."""
        return (np.asarray(levels).astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)

    def lowest_level(self, threshold: float) -> int:
        """The smallest level whose real value is >= threshold; one past the dtype's top if none.

        `q >= lowest_level(t)` holds exactly where `dequantize() >= t` does for a Python float t,
        which numpy compares with float32 values in float32: the level t / scale + zero_point,
        rounded up, is moved by single levels until the levels' own float32 values agree.
        """
        info = np.iinfo(self.values.dtype)
        bound = np.float32(threshold)
        if np.isnan(bound):
            return info.max + 1
        level = math.ceil(min(max(threshold / self.scale + self.zero_point, info.min), info.max + 1))
        while level > info.min and self._real_level(level - 1) >= bound:
            level -= 1
        while level <= info.max and self._real_level(level) < bound:
            level += 1
        return level

    def _real_level(self, level: int) -> np.float32:
        return (np.float32(level) - np.float32(self.zero_point)) * np.float32(self.scale)

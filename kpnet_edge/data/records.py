"""The annotation record every loader returns, whatever the file format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class AnnotatedImage:
    """One image and its faces, in the image's own pixel coordinates.

    boxes: (N, 4) float64 [x1, y1, x2, y2]; landmarks: (N, K, 2) float64 or None when the format
    has none (NaN rows for faces without landmarks); ignore: (N,) bool, faces that count neither as
    hits nor misses (WIDER's invalid faces).
    """

    path: Path
    boxes: np.ndarray
    landmarks: np.ndarray | None = None
    ignore: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float64)
        if self.ignore is None:
            self.ignore = np.zeros(len(self.boxes), dtype=bool)
        self.ignore = np.asarray(self.ignore, dtype=bool)

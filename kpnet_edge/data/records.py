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
    hits nor misses (WIDER's invalid faces) and regions training must not call background;
    visible: (N, K) bool or None, False where a landmark is absent or only a guess (occluded, a
    masked mouth), so training masks it out; None means every finite landmark is trusted;
    mouth_centres: (N, 2) float64 or None, a hand-labelled mouth centre where the format has one
    instead of mouth corners (Caltech); labels: per-face class names where the format has them;
    scores: (N,) float64 or None, how sure the labeller was (1 for a human, a teacher's score).
    """

    path: Path
    boxes: np.ndarray
    landmarks: np.ndarray | None = None
    ignore: np.ndarray = field(default=None)  # type: ignore[assignment]
    visible: np.ndarray | None = None
    mouth_centres: np.ndarray | None = None
    labels: list[str] | None = None
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float64)
        if self.ignore is None:
            self.ignore = np.zeros(len(self.boxes), dtype=bool)
        self.ignore = np.asarray(self.ignore, dtype=bool)
        if self.visible is not None:
            self.visible = np.asarray(self.visible, dtype=bool)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if self.mouth_centres is not None:
            self.mouth_centres = np.asarray(self.mouth_centres, dtype=np.float64).reshape(-1, 2)

    def trusted_landmarks(self) -> np.ndarray:
        """(N, K) bool: landmarks that are present and not a guess."""
        if self.landmarks is None:
            return np.zeros((len(self.boxes), 0), dtype=bool)
        present = np.isfinite(self.landmarks).all(axis=2)
        return present if self.visible is None else present & self.visible

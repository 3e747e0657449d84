"""A plain folder of images -> AnnotatedImage records with no faces, for calibration and detection."""

from __future__ import annotations

from pathlib import Path

from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.imageio import list_images


def load_folder(folder: str | Path) -> list[AnnotatedImage]:
    """One face-less AnnotatedImage per image under folder (recursive, sorted).

    Raises KpnetError when the folder is missing or holds no images.
    """
    return [AnnotatedImage(path=path, boxes=[]) for path in list_images(folder)]

"""Image and video input with clear errors: every failure names the file and what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from kpnet_edge.errors import KpnetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8 (H, W, 3). Raises KpnetError naming the file on failure."""
    path = Path(path)
    if not path.exists():
        raise KpnetError(f"{path}: no such file")
    if path.is_dir():
        raise KpnetError(f"{path}: is a folder, not an image")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise KpnetError(f"{path}: file is empty")
    if _is_truncated_jpeg(data):
        raise KpnetError(f"{path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise KpnetError(f"{path}: not a readable image (unknown format or corrupt data)")
    return image


def _is_truncated_jpeg(data: np.ndarray) -> bool:
    # OpenCV decodes a cut-off JPEG into a partly grey image without an error; the end-of-image
    # marker FF D9 (possibly followed by padding) tells a complete file.
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    tail = data[-64:].tobytes()
    return b"\xff\xd9" not in tail


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder and its sub-folders, sorted. Raises KpnetError if there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise KpnetError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise KpnetError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise KpnetError(
            f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return paths


def is_video(path: str | Path) -> bool:
    """True when the path's suffix is a video container this toolkit reads."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def count_frames(path: str | Path) -> int | None:
    """Frame count a video reports, or None when the container does not say."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return count if count > 0 else None


def read_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file as BGR uint8 arrays."""
    path = Path(path)
    if not path.exists():
        raise KpnetError(f"{path}: no such file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise KpnetError(f"{path}: not a readable video")
    try:
        ok, frame = capture.read()
        if not ok:
            raise KpnetError(f"{path}: video has no readable frames")
        while ok:
            yield frame
            ok, frame = capture.read()
    finally:
        capture.release()

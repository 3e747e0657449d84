"""Image and video input with clear errors: every failure names the file and what is wrong."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from kpnet_edge.errors import KpnetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})


class DamagedImageWarning(UserWarning):
    """An image OpenCV decodes only in part (e.g. a JPEG cut off before its end marker): it is
    used, and the caller is told."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8 (H, W, 3). Raises KpnetError naming the file when OpenCV
    cannot decode it; warns (DamagedImageWarning) when it decodes a damaged JPEG in part.

    Bytes after a JPEG's end-of-image marker (phone "motion photos", vendor trailers) are fine.
    """
    path = Path(path)
    if not path.exists():
        raise KpnetError(f"{path}: no such file")
    if path.is_dir():
        raise KpnetError(f"{path}: is a folder, not an image")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise KpnetError(f"{path}: file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    cut_off = jpeg_is_cut_off(data.tobytes())
    if image is None:
        if cut_off:
            raise KpnetError(f"{path}: truncated JPEG (its data ends before the end-of-image marker)")
        raise KpnetError(f"{path}: not a readable image (unknown format or corrupt data)")
    if cut_off:  # some OpenCV builds decode a cut-off JPEG, filling the missing part with grey
        warnings.warn(f"{path}: damaged JPEG (its data ends before the end-of-image marker; the missing "
                      "part decodes grey)", DamagedImageWarning, stacklevel=2)
    return image


def jpeg_is_cut_off(data: bytes) -> bool:
    """True for a JPEG whose compressed data has no end-of-image marker (FF D9) after its first
    start-of-scan: a cut-off file, which OpenCV decodes into a partly grey image without error.

    The header segments are walked by their lengths (an EXIF thumbnail holds its own FF D9), and
    the scan data is searched from there on: inside it FF is always stuffed (FF 00) or a restart
    marker, so the first FF D9 is the real end. Anything after it is a trailer and ignored.
    Non-JPEG data and headers too broken to walk give False (the decoder judges those).
    """
    if data[:2] != b"\xff\xd8":
        return False
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xD9:  # end of image before any scan
            return False
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:
            return data.find(b"\xff\xd9", position + 2 + length) < 0
        position += 2 + length
    return True  # the headers run off the end of the file: cut off before any image data


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

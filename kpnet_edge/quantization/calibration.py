"""Calibration sets for INT8: real images through exactly the inference pre-processing (letterbox),
seeded, balanced over face scales when annotations exist, hashed for the manifest."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kpnet_edge import config
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import list_images, read_image
from kpnet_edge.preprocess import letterbox

DEFAULT_SIZE = 300
SMALL_SET = 100
"""Below this many images a warning says INT8 ranges may not be representative."""

CHECK_SIZE = 16
"""Images kept aside (not calibrated on) for the converters' parity checks."""


class CalibrationWarning(UserWarning):
    """A skipped image or a small calibration set: conversion goes on, the user should know."""


@dataclass(frozen=True)
class CalibrationSet:
    """Letterboxed RGB uint8 canvases (N, size, size, 3) and where they came from.

    check: canvases for parity checks, held out from calibration (check_held_out) unless the
    source has fewer than 5 readable images.
    sha256 hashes the calibration canvases' bytes in order: same hash, same calibration data,
    pre-processing included.
    """

    canvases: np.ndarray
    files: tuple[str, ...]
    check: np.ndarray
    check_files: tuple[str, ...]
    check_held_out: bool
    sha256: str
    seed: int
    source: str
    strata: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.canvases)

    def describe(self) -> dict[str, object]:
        """The manifest's record of this set."""
        return {
            "source": self.source,
            "size": len(self),
            "seed": self.seed,
            "sha256": self.sha256,
            "preprocessing": f"letterbox to {self.canvases.shape[1]}x{self.canvases.shape[2]}, RGB uint8",
            "strata": self.strata,
            "files": list(self.files),
            "check_files": list(self.check_files),
            "check_held_out": self.check_held_out,
        }


def build_calibration_set(
    source: str | Path | Sequence[AnnotatedImage], size: int = DEFAULT_SIZE, seed: int = 0,
    input_size: int = config.INPUT_SIZE,
) -> CalibrationSet:
    """Sample `size` images, and up to CHECK_SIZE held out for parity checks, from a folder or
    annotated records, letterboxed to input_size x input_size canvases.

    Folders: a seeded random sample. Annotated records: balanced over face-scale strata (the
    octave of the image's median face bin, Eq. 1), round-robin across strata so rare scales are
    not crowded out. Unreadable images are skipped with a warning naming each; a set smaller than
    SMALL_SET gets a warning. Raises KpnetError if the source is missing or yields no image.
    """
    if size < 1:
        raise KpnetError(f"calibration size must be at least 1, got {size}")
    rng = np.random.default_rng(seed)
    if isinstance(source, (str, Path)):
        root = Path(source)
        paths = list_images(root)
        order: list[Path] = [paths[i] for i in rng.permutation(len(paths))]
        strata = None
        label = str(root)
        names = {p: p.relative_to(root).as_posix() for p in paths}
    else:
        records = list(source)
        if not records:
            raise KpnetError("calibration: the list of annotated images is empty")
        order, strata = _stratified_order(records, rng)
        label = f"{len(records)} annotated images"
        names = {p: str(p) for p in order}
    canvases, files, skipped = _read_canvases(order, size + CHECK_SIZE, names, input_size)
    if not canvases:
        raise KpnetError(f"calibration: no readable image in {label} ({skipped} unreadable)")
    # Hold out images for the parity checks: CHECK_SIZE after the first `size`, or a fifth of a
    # source too small for both; a source of fewer than 5 images is checked on its own images.
    spare = len(canvases) - size
    n_check = min(CHECK_SIZE, spare) if spare > 0 else min(CHECK_SIZE, len(canvases) // 5)
    cut = len(canvases) - n_check  # never more than `size`: at most size + CHECK_SIZE were read
    calib, calib_files = canvases[:cut], files[:cut]
    if n_check:
        check, check_files = canvases[cut:], files[cut:]
    else:
        check, check_files = calib[:CHECK_SIZE], calib_files[:CHECK_SIZE]
    if len(calib) < SMALL_SET:
        warnings.warn(
            f"calibration set has only {len(calib)} images (fewer than {SMALL_SET}); "
            "INT8 ranges may not represent real inputs",
            CalibrationWarning,
            stacklevel=2,
        )
    stacked = np.stack(calib)
    return CalibrationSet(
        canvases=stacked,
        files=tuple(calib_files),
        check=np.stack(check),
        check_files=tuple(check_files),
        check_held_out=n_check > 0,
        sha256=hashlib.sha256(stacked.tobytes()).hexdigest(),
        seed=seed,
        source=label,
        strata=_count_strata(strata, calib_files, names) if strata else None,
    )


def _read_canvases(
    order: list[Path], limit: int, names: dict[Path, str], input_size: int
) -> tuple[list[np.ndarray], list[str], int]:
    """Letterboxed canvases of the first `limit` readable images, their names, and how many
    unreadable ones were skipped (each with a warning)."""
    canvases: list[np.ndarray] = []
    files: list[str] = []
    skipped = 0
    for path in order:
        if len(canvases) == limit:
            break
        try:
            canvas, _ = letterbox(read_image(path), size=input_size)
        except KpnetError as error:
            skipped += 1
            warnings.warn(f"calibration: skipping {error}", CalibrationWarning, stacklevel=3)
            continue
        canvases.append(canvas)
        files.append(names[path])
    return canvases, files, skipped


def face_stratum(record: AnnotatedImage, image_size: tuple[int, int]) -> int:
    """Scale octave 0..5 of the median face (Eq. 1 bin // BINS_PER_OCTAVE), -1 for no face.

    image_size: (height, width); relative face size = max(w, h) / max(image height, width).
    """
    boxes = record.boxes[~record.ignore]
    if len(boxes) == 0:
        return -1
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    bins = config.scale_to_bin(np.median(sides) / max(image_size))
    octaves = config.NUM_SCALES // config.BINS_PER_OCTAVE
    return int(np.clip(np.floor(bins / config.BINS_PER_OCTAVE), 0, octaves - 1))


def _stratified_order(
    records: list[AnnotatedImage], rng: np.random.Generator
) -> tuple[list[Path], dict[Path, int]]:
    strata: dict[Path, int] = {}
    unreadable: list[Path] = []
    for record in records:
        size = _image_size(record.path)
        if size is None:
            unreadable.append(record.path)  # kept last: reading it warns and skips it
        else:
            strata[record.path] = face_stratum(record, size)
    groups: dict[int, list[Path]] = {}
    for path, stratum in strata.items():
        groups.setdefault(stratum, []).append(path)
    shuffled = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(groups.items())]
    # Round-robin: one image from each stratum in turn, so every face scale is represented.
    longest = max(map(len, shuffled), default=0)
    order = [group[i] for i in range(longest) for group in shuffled if i < len(group)]
    return order + unreadable, strata


def _image_size(path: Path) -> tuple[int, int] | None:
    # A 1/8-scale decode (JPEG decodes at reduced size natively) is enough for a size to within
    # 8 px, far below one scale bin, and much faster than a full decode.
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) if data.size else None
    return None if image is None else (image.shape[0] * 8, image.shape[1] * 8)


def _count_strata(strata: dict[Path, int], files: list[str], names: dict[Path, str]) -> dict[str, int]:
    by_name = {names[p]: s for p, s in strata.items()}
    counts: dict[str, int] = {}
    for name in files:
        key = "no_faces" if by_name[name] < 0 else f"octave_{by_name[name]}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))

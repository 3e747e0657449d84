"""RetinaFace-style `label.txt` (WIDER FACE boxes with 5 landmarks) -> AnnotatedImage records.

This is the layout the RetinaFace authors published WIDER FACE landmarks in, and the one most
face-detector training code reads; malformed lines are reported as `file:LINE: problem`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kpnet_edge import config
from kpnet_edge.data.fields import parse_number
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import IMAGE_SUFFIXES

_BOX_FIELDS = 4
_FULL_FIELDS = _BOX_FIELDS + 3 * config.NUM_LANDMARKS + 1
"""x y w h, then (x, y, flag) per landmark, then a blur / quality number."""

_ABSENT = -1.0


def load_retinaface_labels(label_file: str | Path, image_root: str | Path) -> list[AnnotatedImage]:
    """One AnnotatedImage per `# path` header of a RetinaFace label.txt.

    Each header is followed by one line per face: either `x y w h` (the val/test layout) or
    `x y w h  lx0 ly0 f0 ... lx4 ly4 f4  blur` (train). Landmarks come in config.LANDMARK_NAMES
    order; a point given as (-1, -1) is absent and becomes a NaN row, as are all points of a face
    given by its box alone. Boxes become [x, y, x + w, y + h]; zero-size boxes get ignore=True.
    Raises KpnetError("label_file:LINE: problem") on the first malformed line or missing image.
    """
    label_file = Path(label_file)
    image_root = Path(image_root)
    try:
        lines = label_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise KpnetError(f"{label_file}: cannot read RetinaFace labels ({error})") from None
    images: list[tuple[Path, list[list[float]]]] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            images.append((_parse_header(label_file, number, text, image_root), []))
        elif not images:
            raise KpnetError(f"{label_file}:{number}: face line before the first '# path' header")
        else:
            images[-1][1].append(_parse_face(label_file, number, text))
    if not images:
        raise KpnetError(f"{label_file}: no '# path' headers found")
    return [_record(path, rows) for path, rows in images]


def _record(path: Path, rows: list[list[float]]) -> AnnotatedImage:
    faces = np.asarray(rows, dtype=np.float64).reshape(-1, _FULL_FIELDS)
    xy, wh = faces[:, 0:2], faces[:, 2:4]
    points = faces[:, _BOX_FIELDS : _BOX_FIELDS + 3 * config.NUM_LANDMARKS]
    landmarks = points.reshape(-1, config.NUM_LANDMARKS, 3)[..., :2].copy()
    absent = (landmarks == _ABSENT).all(axis=2)
    landmarks[absent] = np.nan
    return AnnotatedImage(
        path=path,
        boxes=np.concatenate([xy, xy + wh], axis=1),
        landmarks=landmarks,
        ignore=(wh <= 0).any(axis=1),
    )


def _parse_header(label_file: Path, number: int, text: str, image_root: Path) -> Path:
    relative = text[1:].strip()
    if Path(relative).suffix.lower() not in IMAGE_SUFFIXES:
        raise KpnetError(f"{label_file}:{number}: expected '# <image path>', got {text[:60]!r}")
    path = image_root / relative
    if not path.is_file():
        raise KpnetError(f"{label_file}:{number}: image {path} not found")
    return path


def _parse_face(label_file: Path, number: int, text: str) -> list[float]:
    fields = text.split()
    if len(fields) not in (_BOX_FIELDS, _FULL_FIELDS):
        raise KpnetError(
            f"{label_file}:{number}: expected {_BOX_FIELDS} numbers (x y w h) or {_FULL_FIELDS} "
            f"(x y w h, x y flag per landmark, blur), got {len(fields)} fields"
        )
    values = [parse_number(field, f"{label_file}:{number}") for field in fields]
    if values[2] < 0 or values[3] < 0:
        raise KpnetError(f"{label_file}:{number}: negative box size w={fields[2]} h={fields[3]}")
    if len(values) == _BOX_FIELDS:
        # A box-only face gets absent landmarks and a NaN quality, so every row has one layout.
        values += [_ABSENT] * (3 * config.NUM_LANDMARKS) + [math.nan]
    return values

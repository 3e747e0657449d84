"""RetinaFace-style `label.txt` (WIDER FACE boxes with 5 landmarks) -> AnnotatedImage records.

This is the layout the RetinaFace authors published WIDER FACE landmarks in, and the one most
face-detector training code reads; malformed lines are reported as `file:LINE: problem`.
`kpnet-edge label` writes it too: per landmark flag 0 = trusted, 1 = a guess (occluded), -1 with
x = y = -1 = absent; the last number is how sure the labeller was (1 for a human, a teacher's
score), so a reader can turn doubtful faces into ignore regions with `min_quality`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kpnet_edge import config
from kpnet_edge.atomic import atomic_write_text
from kpnet_edge.data.fields import parse_number
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import IMAGE_SUFFIXES

_BOX_FIELDS = 4
_FULL_FIELDS = _BOX_FIELDS + 3 * config.NUM_LANDMARKS + 1
"""x y w h, then (x, y, flag) per landmark, then a blur / quality number."""

_ABSENT = -1.0
_GUESS = 1.0


def load_retinaface_labels(label_file: str | Path, image_root: str | Path,
                           min_quality: float | None = None) -> list[AnnotatedImage]:
    """One AnnotatedImage per `# path` header of a RetinaFace label.txt.

    Each header is followed by one line per face: either `x y w h` (the val/test layout) or
    `x y w h  lx0 ly0 f0 ... lx4 ly4 f4  blur` (train). Landmarks come in config.LANDMARK_NAMES
    order; a point given as (-1, -1) is absent and becomes a NaN row, as are all points of a face
    given by its box alone. A point flagged 1 (occluded, a guess) gets visible=False. Boxes become
    [x, y, x + w, y + h]; zero-size boxes get ignore=True, and so do faces whose last number is
    below min_quality when it is given (teacher faces too doubtful to learn from). Raises KpnetError("label_file:LINE: problem") on the first malformed line or missing image.
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
    return [_record(path, rows, min_quality) for path, rows in images]


def write_retinaface_labels(records: Sequence[AnnotatedImage], label_file: str | Path,
                            image_root: str | Path) -> None:
    """Write records as a RetinaFace label.txt (atomically), paths relative to image_root.

    Every face gets the full layout; flags follow `visible` (0 trusted, 1 guess), absent points are
    -1 -1 -1; the last number is the record's score (1 when it has none), 0 for an ignore region
    that has no score.
    """
    image_root = Path(image_root)
    lines = []
    for record in records:
        lines.append(f"# {Path(record.path).relative_to(image_root).as_posix()}")
        count = len(record.boxes)
        landmarks = (record.landmarks if record.landmarks is not None
                     else np.full((count, config.NUM_LANDMARKS, 2), np.nan))
        present = np.isfinite(landmarks).all(axis=2)
        visible = present if record.visible is None else record.visible
        scores = record.scores if record.scores is not None else np.where(record.ignore, 0.0, 1.0)
        for box, points, here, seen, score in zip(record.boxes, landmarks, present, visible, scores):
            fields = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            for (x, y), ok, trusted in zip(points, here, seen):
                fields += [x, y, 0.0 if trusted else _GUESS] if ok else [_ABSENT] * 3
            lines.append(" ".join(f"{value:.2f}" for value in fields) + f" {score:.4f}")
    atomic_write_text(label_file, "\n".join(lines) + "\n")


def _record(path: Path, rows: list[list[float]], min_quality: float | None) -> AnnotatedImage:
    faces = np.asarray(rows, dtype=np.float64).reshape(-1, _FULL_FIELDS)
    xy, wh = faces[:, 0:2], faces[:, 2:4]
    points = faces[:, _BOX_FIELDS : _BOX_FIELDS + 3 * config.NUM_LANDMARKS].reshape(-1, config.NUM_LANDMARKS, 3)
    landmarks = points[..., :2].copy()
    absent = (landmarks == _ABSENT).all(axis=2)
    landmarks[absent] = np.nan
    quality = faces[:, -1]
    ignore = (wh <= 0).any(axis=1)
    if min_quality is not None:
        ignore |= ~(quality >= min_quality)
    return AnnotatedImage(
        path=path,
        boxes=np.concatenate([xy, xy + wh], axis=1),
        landmarks=landmarks,
        ignore=ignore,
        visible=~absent & (points[..., 2] != _GUESS),
        scores=quality,
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

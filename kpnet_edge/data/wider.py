"""WIDER FACE ground-truth lists (`wider_face_*_bbx_gt.txt`) -> AnnotatedImage records.

The layout is the official one, so the same loader reads the full WIDER FACE val and our
WIDER-val-200-dev subset; every malformed line is reported as `file:LINE: problem`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kpnet_edge.data.fields import parse_number
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import IMAGE_SUFFIXES

_FACE_FIELDS = (
    "x", "y", "w", "h", "blur", "expression", "illumination", "invalid", "occlusion", "pose"
)
_INVALID = _FACE_FIELDS.index("invalid")


def load_wider(gt_file: str | Path, image_root: str | Path) -> list[AnnotatedImage]:
    """One AnnotatedImage per image listed in a WIDER FACE ground-truth file.

    Layout, per image: a path line relative to image_root, a face-count line, then one line per
    face `x y w h blur expression illumination invalid occlusion pose`. An image with 0 faces is
    followed by one line of ten zeros in the official files; it is skipped when present.
    Boxes become [x1, y1, x2, y2] = [x, y, x + w, y + h]; faces flagged invalid and zero-size
    boxes get ignore=True. Raises KpnetError("gt_file:LINE: problem") on the first malformed line
    or a listed image that does not exist.
    """
    gt_file = Path(gt_file)
    image_root = Path(image_root)
    try:
        lines = gt_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise KpnetError(f"{gt_file}: cannot read WIDER FACE ground truth ({error})") from None
    records: list[AnnotatedImage] = []
    index = _skip_blank(lines, 0)
    while index < len(lines):
        path_number = index + 1
        relative = _parse_path(gt_file, path_number, lines[index])
        path = image_root / relative
        if not path.is_file():
            raise KpnetError(f"{gt_file}:{path_number}: image {path} not found")
        index += 1
        if index >= len(lines):
            raise KpnetError(f"{gt_file}:{path_number}: file ends before the face count of {relative}")
        count = _parse_count(gt_file, index + 1, lines[index])
        count_number = index + 1
        index += 1
        rows = []
        for _ in range(count):
            if index >= len(lines) or not lines[index].strip():
                raise KpnetError(
                    f"{gt_file}:{count_number}: face count says {count} but only {len(rows)} face "
                    f"lines follow"
                )
            rows.append(_parse_face(gt_file, index + 1, lines[index], count_number, count, len(rows)))
            index += 1
        if count == 0 and index < len(lines) and _is_zero_placeholder(lines[index]):
            index += 1
        faces = np.asarray(rows, dtype=np.float64).reshape(-1, len(_FACE_FIELDS))
        records.append(_record(path, faces))
        index = _skip_blank(lines, index)
    if not records:
        raise KpnetError(f"{gt_file}: no images listed")
    return records


def _record(path: Path, rows: np.ndarray) -> AnnotatedImage:
    xy, wh = rows[:, 0:2], rows[:, 2:4]
    boxes = np.concatenate([xy, xy + wh], axis=1)
    ignore = (rows[:, _INVALID] != 0) | (wh <= 0).any(axis=1)
    return AnnotatedImage(path=path, boxes=boxes, ignore=ignore)


def _skip_blank(lines: list[str], index: int) -> int:
    while index < len(lines) and not lines[index].strip():
        index += 1
    return index


def _parse_path(gt_file: Path, number: int, line: str) -> str:
    text = line.strip()
    if len(text.split()) == len(_FACE_FIELDS):
        raise KpnetError(
            f"{gt_file}:{number}: expected an image path, got a face line (more face lines than "
            f"the face count above says?)"
        )
    if Path(text).suffix.lower() not in IMAGE_SUFFIXES:
        raise KpnetError(f"{gt_file}:{number}: expected an image path, got {_quote(text)}")
    return text


def _parse_count(gt_file: Path, number: int, line: str) -> int:
    text = line.strip()
    try:
        count = int(text)
    except ValueError:
        raise KpnetError(f"{gt_file}:{number}: expected a face count, got {_quote(text)}") from None
    if count < 0:
        raise KpnetError(f"{gt_file}:{number}: face count {count} is negative")
    return count


def _parse_face(
    gt_file: Path, number: int, line: str, count_number: int, count: int, seen: int
) -> list[float]:
    fields = line.split()
    if len(fields) == 1 and Path(fields[0]).suffix.lower() in IMAGE_SUFFIXES:
        # The next image's path came early: the count line over-states the number of faces.
        raise KpnetError(
            f"{gt_file}:{count_number}: face count says {count} but only {seen} face lines follow"
        )
    if len(fields) != len(_FACE_FIELDS):
        raise KpnetError(
            f"{gt_file}:{number}: expected {len(_FACE_FIELDS)} numbers ({' '.join(_FACE_FIELDS)}), "
            f"got {len(fields)} fields"
        )
    values = [parse_number(text, f"{gt_file}:{number}") for text in fields]
    if values[2] < 0 or values[3] < 0:
        raise KpnetError(f"{gt_file}:{number}: negative box size w={fields[2]} h={fields[3]}")
    return values


def _is_zero_placeholder(line: str) -> bool:
    fields = line.split()
    try:
        return len(fields) == len(_FACE_FIELDS) and all(float(text) == 0 for text in fields)
    except ValueError:
        return False


def _quote(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")

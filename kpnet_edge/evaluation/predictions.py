"""Detect-JSON predictions: reading, checking, and pairing records with ground-truth images by path.

Records are `{"image", "width", "height", "faces": [{"box", "score", "landmarks"}]}`, the
`detect` command's output; every evaluator reads them through this module.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from kpnet_edge import config
from kpnet_edge.errors import KpnetError


def read_predictions(path: str | Path) -> list[dict]:
    """The JSON list of detect records in a file. Raises KpnetError naming the file."""
    path = Path(path)
    try:
        records = json.loads(path.read_text())
    except FileNotFoundError:
        raise KpnetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise KpnetError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(records, list):
        kind = type(records).__name__
        raise KpnetError(f"{path}: expected a JSON list of detect records, got {kind}")
    return records


def face_arrays(faces: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (M, 4) [x1, y1, x2, y2], scores (M,) and landmarks (M, K, 2) float64 of face dicts.

    Faces without a "landmarks" entry (or with null) get NaN landmarks. Raises ValueError naming
    the face and the field when one is malformed.
    """
    count = len(faces)
    boxes = np.empty((count, 4))
    scores = np.empty(count)
    landmarks = np.full((count, config.NUM_LANDMARKS, 2), np.nan)
    for index, face in enumerate(faces):
        if not isinstance(face, dict):
            raise ValueError(f"face {index}: expected an object, got {type(face).__name__}")
        boxes[index] = _numbers(face, "box", (4,), index)
        scores[index] = _numbers(face, "score", (), index)
        if face.get("landmarks") is not None:
            landmarks[index] = _numbers(face, "landmarks", (config.NUM_LANDMARKS, 2), index)
    return boxes, scores, landmarks


def align_predictions(
    predictions: Sequence[dict], image_paths: Sequence[str | Path]
) -> list[list[dict] | None]:
    """The face list of each ground-truth image, taken from the record whose path matches it.

    Paths match by their longest common suffix of path parts (file name at least), so absolute
    and relative spellings of `0--Parade/0_Parade_Parade_0_102.jpg` pair up; an image with no
    record gets None (evaluators read it as no detections). Raises KpnetError when a record is
    malformed or a match is ambiguous (two records fit one image equally well, or one record fits
    several images).
    """
    by_name: dict[str, list[int]] = defaultdict(list)
    record_parts = []
    for index, record in enumerate(predictions):
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise KpnetError(f"prediction record {index}: expected an object with an \"image\" path")
        if not isinstance(record.get("faces"), list):
            raise KpnetError(
                f"prediction record {index} ({record['image']}): \"faces\" must be a list"
            )
        parts = _parts(record["image"])
        record_parts.append(parts)
        by_name[parts[-1]].append(index)
    chosen: dict[int, int] = {}
    faces_per_image: list[list[dict] | None] = []
    for image_index, image_path in enumerate(image_paths):
        parts = _parts(image_path)
        candidates = by_name.get(parts[-1], [])
        if not candidates:
            faces_per_image.append(None)
            continue
        lengths = [_common_suffix(parts, record_parts[c]) for c in candidates]
        best = max(lengths)
        winners = [c for c, length in zip(candidates, lengths) if length == best]
        if len(winners) > 1:
            shown = ", ".join(predictions[w]["image"] for w in winners[:3])
            raise KpnetError(f"{image_path}: several prediction records match it ({shown})")
        winner = winners[0]
        if winner in chosen:
            raise KpnetError(
                f"prediction record {winner} ({predictions[winner]['image']}) matches several "
                f"images ({image_paths[chosen[winner]]}, {image_path}): give longer paths"
            )
        chosen[winner] = image_index
        faces_per_image.append(predictions[winner]["faces"])
    return faces_per_image


def image_face_arrays(
    predictions: Sequence[dict], image_paths: Sequence[str | Path]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """face_arrays of each ground-truth image's matched record (empty arrays when it has none).

    Raises KpnetError naming the image of a malformed record.
    """
    arrays = []
    for image_path, faces in zip(image_paths, align_predictions(predictions, image_paths)):
        try:
            arrays.append(face_arrays(faces or []))
        except ValueError as error:
            raise KpnetError(f"predictions for {image_path}: {error}") from None
    return arrays


def _numbers(face: dict, key: str, shape: tuple[int, ...], index: int) -> np.ndarray:
    try:
        values = np.asarray(face[key], dtype=np.float64)
    except KeyError:
        raise ValueError(f"face {index}: no {key!r}") from None
    except (TypeError, ValueError):
        raise ValueError(f"face {index}: {key!r} is not numeric") from None
    if values.shape != shape:
        raise ValueError(f"face {index}: {key!r} must have shape {shape}, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"face {index}: {key!r} has non-finite values")
    return values


def _parts(path: str | Path) -> tuple[str, ...]:
    parts = tuple(p for p in PurePosixPath(str(path).replace("\\", "/")).parts if p not in ("/", "."))
    return parts or ("",)


def _common_suffix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    length = 0
    for left, right in zip(reversed(a), reversed(b)):
        if left != right:
            break
        length += 1
    return length

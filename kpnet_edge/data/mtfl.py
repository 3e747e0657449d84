"""MTFL landmark lists (`<path> x1..x5 y1..y5`, all x's then all y's) -> AnnotatedImage records."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kpnet_edge import config
from kpnet_edge.data.fields import parse_number
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks

_FIELDS = 1 + 2 * config.NUM_LANDMARKS


def read_mtfl_landmarks(
    list_file: str | Path, image_root: str | Path | None = None
) -> tuple[list[Path], np.ndarray]:
    """Image paths and landmarks (N, 5, 2) float64 [x, y] from an MTFL list file.

    Paths are resolved against image_root (default: the list file's folder); image files are not
    checked. Raises KpnetError("file:LINE: problem") on the first malformed line.
    """
    list_file = Path(list_file)
    root = Path(image_root) if image_root is not None else list_file.parent
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise KpnetError(f"{list_file}: cannot read MTFL list ({error})") from None
    paths: list[Path] = []
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != _FIELDS:
            raise KpnetError(
                f"{list_file}:{number}: expected a path and {_FIELDS - 1} numbers "
                f"(x1..x5 y1..y5), got {len(fields)} fields"
            )
        rows.append([parse_number(text, f"{list_file}:{number}", "coordinate") for text in fields[1:]])
        # The original MTFL lists use Windows separators.
        paths.append(root / fields[0].replace("\\", "/"))
    if not rows:
        raise KpnetError(f"{list_file}: no MTFL records")
    coords = np.asarray(rows, dtype=np.float64).reshape(-1, 2, config.NUM_LANDMARKS)
    return paths, coords.transpose(0, 2, 1).copy()


def load_mtfl(
    list_file: str | Path,
    image_root: str | Path | None = None,
    template: FaceTemplate | None = None,
) -> list[AnnotatedImage]:
    """One AnnotatedImage per MTFL line: landmarks (1, 5, 2) and the template box they imply.

    Boxes come from geometry.boxes_from_landmarks (default template), the same rule the
    post-processor uses, so training targets and detections share one box convention.
    Raises KpnetError on a malformed line or when image files are missing (naming a few).
    """
    paths, landmarks = read_mtfl_landmarks(list_file, image_root)
    missing = [path for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(str(path) for path in missing[:3])
        raise KpnetError(
            f"{list_file}: {len(missing)} of {len(paths)} listed images are missing ({shown}"
            f"{', ...' if len(missing) > 3 else ''})"
        )
    boxes = boxes_from_landmarks(landmarks, template or FaceTemplate.load())
    return [
        AnnotatedImage(path=path, boxes=box[None], landmarks=points[None])
        for path, box, points in zip(paths, boxes, landmarks)
    ]

"""Caltech 10k Web Faces ground truth (`name xLE yLE xRE yRE xNose yNose xMouth yMouth`) ->
AnnotatedImage records.

The set labels four points per near-frontal face: both eyes, the nose tip and the mouth *centre*
(no corners, no boxes). Records keep the mouth centre apart (`mouth_centres`) and leave the mouth
corners absent (NaN, not visible), so nothing pretends to be a corner. Boxes are the landmark
template's box fitted to the four points, the convention every other box in the project follows.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from kpnet_edge import config
from kpnet_edge.data.fields import parse_number
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.geometry import FaceTemplate, fit_similarity, template_box_hulls
from kpnet_edge.imageio import IMAGE_SUFFIXES, list_images

_FIELDS = 9
"""name, then x y for left eye, right eye, nose and mouth centre."""


def load_caltech(ground_truth: str | Path, image_root: str | Path, include_unlabelled: bool = False,
                 template: FaceTemplate | None = None) -> list[AnnotatedImage]:
    """One record per labelled image of a Caltech Web Faces ground-truth file.

    Landmarks (N, 5, 2) hold the eyes and nose; mouth corners are NaN and `visible` is False for
    them; `mouth_centres` (N, 2) holds the labelled mouth centre. Boxes come from fitting
    `template` (the shipped WIDER template by default) to the four points, the template's mouth
    centre being the mean of its two corners. With include_unlabelled, images under image_root that
    have no line get a record with no faces (their faces are unlabelled, not absent: a teacher
    can label them). Raises KpnetError("file:LINE: problem") on a malformed line or missing image.
    """
    ground_truth, image_root = Path(ground_truth), Path(image_root)
    try:
        lines = ground_truth.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise KpnetError(f"{ground_truth}: cannot read Caltech ground truth ({error})") from None
    points_by_image: dict[str, list[np.ndarray]] = defaultdict(list)
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{ground_truth}:{number}"
        if len(fields) != _FIELDS:
            raise KpnetError(
                f"{where}: expected {_FIELDS} fields (name and x y of left eye, right eye, nose, "
                f"mouth centre), got {len(fields)}"
            )
        name = fields[0]
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise KpnetError(f"{where}: {name!r} is not an image name")
        if name not in points_by_image and not (image_root / name).is_file():
            raise KpnetError(f"{where}: image {image_root / name} not found")
        values = [parse_number(text, where, "coordinate") for text in fields[1:]]
        points = np.asarray(values, dtype=np.float64).reshape(4, 2)
        if np.linalg.norm(points[1] - points[0]) <= 0:
            raise KpnetError(f"{where}: both eyes at the same point {points[0].tolist()}")
        points_by_image[name].append(points)
    if not points_by_image:
        raise KpnetError(f"{ground_truth}: no faces listed")
    template = template or FaceTemplate.load()
    records = [_record(image_root / name, np.stack(faces), template) for name, faces in points_by_image.items()]
    if include_unlabelled:
        labelled = {record.path.name for record in records}
        records += [
            _record(path, np.zeros((0, 4, 2)), template)
            for path in list_images(image_root) if path.name not in labelled
        ]
    return records


def four_point_template(template: FaceTemplate) -> np.ndarray:
    """The template's eyes, nose and mouth centre (4, 2)."""
    mouth = template.landmarks[3:5].mean(axis=0, keepdims=True)
    return np.concatenate([template.landmarks[:3], mouth])


def boxes_from_four_points(points: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """Template boxes (N, 4) for faces given by eyes, nose and mouth centre (N, 4, 2).

    Not geometry.boxes_from_landmarks: the similarity is fitted to these four points (the
    template's mouth centre being the mean of its corners), not to five; only the mapping of the
    template box through it is shared.
    """
    if len(points) == 0:
        return np.zeros((0, 4))
    return template_box_hulls(fit_similarity(four_point_template(template), points), template.box)


def _record(path: Path, faces: np.ndarray, template: FaceTemplate) -> AnnotatedImage:
    count = len(faces)
    landmarks = np.full((count, config.NUM_LANDMARKS, 2), np.nan)
    landmarks[:, :3] = faces[:, :3]
    visible = np.zeros((count, config.NUM_LANDMARKS), dtype=bool)
    visible[:, :3] = True
    return AnnotatedImage(
        path=path,
        boxes=boxes_from_four_points(faces, template),
        landmarks=landmarks,
        visible=visible,
        mouth_centres=faces[:, 3],
        labels=["face"] * count,
    )

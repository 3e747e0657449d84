"""PASCAL VOC XML folders of face boxes -> AnnotatedImage records.

VOC is the generic box format of labelling tools (LabelImg, CVAT, Roboflow exports): one XML per
image, one `<object>` with a `<name>` and a `<bndbox>` per box. Any VOC folder works; which class
names are faces is configurable, and boxes of other classes are refused by name, not dropped.
Errors name the XML file and the element (`file.xml: <object> 3: xmax ...`).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from kpnet_edge.data.fields import parse_number
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError

_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


def load_voc(annotation_dir: str | Path, image_root: str | Path,
             face_classes: Collection[str] | None = None,
             skip_classes: Collection[str] = ()) -> list[AnnotatedImage]:
    """One record per XML file (sorted by name) in annotation_dir.

    face_classes: the `<name>`s that are faces (None: every class not in skip_classes); an object
    of any other class raises, so a typo in the list cannot silently drop faces. skip_classes:
    classes deliberately not faces (say "car"). `<difficult>1</difficult>` faces get ignore=True.
    The image is `<filename>` under image_root. VOC's 1-based inclusive pixel boxes are kept as
    written: [xmin, ymin, xmax, ymax] in image pixels. Class names go to `labels`.
    """
    annotation_dir, image_root = Path(annotation_dir), Path(image_root)
    files = sorted(annotation_dir.glob("*.xml"))
    if not files:
        raise KpnetError(f"{annotation_dir}: no VOC .xml files found")
    faces = None if face_classes is None else set(face_classes)
    return [_load_file(path, image_root, faces, set(skip_classes)) for path in files]


def _load_file(path: Path, image_root: Path, face_classes: set[str] | None,
               skip_classes: set[str]) -> AnnotatedImage:
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise KpnetError(f"{path}: not readable VOC XML ({error})") from None
    if root.tag != "annotation":
        raise KpnetError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise KpnetError(f"{path}: <filename> is missing")
    image = image_root / filename
    if not image.is_file():
        raise KpnetError(f"{path}: <filename> {filename}: image {image} not found")
    boxes, ignore, labels = [], [], []
    for number, element in enumerate(root.iter("object"), start=1):
        where = f"{path}: <object> {number}"
        name = (element.findtext("name") or "").strip()
        if not name:
            raise KpnetError(f"{where}: <name> is missing")
        if name in skip_classes:
            continue
        if face_classes is not None and name not in face_classes:
            raise KpnetError(
                f"{where}: class {name!r} is neither a face class {sorted(face_classes)} nor skipped"
            )
        box = element.find("bndbox")
        if box is None:
            raise KpnetError(f"{where}: <bndbox> is missing")
        values = []
        for key in _BOX_KEYS:
            text = box.findtext(key)
            if text is None:
                raise KpnetError(f"{where}: <bndbox> has no <{key}>")
            values.append(parse_number(text.strip(), f"{where}: <{key}>", "coordinate"))
        if values[2] <= values[0] or values[3] <= values[1]:
            raise KpnetError(f"{where}: empty box {values} (xmax <= xmin or ymax <= ymin)")
        boxes.append(values)
        ignore.append((element.findtext("difficult") or "0").strip() == "1")
        labels.append(name)
    return AnnotatedImage(
        path=image, boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        ignore=np.asarray(ignore, dtype=bool), labels=labels,
    )

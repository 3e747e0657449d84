"""The development sets every detector is tuned and compared on, scored by one code path.

- `wider`: WIDER-val-200-dev@416 (boxes): AP50 at faces >= 16 and >= 24 px, recall at 1 FP/image.
- `face_mask`: the face-mask validation split (VOC boxes, held out of training): AP50 >= 24 px.
- `caltech`: the Caltech Web Faces validation split (4 hand-labelled points per face): recall at
  the detector's operating score and NME of eyes, nose and mouth centre (mean of the predicted
  mouth corners), normalised by the inter-ocular distance, over the faces found.
A detector is any `detect(BGR image) -> list of detect-JSON faces` callable, so KPNet on every
backend and the peers are measured alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kpnet_edge.data.caltech import load_caltech
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.data.voc import load_voc
from kpnet_edge.data.wider import load_wider
from kpnet_edge.evaluation.detection import evaluate_detections
from kpnet_edge.evaluation.predictions import face_arrays
from kpnet_edge.imageio import read_image
from kpnet_edge.data.splits import read_split, relative_name

Detector = Callable[[np.ndarray], list[dict]]
SPLITS_DIR = Path(__file__).resolve().parents[2] / "configs" / "splits"
DEV_SET_NAMES = ("wider", "face_mask", "caltech")


@dataclass
class DevSet:
    """A named list of ground-truth records and how they are scored ("boxes" or "points")."""

    name: str
    records: list[AnnotatedImage]
    kind: str
    description: str


def load_dev_set(name: str, data: Path, limit: int | None = None, splits_dir: Path = SPLITS_DIR) -> DevSet:
    """One dev set by name (see the module docstring); `limit` keeps the first N images."""
    if name == "wider":
        root = data / "widerface_val200_dev"
        records = load_wider(root / "wider_face_val_bbx_gt.txt", root / "images")
        return DevSet(name, records[:limit], "boxes", "WIDER-val-200-dev@416")
    if name == "face_mask":
        root = data / "face_mask"
        records = _held_out(load_voc, root / "annotations", root / "images", splits_dir / "face_mask_val.txt")
        return DevSet(name, records[:limit], "boxes", "face-mask validation split")
    if name == "caltech":
        root = data / "caltech_webfaces"
        records = _held_out(load_caltech, root / "ground_truth.txt", root / "images", splits_dir / "caltech_val.txt")
        return DevSet(name, records[:limit], "points", "Caltech Web Faces validation split")
    raise ValueError(f"unknown dev set {name!r}; known: {DEV_SET_NAMES}")


def _held_out(load: Callable[[Path, Path], list[AnnotatedImage]], labels: Path, images: Path,
              split_list: Path) -> list[AnnotatedImage]:
    """The records load(labels, images) gives for the images named in split_list (relative to
    images): a training source's held-out validation split, in the loader's order."""
    held_out = read_split(split_list)
    return [record for record in load(labels, images) if relative_name(record.path, images) in held_out]


def run_detector(detect: Detector, paths: Sequence[Path]) -> tuple[list[dict], list[float]]:
    """Detect-JSON records for each image and the milliseconds each detect call took.

    One untimed warm-up call first, so lazy initialisation is not counted. Takes image paths, not
    dev-set records, so benchmarks/peers.py times its MTFL crops through this same loop.
    """
    predictions, times = [], []
    for index, path in enumerate(paths):
        image = read_image(path)
        if index == 0:
            detect(image)
        start = time.perf_counter()
        faces = detect(image)
        times.append(1000 * (time.perf_counter() - start))
        height, width = image.shape[:2]
        predictions.append({"image": str(path), "width": width, "height": height, "faces": faces})
    return predictions, times


def score_dev_set(dev: DevSet, predictions: Sequence[dict], operating_score: float) -> dict:
    """The dev set's figures for these predictions (one record per dev image, in order)."""
    if dev.kind == "boxes":
        result = evaluate_detections(predictions, dev.records, (16, 24))
        sizes = result["by_min_size"]
        return {"ap50_16": sizes["16"]["ap"], "ap50_24": sizes["24"]["ap"],
                "recall_1fppi_24": sizes["24"]["recall_at_fppi"]["1"],
                "faces_24": sizes["24"]["num_faces"]}
    return caltech_points(predictions, dev.records, operating_score)


def caltech_points(predictions: Sequence[dict], records: Sequence[AnnotatedImage], min_score: float) -> dict:
    """Recall and 4-point NME (inter-ocular) on Caltech-style records (eyes, nose, mouth centre).

    A face is found when a detection with score >= min_score has a box containing the centroid of
    its four points; among such detections the closest (mean point distance) is taken, each
    detection serving one face.
    """
    found, errors = 0, []
    total = 0
    for prediction, record in zip(predictions, records):
        boxes, scores, landmarks = face_arrays(prediction["faces"])
        keep = scores >= min_score
        boxes, landmarks = boxes[keep], landmarks[keep]
        predicted = np.concatenate([landmarks[:, :3], landmarks[:, 3:5].mean(axis=1, keepdims=True)], axis=1)
        truths = np.concatenate([record.landmarks[:, :3], record.mouth_centres[:, None]], axis=1)
        used: set[int] = set()
        for truth in truths:
            total += 1
            centre = truth.mean(axis=0)
            inside = (boxes[:, :2] <= centre).all(axis=1) & (boxes[:, 2:] >= centre).all(axis=1)
            candidates = [i for i in np.flatnonzero(inside) if i not in used]
            if not candidates:
                continue
            distances = np.linalg.norm(predicted[candidates] - truth, axis=2).mean(axis=1)
            best = candidates[int(np.nanargmin(np.where(np.isfinite(distances), distances, np.inf)))]
            used.add(best)
            found += 1
            inter_ocular = np.linalg.norm(truth[1] - truth[0])
            error = np.linalg.norm(predicted[best] - truth, axis=1).mean() / inter_ocular
            if np.isfinite(error):
                errors.append(float(error))
    return {"faces": total, "recall": found / total if total else None,
            "nme_4pt": float(np.mean(errors)) if errors else None}


def evaluate_on_dev_sets(detect: Detector, dev_sets: Sequence[DevSet], operating_score: float) -> dict:
    """{dev set name: figures + "median_ms"} for one detector."""
    results = {}
    for dev in dev_sets:
        predictions, times = run_detector(detect, [record.path for record in dev.records])
        results[dev.name] = {**score_dev_set(dev, predictions, operating_score),
                             "median_ms": float(np.median(times)) if times else None}
    return results

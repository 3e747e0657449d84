"""Held-out synthetic validation: AP and landmark NME of a runtime on scenes no training step saw.

Used to choose post-processing settings without touching the evaluation images (WIDER dev,
MTFL test), and to follow training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.detector import detection_record, faces_from_detections
from kpnet_edge.evaluation.detection import evaluate_detections
from kpnet_edge.evaluation.landmarks import landmark_nme
from kpnet_edge.postprocess import PostprocessParams, pairwise_iou, postprocess
from kpnet_edge.runtimes.base import Runtime
from kpnet_edge.training.synth import SceneGenerator

VALIDATION_OFFSET = 10**9
"""Scene indices from here on are never drawn by training (it counts up from 0)."""


def synthetic_validation(
    runtime: Runtime,
    generator: SceneGenerator,
    count: int = 200,
    params: PostprocessParams | None = None,
    min_sizes: tuple[float, ...] = (8, 16),
) -> dict:
    """Detect on `count` held-out scenes; AP by min face size (scene pixels) and the inter-ocular
    NME of detections matched (IoU >= 0.5) to fully visible faces."""
    params = params or PostprocessParams()
    records, truths, errors = [], [], []
    for i in range(count):
        scene = generator.generate(VALIDATION_OFFSET + i)
        scale_logits, landmark_logits = runtime.run(scene.image[None])
        found = postprocess(scale_logits[0], landmark_logits[0], params)
        path = Path("synthetic") / f"{i:06d}.png"
        records.append(detection_record(str(path), scene.image, faces_from_detections(found)))
        truths.append(AnnotatedImage(path, scene.boxes, scene.landmarks))
        if len(found) and len(scene.boxes):
            iou = pairwise_iou(scene.boxes, found.boxes)
            best = iou.argmax(axis=1)
            matched = (iou.max(axis=1) >= 0.5) & scene.visible.all(axis=1)
            if matched.any():
                nme = landmark_nme(found.landmarks[best[matched]], scene.landmarks[matched])
                errors.extend(np.atleast_1d(nme["per_face"]))
    detection = evaluate_detections(records, truths, min_sizes)
    return {
        "scenes": count,
        "ap": {k: v["ap"] for k, v in detection["by_min_size"].items()},
        "recall_at_1fppi": {k: v["recall_at_fppi"]["1"] for k, v in detection["by_min_size"].items()},
        "nme_inter_ocular": float(np.mean(errors)) if errors else None,
        "matched_faces": len(errors),
    }

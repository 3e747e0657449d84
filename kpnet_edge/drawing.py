"""Annotated images for `detect --draw`: boxes, scores and the five landmarks."""

from __future__ import annotations

import cv2
import numpy as np

from kpnet_edge.detector import Face

_LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255))  # BGR


def draw_faces(image_bgr: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of the image with each face's box, score and landmarks drawn on it."""
    canvas = image_bgr.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        cv2.putText(canvas, f"{face.score:.2f}", (x1, max(0, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, (0, 255, 0), thickness)
        for (x, y), colour in zip(face.landmarks, _LANDMARK_COLOURS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
    return canvas

"""Small annotated JPEGs of the images where a candidate differs from the reference: the region
around the changed faces, enlarged up to MAX_ZOOM so small faces stay visible."""

from __future__ import annotations

import cv2
import numpy as np

from kpnet_edge.imageio import read_image

Thumbnails = dict[str, list[tuple[dict, bytes]]]
"""model key -> [(regression item, JPEG bytes)], as the HTML shows them."""

MAX_SIDE = 240
MAX_ZOOM = 3.0
MIN_REGION = 64
"""Smallest side of the cropped region, in image pixels, so a lone tiny face keeps some context."""
QUALITY = 80

# BGR colours; the HTML legend names them.
LOST = (0, 0, 255)  # red: a reference face the candidate lost
GAINED = (255, 128, 0)  # blue: a face only the candidate finds
REFERENCE_POINTS = (0, 200, 0)  # green: reference landmarks of a face whose landmarks moved
CANDIDATE_POINTS = (255, 0, 255)  # magenta: the candidate's landmarks of that face
MOVED = (0, 215, 255)  # amber: the box of a face whose landmarks moved

LEGEND = (
    ("red box", "face lost (the reference finds it, the candidate does not)"),
    ("blue box", "face gained (only the candidate finds it)"),
    ("amber box", "landmarks moved: green dots the reference's, magenta the candidate's"),
)


def regression_thumbnail(item: dict) -> bytes:
    """JPEG bytes of the region of item["image"] holding its lost, gained and moved faces (with a
    margin of half its size), at most MAX_SIDE pixels, with those faces drawn on it."""
    image = read_image(item["image"])
    faces = [face["box"] for key in ("lost", "gained", "moved") for face in item[key]]
    boxes = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    origin, region = _region(boxes, image.shape[:2])
    x0, y0 = origin
    crop = image[y0 : y0 + region[1], x0 : x0 + region[0]]
    factor = min(MAX_ZOOM, MAX_SIDE / max(crop.shape[:2]))
    size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
    canvas = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)

    def point(xy: list[float]) -> tuple[int, int]:
        return int(round((xy[0] - x0) * factor)), int(round((xy[1] - y0) * factor))

    for key, colour in (("lost", LOST), ("gained", GAINED), ("moved", MOVED)):
        for face in item[key]:
            cv2.rectangle(canvas, point(face["box"][:2]), point(face["box"][2:]), colour, 1, cv2.LINE_AA)
    for face in item["moved"]:
        for before, after in zip(face["reference_landmarks"], face["candidate_landmarks"]):
            cv2.line(canvas, point(before), point(after), MOVED, 1, cv2.LINE_AA)
            cv2.circle(canvas, point(before), 2, REFERENCE_POINTS, -1, cv2.LINE_AA)
            cv2.circle(canvas, point(after), 2, CANDIDATE_POINTS, -1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise RuntimeError(f"{item['image']}: OpenCV could not encode a JPEG thumbnail")
    return encoded.tobytes()


def _region(boxes: np.ndarray, shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((x0, y0), (width, height)) of the boxes' union grown by half its size, at least MIN_REGION
    on a side, clipped to the image (height, width)."""
    height, width = shape
    if len(boxes) == 0:
        return (0, 0), (width, height)
    low, high = boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)
    centre, side = (low + high) / 2, np.maximum(1.5 * (high - low), MIN_REGION)
    x0, y0 = np.clip(np.floor(centre - side / 2), 0, (width - 1, height - 1)).astype(int)
    x1, y1 = np.minimum(np.ceil(centre + side / 2), (width, height)).astype(int)
    return (int(x0), int(y0)), (max(1, int(x1 - x0)), max(1, int(y1 - y0)))

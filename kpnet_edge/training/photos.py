"""Training samples cut from real labelled photographs, with the scale augmentation small faces need.

Each sample is one of three views of a photo, all in network pixels where Eq. 1's I_max is
config.INPUT_SIZE (so bins mean face sizes in network pixels, as at inference):
- a *zoom*: the photo scaled so a chosen face gets a size drawn log-uniformly (mostly 8-48 px,
  where WIDER's faces are), then cut to the crop around it or anywhere;
- a *mosaic*: four zooms of different photos at half the side, tiled (many small faces per crop);
- a *letterbox* (whole-scene batches): the whole photo shrunk into the canvas with padding, as
  detect() will see it, at a random fraction of the fitting size.
Half of the views also *stretch* one axis against the other (aspect kept on average): photos reach
a detector resized without their aspect (WIDER-val-200-dev is stretched to 416 x 416, which makes
its faces about 1.5x taller than wide), and a face must be found whatever its width-to-height ratio.
Faces whose centre leaves the crop, faces smaller than bin 0 or larger than bin S-1, and the
records' ignore regions become ignore regions; landmarks that are guesses or leave the crop are
masked. Sample `index` of a dataset is a pure function of (seed, index, crop size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from kpnet_edge import config
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.imageio import read_image

MAX_PHOTO_EDGE = 640
"""Photos are kept decoded in memory at most this large (the teacher labelled them at 640)."""
SMALL_FACE_PX = (8.0, 48.0)
LARGE_FACE_PX = (48.0, 200.0)
P_SMALL = 0.65
MAX_UPSCALE = 2.5
P_MOSAIC = 0.3
P_ANCHORED = 0.8  # otherwise the crop lands anywhere on the zoomed photo (background crops)
MAX_ROTATION_DEG = 12.0
P_ROTATE = 0.3
LETTERBOX_RANGE = (0.35, 1.0)
P_STRETCH = 0.5
MAX_STRETCH = 1.7
"""A stretched view's height-to-width factor is log-uniform in [1 / MAX_STRETCH, MAX_STRETCH]."""


@dataclass
class Cut:
    """A view of a photo: RGB image (h, w, 3) uint8; faces' boxes (N, 4), landmarks (N, K, 2) and
    visible (N, K) in its pixels; ignore boxes (M, 4)."""

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray
    ignore_boxes: np.ndarray


@dataclass
class Photo:
    """A decoded photo (RGB, longer edge <= MAX_PHOTO_EDGE) and its labels in its pixels."""

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray
    ignore_boxes: np.ndarray


def load_photos(records: Sequence[AnnotatedImage], threads: int = 2) -> list[Photo]:
    """Decode every record's image once (OpenCV releases the GIL, so threads help)."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(_photo, records))


def _photo(record: AnnotatedImage) -> Photo:
    image = cv2.cvtColor(read_image(record.path), cv2.COLOR_BGR2RGB)
    scale = min(1.0, MAX_PHOTO_EDGE / max(image.shape[:2]))
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    count = len(record.boxes)
    landmarks = (record.landmarks if record.landmarks is not None
                 else np.full((count, config.NUM_LANDMARKS, 2), np.nan))
    visible = record.trusted_landmarks() if record.landmarks is not None else np.zeros((count, config.NUM_LANDMARKS), bool)
    faces = ~record.ignore
    return Photo(
        image=image,
        boxes=record.boxes[faces] * scale,
        landmarks=np.nan_to_num(landmarks[faces] * scale, nan=-1.0),
        visible=visible[faces],
        ignore_boxes=record.boxes[~faces] * scale,
    )


class PhotoSampler:
    """Cuts of photos for training: zooms, mosaics and letterboxes (see the module docstring)."""

    def __init__(self, photos: Sequence[Photo], seed: int) -> None:
        if not photos:
            raise ValueError("no photos to sample from")
        self.photos = photos
        self.seed = seed

    def cut(self, index: int, size: int, full_scene: bool) -> Cut:
        """Sample `index` at size x size: a letterbox when full_scene, else a zoom or mosaic."""
        rng = np.random.default_rng((self.seed, index, size))
        photo = self.photos[int(rng.integers(len(self.photos)))]
        if full_scene:
            cut = _letterbox(photo, size, rng)
        elif rng.random() < P_MOSAIC:
            tiles = [_zoom(self.photos[int(rng.integers(len(self.photos)))], size // 2, rng, small_only=True)
                     for _ in range(4)]
            cut = _mosaic(tiles, size)
        else:
            cut = _zoom(photo, size, rng, small_only=False)
        if rng.random() < 0.5:
            cut = _flip(cut)
        cut.image = _photometric(cut.image, rng)
        return _settle(cut)


def _zoom(photo: Photo, size: int, rng: np.random.Generator, small_only: bool) -> Cut:
    """Scale the photo so one face gets a drawn size, rotate a little, and cut size x size."""
    height, width = photo.image.shape[:2]
    stretch = _stretch(rng)
    if len(photo.boxes):
        face = int(rng.integers(len(photo.boxes)))
        box = photo.boxes[face]
        face_size = max(float(np.max((box[2:] - box[:2]) * stretch)), 1.0)
        low, high = SMALL_FACE_PX if small_only or rng.random() < P_SMALL else LARGE_FACE_PX
        target = math.exp(rng.uniform(math.log(low), math.log(high)))
        scale = min(target / face_size, MAX_UPSCALE)
        anchor = (box[:2] + box[2:]) / 2
    else:
        scale = rng.uniform(0.3, 1.0) * size / min(height, width) * 2
        anchor = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG) if rng.random() < P_ROTATE else 0.0
    if rng.random() < P_ANCHORED:
        where = rng.uniform(0.15 * size, 0.85 * size, size=2)
    else:
        where = rng.uniform(-0.5 * size, 1.5 * size, size=2)
        anchor = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    linear = cv2.getRotationMatrix2D((0.0, 0.0), angle, scale)[:, :2] @ np.diag(stretch)
    matrix = np.concatenate([linear, (where - linear @ anchor)[:, None]], axis=1)
    return _warp(photo, matrix, scale * stretch, size)


def _letterbox(photo: Photo, size: int, rng: np.random.Generator) -> Cut:
    """The whole photo inside a size x size padded canvas, shrunk by a random factor."""
    height, width = photo.image.shape[:2]
    stretch = _stretch(rng)
    scales = stretch * (size / max(height * stretch[1], width * stretch[0]) * rng.uniform(*LETTERBOX_RANGE))
    spare = size - np.array([width, height]) * scales
    matrix = np.array([[scales[0], 0.0, 0.0], [0.0, scales[1], 0.0]])
    matrix[:, 2] = rng.uniform(0, 1, size=2) * np.maximum(spare, 0)
    return _warp(photo, matrix, scales, size)


def _stretch(rng: np.random.Generator) -> np.ndarray:
    """Factors (x, y) for a view's axes: (1, 1), or P_STRETCH of the time one axis stretched
    against the other (geometric mean 1, so the drawn face size still holds on average)."""
    if rng.random() >= P_STRETCH:
        return np.ones(2)
    ratio = math.exp(rng.uniform(-math.log(MAX_STRETCH), math.log(MAX_STRETCH)))
    return np.array([1 / math.sqrt(ratio), math.sqrt(ratio)])


def _warp(photo: Photo, matrix: np.ndarray, scales: np.ndarray, size: int) -> Cut:
    """The photo through `matrix` into a size x size cut; scales (x, y) are the matrix's scale
    along each axis (rotation aside), which boxes follow."""
    image = photo.image
    if scales.min() < 0.5:
        # Shrink with area averaging first: warpAffine's bilinear sampling aliases past 2x.
        fx, fy = np.minimum(scales * 1.5, 1.0)
        shrunk = cv2.resize(image, None, fx=float(fx), fy=float(fy), interpolation=cv2.INTER_AREA)
        pre = np.diag([shrunk.shape[1] / image.shape[1], shrunk.shape[0] / image.shape[0]])
        warp_matrix = matrix.copy()
        warp_matrix[:, :2] = matrix[:, :2] @ np.linalg.inv(pre)
        image = shrunk
    else:
        warp_matrix = matrix
    pixels = cv2.warpAffine(image, warp_matrix, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(config.PAD_VALUE,) * 3)
    return Cut(
        image=pixels,
        boxes=_move_boxes(photo.boxes, matrix, scales),
        landmarks=_move_points(photo.landmarks, matrix),
        visible=photo.visible.copy(),
        ignore_boxes=_move_boxes(photo.ignore_boxes, matrix, scales),
    )


def _move_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _move_boxes(boxes: np.ndarray, matrix: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Boxes keep their size (times each axis's scale) around their moved centre: a rotation must
    not inflate the face size that picks the scale bin."""
    if len(boxes) == 0:
        return np.zeros((0, 4))
    centres = _move_points((boxes[:, :2] + boxes[:, 2:]) / 2, matrix)
    half = (boxes[:, 2:] - boxes[:, :2]) * scales / 2
    return np.concatenate([centres - half, centres + half], axis=1)


def _mosaic(tiles: Sequence[Cut], size: int) -> Cut:
    half = size // 2
    image = np.full((size, size, 3), config.PAD_VALUE, dtype=np.uint8)
    parts = []
    for tile, (row, column) in zip(tiles, ((0, 0), (0, 1), (1, 0), (1, 1))):
        tile = _settle(tile)  # faces cut by the tile's border become ignore regions first
        offset = np.array([column * half, row * half], dtype=np.float64)
        image[row * half:(row + 1) * half, column * half:(column + 1) * half] = tile.image
        parts.append((tile, offset))
    return Cut(
        image=image,
        boxes=np.concatenate([t.boxes + np.tile(o, 2) for t, o in parts]),
        landmarks=np.concatenate([t.landmarks + o for t, o in parts]),
        visible=np.concatenate([t.visible for t, _ in parts]),
        ignore_boxes=np.concatenate([t.ignore_boxes + np.tile(o, 2) for t, o in parts]),
    )


def _flip(cut: Cut) -> Cut:
    width = cut.image.shape[1]
    boxes = cut.boxes.copy()
    boxes[:, [0, 2]] = width - 1 - cut.boxes[:, [2, 0]]
    ignore = cut.ignore_boxes.copy()
    ignore[:, [0, 2]] = width - 1 - cut.ignore_boxes[:, [2, 0]]
    landmarks = cut.landmarks[:, list(config.FLIP_PERMUTATION)].copy()
    landmarks[..., 0] = width - 1 - landmarks[..., 0]
    return Cut(np.ascontiguousarray(cut.image[:, ::-1]), boxes, landmarks,
               cut.visible[:, list(config.FLIP_PERMUTATION)], ignore)


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness and contrast jitter, sometimes grey or blurred: cheap, in uint8."""
    gain = rng.uniform(0.7, 1.3)
    bias = rng.uniform(-25, 25) + (1 - gain) * 127
    image = cv2.convertScaleAbs(image, alpha=gain, beta=bias)
    if rng.random() < 0.05:
        image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < 0.1:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    return image


def _settle(cut: Cut) -> Cut:
    """Move faces that cannot be learnt here into the ignore regions; mask unusable landmarks."""
    size_h, size_w = cut.image.shape[:2]
    centres = (cut.boxes[:, :2] + cut.boxes[:, 2:]) / 2
    inside = ((centres >= 0) & (centres <= [size_w - 1, size_h - 1])).all(axis=1)
    sizes = np.max(cut.boxes[:, 2:] - cut.boxes[:, :2], axis=1) if len(cut.boxes) else np.zeros(0)
    bins = np.floor(config.scale_to_bin(np.maximum(sizes, 1e-6) / config.INPUT_SIZE))
    learnable = inside & (bins >= 0) & (bins < config.NUM_SCALES)
    on_image = ((cut.landmarks >= 0) & (cut.landmarks <= [size_w - 1, size_h - 1])).all(axis=2)
    return Cut(
        image=cut.image,
        boxes=cut.boxes[learnable],
        landmarks=cut.landmarks[learnable],
        visible=cut.visible[learnable] & on_image[learnable],
        ignore_boxes=np.concatenate([cut.ignore_boxes, cut.boxes[~learnable]]).reshape(-1, 4),
    )

"""Pre-processing shared by every backend: any image -> a letterboxed RGB uint8 canvas.

The network takes a fixed INPUT_SIZE x INPUT_SIZE canvas; the image is resized so its max edge is
INPUT_SIZE (aspect kept) and placed at the top-left, the rest padded. `Letterbox` remembers the
scale so detections can be mapped back to the original image's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kpnet_edge import config


@dataclass(frozen=True)
class Letterbox:
    """Where the original image sits in the canvas: canvas = original * scale, top-left aligned."""

    scale: float
    width: int
    height: int

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map canvas pixel coordinates (..., 2) or boxes (..., 4) back to the original image."""
        return np.asarray(points, dtype=np.float64) / self.scale


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        peak = float(finite.max()) if finite.size else 0.0
        scale = 255.0 if peak <= 1.0 else 1.0
        return np.clip(finite * scale + 0.5, 0, 255).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


INPUT_SIZE_MULTIPLE = 8
"""Canvas sides must be multiples of DRNet's deepest stride, so its skip sums line up."""


def check_input_size(size: int) -> int:
    """`size` as an int, or ValueError unless it is a positive multiple of INPUT_SIZE_MULTIPLE."""
    if isinstance(size, bool) or int(size) != size or size < INPUT_SIZE_MULTIPLE or size % INPUT_SIZE_MULTIPLE:
        raise ValueError(f"input size must be a positive multiple of {INPUT_SIZE_MULTIPLE} "
                         f"(256, 320, 416, ...), got {size}")
    return int(size)


AREA_RESIZE_BELOW = 0.5
"""Images shrunk below this scale are area-averaged (bilinear sampling would alias past 2x); from
there up, bilinear, as training samples its photos (training/photos.py: warpAffine at scales from
0.5), for a tenth of INTER_AREA's time (a 416 photo to 256: 0.10 against 1.04 ms)."""


def letterbox(
    image: np.ndarray, color_order: str = "bgr", size: int = config.INPUT_SIZE
) -> tuple[np.ndarray, Letterbox]:
    """Resize so the max edge is `size` and pad to size x size. Returns (canvas (size, size, 3)
    RGB uint8, Letterbox). Any image size works: huge images are downscaled, never tiled."""
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    return canvas, letterbox_into(image, canvas, color_order)


def letterbox_into(image: np.ndarray, canvas: np.ndarray, color_order: str = "bgr") -> Letterbox:
    """letterbox() written into `canvas` (size, size, 3) uint8, e.g. a buffer reused frame after
    frame: the resize writes straight into the canvas, the colour swap runs in place on that small
    region, and only the padding is filled; no full-size temporary is made."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or 0 in image.shape[:2]:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image must be a non-empty (H, W[, C]) numpy array, got shape {shape}")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if color_order not in ("bgr", "rgb"):
        raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    size = canvas.shape[0]
    image = _to_uint8(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < AREA_RESIZE_BELOW else cv2.INTER_LINEAR
    if scale < 1 and max(height, width) > 8 * size:
        # INTER_AREA on a huge image is slow and memory-hungry; halve with pyrDown first.
        while max(image.shape[:2]) > 4 * size:
            image = cv2.pyrDown(image)
    region = canvas[:new_h, :new_w]
    if image.ndim == 3 and image.shape[2] == 3:
        cv2.resize(image, (new_w, new_h), dst=region, interpolation=interpolation)
        if color_order == "bgr":
            cv2.cvtColor(region, cv2.COLOR_BGR2RGB, dst=region)
    else:
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        cv2.cvtColor(resized, _COLOR_CODES[(resized.ndim, color_order)], dst=region)
    canvas[new_h:] = config.PAD_VALUE
    canvas[:new_h, new_w:] = config.PAD_VALUE
    return Letterbox(scale=scale, width=width, height=height)


_COLOR_CODES = {
    (2, "bgr"): cv2.COLOR_GRAY2RGB,
    (2, "rgb"): cv2.COLOR_GRAY2RGB,
    (3, "bgr"): cv2.COLOR_BGRA2RGB,
    (3, "rgb"): cv2.COLOR_RGBA2RGB,
}
"""(ndim, colour order) of a resized grayscale or 4-channel image -> its conversion to RGB."""

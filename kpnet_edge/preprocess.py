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


def to_rgb(image: np.ndarray, color_order: str = "bgr") -> np.ndarray:
    """Any of grayscale (H, W) or (H, W, 1), 3-channel BGR/RGB, or 4-channel BGRA/RGBA -> RGB uint8.

    Float images are taken as [0, 1] when their max is <= 1, else as [0, 255]; 16-bit as [0, 65535].
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if color_order not in ("bgr", "rgb"):
        raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    image = _to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if color_order == "bgr" else cv2.COLOR_RGBA2RGB
        return cv2.cvtColor(image, code)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color_order == "bgr" else image


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


def letterbox(
    image: np.ndarray, color_order: str = "bgr", size: int = config.INPUT_SIZE
) -> tuple[np.ndarray, Letterbox]:
    """Resize so the max edge is `size` and pad to size x size. Returns (canvas (size, size, 3)
    RGB uint8, Letterbox). Any image size works: huge images are downscaled, never tiled."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or 0 in image.shape[:2]:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image must be a non-empty (H, W[, C]) numpy array, got shape {shape}")
    image = _to_uint8(image)
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    if scale < 1 and max(height, width) > 8 * size:
        # INTER_AREA on a huge image is slow and memory-hungry; halve with pyrDown first.
        while max(image.shape[:2]) > 4 * size:
            image = cv2.pyrDown(image)
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    rgb = to_rgb(resized, color_order)
    canvas = np.full((size, size, 3), config.PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = rgb
    return canvas, Letterbox(scale=scale, width=width, height=height)

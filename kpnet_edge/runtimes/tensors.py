"""What every adapter does around its backend call, as the manifest describes the model: check the
canvases, run fixed-batch chunks, convert input layout/dtype/quantisation, and outputs back to NCHW."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from kpnet_edge import config
from kpnet_edge.artifacts import ModelEntry, TensorInfo
from kpnet_edge.errors import KpnetError

Outputs = tuple[np.ndarray, np.ndarray]
"""(scale_logits (N, S, H/2, W/2), landmark_logits (N, K, H/2, W/2)) float32 NCHW."""


def check_entry(entry: ModelEntry, backend: str) -> None:
    """KpnetError unless entry is a `backend` model that takes raw RGB pixels (normalisation in
    its graph): the only input the adapters make."""
    if entry.format != backend:
        raise KpnetError(f"{entry.file}: a {entry.format} model, not {backend}")
    norm = entry.normalisation
    if norm.get("inside_graph") is not True or norm.get("color") != "RGB":
        raise KpnetError(f"{entry.file}: manifest normalisation {norm} is not raw RGB pixels normalised "
                         "inside the graph, which is what the runtimes feed")


def check_canvases(canvases: np.ndarray, entry: ModelEntry) -> None:
    """Raise ValueError unless canvases are uint8 (N, H, W, 3) at the model's input size."""
    layout, shape = entry.input.layout, entry.input.shape
    size = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    if not isinstance(canvases, np.ndarray) or canvases.dtype != np.uint8:
        raise ValueError(f"canvases must be a uint8 numpy array, got {getattr(canvases, 'dtype', type(canvases))}")
    if canvases.ndim != 4 or canvases.shape[1:] != (*size, 3):
        raise ValueError(f"canvases must be (N, {size[0]}, {size[1]}, 3) RGB, got shape {canvases.shape}")


def run_in_batches(canvases: np.ndarray, batch: int, infer: Callable[[np.ndarray], Outputs]) -> Outputs:
    """Run a model built for a fixed `batch` over any number of canvases, one chunk at a time."""
    return join_outputs((infer(chunk) for chunk in padded_chunks(canvases, batch)), len(canvases))


def padded_chunks(canvases: np.ndarray, batch: int) -> list[np.ndarray]:
    """Chunks of exactly `batch` canvases; the last is padded with copies of its final canvas."""
    chunks = []
    for start in range(0, len(canvases), batch):
        chunk = canvases[start : start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        chunks.append(chunk)
    return chunks


def join_outputs(parts: Iterable[Outputs], count: int) -> Outputs:
    """Concatenate per-chunk outputs and drop the padding's outputs beyond `count` images."""
    parts = list(parts)
    if not parts:
        size = config.OUTPUT_SIZE
        return (np.zeros((0, config.NUM_SCALES, size, size), np.float32),
                np.zeros((0, config.NUM_LANDMARKS, size, size), np.float32))
    scale, landmarks = (np.concatenate(heads)[:count] for heads in zip(*parts))
    return scale, landmarks


def to_input(canvases: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """uint8 NHWC canvases -> the model input: its layout, dtype and, for integer inputs,
    quantisation q = round(x / scale) + zero_point (raw pixels pass through at scale 1, zero 0)."""
    pixels = canvases.transpose(0, 3, 1, 2) if tensor.layout == "NCHW" else canvases
    dtype = np.dtype(tensor.dtype)
    if dtype.kind == "f":
        return np.ascontiguousarray(pixels, dtype=dtype)
    quant = tensor.quantization or {"scale": 1.0, "zero_point": 0}
    if (quant["scale"], quant["zero_point"]) == (1.0, 0) and dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    info = np.iinfo(dtype)
    values = np.round(pixels / quant["scale"]) + quant["zero_point"]
    return np.ascontiguousarray(np.clip(values, info.min, info.max).astype(dtype))


def from_output(values: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """A model output -> float32 (N, C, H, W): dequantised real = scale * (q - zero_point).

    An NHWC output comes back as a transposed view, not a copy: the copy would cost 0.8 ms a
    frame for the scale map, and the post-processor reads channels-last maps in place.
    """
    values = np.asarray(values)
    if tensor.quantization is not None and values.dtype.kind in "iu":
        quant = tensor.quantization
        values = (values.astype(np.float32) - np.float32(quant["zero_point"])) * np.float32(quant["scale"])
    values = values.astype(np.float32, copy=False)
    return values.transpose(0, 3, 1, 2) if tensor.layout == "NHWC" else values


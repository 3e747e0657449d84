"""What every adapter does around its backend call, as the manifest describes the model: check the
canvases, run fixed-batch chunks, convert input layout/dtype/quantisation, and outputs back to NCHW."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from kpnet_edge import config
from kpnet_edge.artifacts import ModelEntry, TensorInfo
from kpnet_edge.errors import KpnetError
from kpnet_edge.quantized_maps import QuantizedMaps

Maps = np.ndarray | QuantizedMaps
"""One head's output for a batch, (N, C, H/2, W/2): float32, or integer levels with their
quantisation where the caller asked to keep a quantised output quantised."""

Outputs = tuple[Maps, Maps]
"""(scale_logits (N, S, H/2, W/2), landmark_logits (N, K, H/2, W/2)), NCHW: float32 unless the
runtime ran with dequantize=False and the model's output is quantised."""


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
    """Concatenate per-chunk outputs and drop the padding's outputs beyond `count` images.

    A single chunk is sliced, not copied: the copy of a 4 MB scale map costs a frame 0.3 ms.
    """
    parts = list(parts)
    if not parts:
        size = config.OUTPUT_SIZE
        return (np.zeros((0, config.NUM_SCALES, size, size), np.float32),
                np.zeros((0, config.NUM_LANDMARKS, size, size), np.float32))
    scale, landmarks = (_concatenate(heads)[:count] for heads in zip(*parts))
    return scale, landmarks


def _concatenate(chunks: tuple[Maps, ...]) -> Maps:
    """One head's chunks as one batch; quantised chunks share their tensor's quantisation."""
    if len(chunks) == 1:
        return chunks[0]
    if isinstance(chunks[0], QuantizedMaps):
        first = chunks[0]
        return QuantizedMaps(np.concatenate([c.values for c in chunks]), first.scale, first.zero_point)
    return np.concatenate(chunks)


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


def from_output(values: np.ndarray, tensor: TensorInfo, dequantize: bool = True) -> Maps:
    """A model output -> (N, C, H, W): float32, dequantised real = scale * (q - zero_point); or,
    with dequantize=False, a quantised output's levels as QuantizedMaps (float outputs stay float).

    An NHWC output comes back as a transposed view, not a copy: the copy would cost 0.8 ms a
    frame for the scale map, and the post-processor reads channels-last maps in place.
    """
    values = np.asarray(values)
    if tensor.layout == "NHWC":
        values = values.transpose(0, 3, 1, 2)
    if tensor.quantization is not None and values.dtype.kind in "iu":
        quant = tensor.quantization
        maps = QuantizedMaps(values, float(quant["scale"]), int(quant["zero_point"]))
        return maps if not dequantize else maps.dequantize()
    return values.astype(np.float32, copy=False)


"""Latency of one model at one batch size: the model call alone, and end to end (letterbox, model,
post-processing to image pixels), as percentiles over repeated runs on real images."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kpnet_edge.postprocess import PostprocessParams, postprocess
from kpnet_edge.preprocess import letterbox
from kpnet_edge.runtimes.base import Runtime

WARMUP = 3
"""Untimed calls first, so lazy initialisation and cold caches are not counted."""


def measure_latency(runtime: Runtime, images: Sequence[np.ndarray], params: PostprocessParams,
                    repeats: int) -> dict:
    """Milliseconds per call with len(images) BGR images per call (the batch): "model_ms" for
    runtime.run on ready canvases, "end_to_end_ms" from the BGR images to faces in their pixels.
    Each has p50, p90, p99, mean and the number of timed calls."""
    canvases = np.stack([letterbox(image)[0] for image in images])

    def model_call() -> None:
        runtime.run(canvases)

    def end_to_end() -> None:
        prepared = [letterbox(image) for image in images]
        scale_maps, heatmaps = runtime.run(np.stack([canvas for canvas, _ in prepared]))
        for (_, box), scale_map, heat in zip(prepared, scale_maps, heatmaps):
            postprocess(scale_map, heat, params).scaled(1.0 / box.scale)

    return {
        "batch": len(images),
        "model_ms": _percentiles(_time(model_call, repeats)),
        "end_to_end_ms": _percentiles(_time(end_to_end, repeats)),
        "runtime": runtime_settings(runtime),
    }


def _time(call: Callable[[], None], repeats: int) -> np.ndarray:
    for _ in range(WARMUP):
        call()
    samples = np.empty(repeats)
    for index in range(repeats):
        start = time.perf_counter()
        call()
        samples[index] = 1000 * (time.perf_counter() - start)
    return samples


def _percentiles(samples: np.ndarray) -> dict:
    p50, p90, p99 = np.percentile(samples, (50, 90, 99))
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(samples.mean()),
            "calls": len(samples)}


def runtime_settings(runtime: Runtime) -> dict[str, Any]:
    """Threads and precision hints the runtime actually runs with, as far as its backend says."""
    reader = _SETTINGS.get(runtime.name)
    settings: dict[str, Any] = {"backend": runtime.name, "device": str(getattr(runtime, "device", "cpu"))}
    try:
        settings.update(reader(runtime) if reader is not None else {})
    except Exception as error:  # a backend that cannot say is recorded as such, not fatal
        settings["settings_error"] = f"{type(error).__name__}: {error}"
    return settings


def _torch(runtime: Any) -> dict[str, Any]:
    import torch

    return {"threads": torch.get_num_threads(), "precision": "fp32"}


def _onnx(runtime: Any) -> dict[str, Any]:
    threads = runtime.session.get_session_options().intra_op_num_threads
    return {"threads": threads or "onnxruntime default (one per physical core)",
            "providers": runtime.session.get_providers()}


def _openvino(runtime: Any) -> dict[str, Any]:
    names = ("PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS")
    values = {name.lower(): runtime.compiled.get_property(name) for name in names}
    # Element types print as "<Type: 'float32'>"; their type name is the plain "f32".
    return {k: v.get_type_name() if hasattr(v, "get_type_name") else str(v) for k, v in values.items()}


def _tflite(runtime: Any) -> dict[str, Any]:
    return {"input_dtype": runtime.entry.input.dtype, "threads": "as requested (LiteRT cannot report it)"}


_SETTINGS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "torch": _torch, "onnx": _onnx, "openvino": _openvino, "tflite": _tflite,
}
"""runtime.name -> what that backend can tell about its settings."""

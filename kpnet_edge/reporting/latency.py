"""Latency of the report's models at one batch size: the model call alone and end to end
(letterbox, model, post-processing to image pixels), measured interleaved in rounds so that
changes in the machine's load hit every model alike, with the spread and the load recorded."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kpnet_edge import config
from kpnet_edge.postprocess import PostprocessParams, postprocess
from kpnet_edge.preprocess import letterbox
from kpnet_edge.reporting.bootstrap import CONFIDENCE
from kpnet_edge.runtimes.base import Runtime

WARMUP = 3
"""Untimed calls of each kind first, so lazy initialisation and cold caches are not counted."""

ROUNDS = 5
"""Every model is timed in each round, in a rotated order; a round's median is one paired sample."""


def measure_interleaved(runtimes: Mapping[str, Runtime], images: Sequence[np.ndarray],
                        params: PostprocessParams, repeats: int, rounds: int = ROUNDS,
                        canvas_size: int = config.INPUT_SIZE) -> dict[str, dict]:
    """Milliseconds per call with len(images) BGR images per call (the batch), for each runtime:
    "model_ms" (runtime.run on ready canvases) and "end_to_end_ms" (BGR images to faces in their
    pixels), each with p50, p90, p99, mean, calls and the per-round medians; "spread" (the
    interquartile range over p50, and the load averages before and after); "consistent": False
    when end to end came out faster than the model alone, which only load changes can cause.

    About `repeats` calls of each kind per model, split over `rounds` rounds; within a round a
    model's model-only and end-to-end calls alternate, and the model order rotates per round."""
    canvases = np.stack([letterbox(image, size=canvas_size)[0] for image in images])
    calls = max(1, math.ceil(repeats / rounds))
    kinds = {key: _calls(runtime, canvases, images, params, canvas_size) for key, runtime in runtimes.items()}
    for model_call, end_to_end in kinds.values():
        for _ in range(WARMUP):
            model_call()
            end_to_end()
    samples = {key: np.zeros((2, rounds, calls)) for key in runtimes}
    load_before = _load()
    keys = list(runtimes)
    for round_index in range(rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            for call_index in range(calls):
                for kind, call in enumerate(kinds[key]):
                    start = time.perf_counter()
                    call()
                    samples[key][kind, round_index, call_index] = 1000 * (time.perf_counter() - start)
    load_after = _load()
    results = {}
    for key, runtime in runtimes.items():
        model_ms, end_to_end_ms = (_percentiles(samples[key][kind]) for kind in range(2))
        results[key] = {
            "batch": len(images),
            "model_ms": model_ms,
            "end_to_end_ms": end_to_end_ms,
            "spread": {"model_iqr_over_p50": _relative_iqr(samples[key][0]),
                       "end_to_end_iqr_over_p50": _relative_iqr(samples[key][1]),
                       "load_before": load_before, "load_after": load_after},
            "consistent": end_to_end_ms["p50"] >= model_ms["p50"],
            "runtime": runtime_settings(runtime),
        }
    return results


def latency_ratio(candidate: dict, reference: dict, resamples: int = 1000, seed: int = 0) -> dict:
    """Candidate end-to-end over reference end-to-end, paired by round: "value" the median of the
    per-round ratios, "interval" a bootstrap over rounds (CONFIDENCE), "rounds" the ratios."""
    ratios = (np.asarray(candidate["end_to_end_ms"]["round_p50"])
              / np.asarray(reference["end_to_end_ms"]["round_p50"]))
    draws = np.random.default_rng(seed).integers(0, len(ratios), size=(resamples, len(ratios)))
    medians = np.median(ratios[draws], axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(medians, (tail, 100 - tail))
    return {"value": float(np.median(ratios)), "interval": [float(low), float(high)],
            "rounds": [round(float(r), 4) for r in ratios]}


def _calls(runtime: Runtime, canvases: np.ndarray, images: Sequence[np.ndarray], params: PostprocessParams,
           canvas_size: int) -> tuple[Callable[[], None], Callable[[], None]]:
    def model_call() -> None:
        runtime.run(canvases)

    def end_to_end() -> None:
        prepared = [letterbox(image, size=canvas_size) for image in images]
        scale_maps, heatmaps = runtime.run(np.stack([canvas for canvas, _ in prepared]), dequantize=False)
        for (_, box), scale_map, heat in zip(prepared, scale_maps, heatmaps):
            postprocess(scale_map, heat, params).scaled(1.0 / box.scale)

    return model_call, end_to_end


def _percentiles(samples: np.ndarray) -> dict:
    """samples: (rounds, calls) milliseconds."""
    p50, p90, p99 = np.percentile(samples, (50, 90, 99))
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(samples.mean()),
            "calls": int(samples.size), "round_p50": np.median(samples, axis=1).round(4).tolist()}


def _relative_iqr(samples: np.ndarray) -> float:
    p25, p50, p75 = np.percentile(samples, (25, 50, 75))
    return float((p75 - p25) / p50) if p50 > 0 else 0.0


def _load() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


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

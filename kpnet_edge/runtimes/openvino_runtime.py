"""OpenVINO adapter: a convert folder's IR on CPU, GPU, NPU or AUTO, with a latency or throughput
hint and, for throughput, several inference requests in flight at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from kpnet_edge import config
from kpnet_edge.artifacts import ModelEntry
from kpnet_edge.errors import KpnetError
from kpnet_edge.runtimes.tensors import (
    Outputs,
    check_canvases,
    check_entry,
    from_output,
    join_outputs,
    padded_chunks,
    run_in_batches,
    to_input,
)

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
HINTS = ("LATENCY", "THROUGHPUT")


class OpenVinoRuntime:
    """One OpenVINO IR model, compiled once; each calling thread gets its own inference request.

    device: CPU, GPU[.N], NPU or AUTO (case-insensitive). hint: OpenVINO's performance hint.
    exact_fp32: compute in f32 (INFERENCE_PRECISION_HINT=f32), as the converter's parity check
    did; False lets OpenVINO pick, which on CPUs with bf16 units is bf16. threads: CPU threads.
    async_inference: a call with several fixed-batch chunks runs them on the compiled model's
    optimal number of parallel requests (use with hint="THROUGHPUT").
    """

    name = "openvino"

    def __init__(
        self,
        model_dir: str | Path,
        entry: ModelEntry,
        device: str = "CPU",
        threads: int | None = None,
        hint: str = "LATENCY",
        exact_fp32: bool = True,
        async_inference: bool = False,
    ) -> None:
        import openvino as ov

        check_entry(entry, self.name)
        core = ov.Core()
        device = _check_device(device.upper(), core.available_devices)
        if hint.upper() not in HINTS:
            raise KpnetError(f"openvino: unknown hint {hint!r}; choose from {', '.join(HINTS)}")
        properties: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper()}
        if exact_fp32:
            properties["INFERENCE_PRECISION_HINT"] = "f32"
        if threads is not None:
            if device != "CPU":
                raise KpnetError(f"openvino: threads applies to the CPU device, not {device}")
            properties["INFERENCE_NUM_THREADS"] = threads
        path = Path(model_dir) / entry.file
        try:
            self.compiled = core.compile_model(str(path), device, properties)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise KpnetError(f"{path}: OpenVINO cannot compile it for {device} ({first_line})") from error
        self.entry = entry
        self.device = device
        self.async_inference = async_inference
        self._outputs = [entry.output(name) for name in config.OUTPUT_NAMES]
        self._ports = [self.compiled.output(t.name) for t in self._outputs]
        self._local = threading.local()

    @property
    def input_size(self) -> int:
        """Side of the square canvas the model takes, as its manifest records it."""
        return self.entry.input_size

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> Outputs:
        """(N, H, W, 3) uint8 RGB -> NCHW (scale_logits, landmark_logits), float32 (OpenVINO INT8
        IR dequantises inside its graph; dequantize=False keeps only integer outputs integer)."""
        check_canvases(canvases, self.entry)
        if self.async_inference and len(canvases) > self.entry.batch:
            return self._run_async(canvases, dequantize)
        return run_in_batches(canvases, self.entry.batch, lambda chunk: self._infer(chunk, dequantize))

    def _infer(self, chunk: np.ndarray, dequantize: bool) -> Outputs:
        if not hasattr(self._local, "request"):
            self._local.request = self.compiled.create_infer_request()
        result = self._local.request.infer({0: to_input(chunk, self.entry.input)})  # outputs are copies
        return self._read([result[port] for port in self._ports], dequantize)

    def _run_async(self, canvases: np.ndarray, dequantize: bool) -> Outputs:
        import openvino as ov

        if not hasattr(self._local, "queue"):
            self._local.queue = ov.AsyncInferQueue(self.compiled)  # 0 jobs: the optimal number
            self._local.queue.set_callback(self._store)
        chunks = padded_chunks(canvases, self.entry.batch)
        results: list[Outputs | None] = [None] * len(chunks)
        for index, chunk in enumerate(chunks):
            self._local.queue.start_async({0: to_input(chunk, self.entry.input)}, (results, index, dequantize))
        self._local.queue.wait_all()
        return join_outputs(results, len(canvases))  # type: ignore[arg-type]

    def _store(self, request: Any, userdata: tuple[list[Outputs | None], int, bool]) -> None:
        results, index, dequantize = userdata
        # The request's output tensors are reused by its next job: copy them out now.
        results[index] = self._read([request.get_tensor(port).data.copy() for port in self._ports], dequantize)

    def _read(self, values: list[np.ndarray], dequantize: bool) -> Outputs:
        return from_output(values[0], self._outputs[0], dequantize), from_output(values[1], self._outputs[1], dequantize)


def _check_device(device: str, available: list[str]) -> str:
    """device if OpenVINO can use it here; "GPU" matches any of "GPU.0", "GPU.1", ..."""
    kind = device.split(".")[0]
    if kind not in DEVICES:
        raise KpnetError(f"openvino: unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if kind == "AUTO" or device in available or (device == kind and any(d.split(".")[0] == kind for d in available)):
        return device
    raise KpnetError(f"openvino: device {device} is not available here; OpenVINO sees {', '.join(available) or 'none'}")

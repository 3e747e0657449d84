"""ONNX Runtime adapter: a convert folder's ONNX model on the CPU, CUDA or TensorRT execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kpnet_edge import config
from kpnet_edge.artifacts import ModelEntry
from kpnet_edge.errors import KpnetError
from kpnet_edge.runtimes.tensors import (
    Outputs,
    check_canvases,
    check_entry,
    from_output,
    run_in_batches,
    to_input,
)

PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
"""device -> execution providers in priority order. The later ones only take the nodes the first
cannot run (onnxruntime's graph partitioning); the first one must start, or the adapter refuses."""


class OnnxRuntime:
    """One ONNX model in onnxruntime. device: cpu, cuda[:N] or tensorrt[:N]; threads: intra-op
    threads (onnxruntime's default: one per physical core). A session may serve several threads."""

    name = "onnx"

    def __init__(
        self, model_dir: str | Path, entry: ModelEntry, device: str = "cpu", threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        check_entry(entry, self.name)
        kind, _, device_id = device.lower().partition(":")
        if kind not in PROVIDERS:
            raise KpnetError(f"onnx: unknown device {device!r}; choose from {', '.join(PROVIDERS)}")
        providers = PROVIDERS[kind]
        available = ort.get_available_providers()
        if providers[0] not in available:
            raise KpnetError(
                f"onnx: device {device!r} needs {providers[0]}, which this onnxruntime lacks; it has "
                f"{', '.join(available)} (GPU providers come with kpnet-edge[gpu], i.e. onnxruntime-gpu)"
            )
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        provider_options = [{"device_id": device_id} if device_id and p != "CPUExecutionProvider" else {}
                            for p in providers]
        path = Path(model_dir) / entry.file
        try:
            self.session = ort.InferenceSession(str(path), options, list(providers), provider_options)
        except Exception as error:  # onnxruntime raises its own exception types, one per failure
            raise KpnetError(f"{path}: onnxruntime cannot load it ({type(error).__name__}: {error})") from error
        if providers[0] not in self.session.get_providers():
            raise KpnetError(f"{path}: onnxruntime could not start {providers[0]} (its log says why)")
        self.entry = entry
        self.device = device
        self._outputs = [entry.output(name) for name in config.OUTPUT_NAMES]

    @property
    def input_size(self) -> int:
        """Side of the square canvas the model takes, as its manifest records it."""
        return self.entry.input_size

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> Outputs:
        """(N, H, W, 3) uint8 RGB -> NCHW (scale_logits, landmark_logits), float32 (an ONNX INT8
        file dequantises inside its graph; dequantize=False keeps only integer outputs integer)."""
        check_canvases(canvases, self.entry)
        return run_in_batches(canvases, self.entry.batch, lambda chunk: self._infer(chunk, dequantize))

    def _infer(self, chunk: np.ndarray, dequantize: bool) -> Outputs:
        feed = {self.entry.input.name: to_input(chunk, self.entry.input)}
        scale, landmarks = self.session.run([t.name for t in self._outputs], feed)
        return from_output(scale, self._outputs[0], dequantize), from_output(landmarks, self._outputs[1], dequantize)

"""TFLite adapter: a convert folder's .tflite in ai-edge-litert, on XNNPACK CPU kernels or an
external delegate; quantised inputs and outputs converted as the manifest records them."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kpnet_edge import config
from kpnet_edge.artifacts import ModelEntry, TensorInfo
from kpnet_edge.errors import KpnetError
from kpnet_edge.runtimes.tensors import (
    Outputs,
    check_canvases,
    check_entry,
    from_output,
    run_in_batches,
    to_input,
)

_CHANNELS = {config.NUM_SCALES: config.OUTPUT_NAMES[0], config.NUM_LANDMARKS: config.OUTPUT_NAMES[1]}


class TfliteRuntime:
    """One TFLite model in an ai-edge-litert Interpreter. device: cpu (XNNPACK, `threads` threads);
    delegate: path or name of an external delegate library (e.g. libedgetpu.so.1) with its
    delegate_options. An interpreter runs one call at a time: a lock serialises threads."""

    name = "tflite"

    def __init__(
        self,
        model_dir: str | Path,
        entry: ModelEntry,
        device: str = "cpu",
        threads: int | None = None,
        delegate: str | Path | None = None,
        delegate_options: dict[str, Any] | None = None,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        check_entry(entry, self.name)
        if device.lower() != "cpu":
            raise KpnetError(f"tflite: device {device!r} is not a TFLite device; it runs on the cpu, "
                             "or on an accelerator through delegate=PATH (its TFLite delegate library)")
        delegates = [_load_delegate(str(delegate), delegate_options)] if delegate is not None else None
        path = Path(model_dir) / entry.file
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads, experimental_delegates=delegates)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise KpnetError(f"{path}: ai-edge-litert cannot load it ({error})") from error
        self.entry = entry
        self.device = device
        self._input = _input_tensor(self.interpreter, entry, path)
        self._outputs = _output_tensors(self.interpreter, entry, path)
        self._lock = threading.Lock()

    @property
    def input_size(self) -> int:
        """Side of the square canvas the model takes, as its manifest records it."""
        return self.entry.input_size

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> Outputs:
        """(N, H, W, 3) uint8 RGB -> NCHW (scale_logits, landmark_logits): float32, or an INT8
        file's int8 outputs as QuantizedMaps with dequantize=False (see runtimes.base.Runtime)."""
        check_canvases(canvases, self.entry)
        return run_in_batches(canvases, self.entry.batch, lambda chunk: self._infer(chunk, dequantize))

    def _infer(self, chunk: np.ndarray, dequantize: bool) -> Outputs:
        pixels = to_input(chunk, self._input)
        with self._lock:
            self.interpreter.set_tensor(self._input.index, pixels)
            self.interpreter.invoke()
            values = [self.interpreter.get_tensor(t.index) for t in self._outputs]  # copies
        return (from_output(values[0], self._outputs[0], dequantize),
                from_output(values[1], self._outputs[1], dequantize))


def _output_tensors(interpreter: Any, entry: ModelEntry, path: Path) -> list[TensorInfo]:
    """The manifest's (scale, landmark) outputs, checked against the file. TFLite keeps no output
    names and may reorder outputs, so they are found by the manifest's tensor index, or by channel
    count (60 vs 5) where the manifest has no index; never by position."""
    details = {int(d["index"]): d for d in interpreter.get_output_details()}
    by_channels = {_CHANNELS.get(int(d["shape"][-1])): index for index, d in details.items()}
    tensors = []
    for name in config.OUTPUT_NAMES:
        tensor = entry.output(name)
        index = tensor.index if tensor.index is not None else by_channels.get(name)
        if index not in details or [int(v) for v in details[index]["shape"]] != tensor.shape:
            raise KpnetError(f"{path}: has no output of shape {tensor.shape} at tensor index {index}, "
                             f"as manifest.json says {name} is; the file does not match its manifest")
        tensors.append(replace(tensor, index=index))
    return tensors


def _input_tensor(interpreter: Any, entry: ModelEntry, path: Path) -> TensorInfo:
    """The manifest's input, checked against the file's one input (index, shape, dtype)."""
    (source,) = interpreter.get_input_details()
    index, tensor = int(source["index"]), entry.input
    found = (index, [int(v) for v in source["shape"]], np.dtype(source["dtype"]).name)
    if tensor.index not in (None, index) or found[1:] != (tensor.shape, tensor.dtype):
        raise KpnetError(f"{path}: input is tensor {found[0]} {found[1]} {found[2]}, manifest.json says "
                         f"{tensor.index} {tensor.shape} {tensor.dtype}; the file does not match its manifest")
    return replace(tensor, index=index)


def _load_delegate(library: str, options: dict[str, Any] | None) -> Any:
    """load_delegate with a one-line KpnetError when the library is absent or is no TFLite delegate.

    The library is opened with ctypes first: ai-edge-litert's own failure paths leave a
    half-built Delegate whose destructor prints tracebacks.
    """
    from ai_edge_litert.interpreter import load_delegate

    try:
        handle = ctypes.CDLL(library)
    except OSError as error:
        raise KpnetError(f"tflite: cannot load delegate library {library} ({error})") from None
    if not hasattr(handle, "tflite_plugin_create_delegate"):
        raise KpnetError(f"tflite: {library} is not a TFLite delegate (no tflite_plugin_create_delegate)")
    try:
        return load_delegate(library, options)
    except (OSError, ValueError, RuntimeError) as error:
        raise KpnetError(f"tflite: delegate {library} failed to start ({error})") from None

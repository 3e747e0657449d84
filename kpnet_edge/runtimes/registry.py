"""open_runtime: the model a convert folder's manifest lists for a backend and precision, as a Runtime.
Each backend's module is imported only when it is opened."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from kpnet_edge.converters.manifest import Manifest, ModelEntry, load_manifest
from kpnet_edge.errors import KpnetError
from kpnet_edge.runtimes.base import Runtime

ADAPTERS = {
    "onnx": ("kpnet_edge.runtimes.onnxruntime_runtime", "OnnxRuntime"),
    "openvino": ("kpnet_edge.runtimes.openvino_runtime", "OpenVinoRuntime"),
    "tflite": ("kpnet_edge.runtimes.tflite_runtime", "TfliteRuntime"),
}
"""backend (= the manifest's format) -> (module, class). Every class takes
(model_dir, entry, device, threads, **its own options) and reads the rest from the entry."""

BACKENDS = ("torch", *ADAPTERS)
"""Every backend `open_runtime` knows; torch runs a checkpoint, the others a convert folder."""

_COMMON = {"self", "model_dir", "entry", "device", "threads"}


def open_runtime(
    model_dir: str | Path | None,
    backend: str,
    precision: str = "fp32",
    device: str = "cpu",
    batch: int = 1,
    threads: int | None = None,
    **options: Any,
) -> Runtime:
    """A Runtime for `backend` ("onnx", "openvino", "tflite" or "torch") at `precision`.

    model_dir: a `kpnet-edge convert` output folder; its manifest.json says which file to load and
    how to feed it. batch: the fixed batch of the file to load; without a file for that batch the
    batch-1 file runs the images in turn (same results). options: the backend's own keywords
    (openvino: hint, exact_fp32, async_inference; tflite: delegate, delegate_options).
    torch ignores model_dir and loads options["weights"] (the shipped checkpoint when absent).
    Raises KpnetError naming what the manifest offers when it has no such model.
    """
    if backend not in BACKENDS:
        raise KpnetError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if threads is not None and threads < 1:
        raise KpnetError(f"threads must be at least 1, got {threads}")
    if backend == "torch":
        return _open_torch(precision, device, threads, options)
    if model_dir is None:
        raise KpnetError(f"backend {backend} needs a model folder (a `kpnet-edge convert` output)")
    manifest = load_manifest(model_dir)
    entry = find_entry(manifest, Path(model_dir), backend, precision, batch)
    module_name, class_name = ADAPTERS[backend]
    adapter = getattr(importlib.import_module(module_name), class_name)
    accepted = set(inspect.signature(adapter.__init__).parameters) - _COMMON
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise KpnetError(f"{backend} takes no option {', '.join(unknown)}; "
                         f"its options are {', '.join(sorted(accepted)) or 'none'}")
    folder = Path(model_dir)
    return adapter(folder if folder.is_dir() else folder.parent, entry, device=device, threads=threads, **options)


def find_entry(manifest: Manifest, where: Path, backend: str, precision: str, batch: int) -> ModelEntry:
    """The manifest's (backend, precision) file for `batch`, else its batch-1 file; KpnetError
    listing every model the manifest has when neither exists."""
    if batch < 1:
        raise KpnetError(f"batch must be at least 1, got {batch}")
    matching = {m.batch: m for m in manifest.models if (m.format, m.precision) == (backend, precision)}
    entry = matching.get(batch) or matching.get(1)
    if entry is None:
        offered = ", ".join(f"{m.format} {m.precision} batch {m.batch}" for m in manifest.models) or "nothing"
        batches = f" for batch {batch} or 1" if matching else ""
        raise KpnetError(f"{where}: no {backend} {precision} model{batches}; the manifest offers {offered}")
    return entry


def _open_torch(precision: str, device: str, threads: int | None, options: dict[str, Any]) -> Runtime:
    unknown = sorted(set(options) - {"weights"})
    if unknown:
        raise KpnetError(f"torch takes no option {', '.join(unknown)}; its option is weights")
    if precision != "fp32":
        raise KpnetError(f"torch runs the fp32 checkpoint; precision {precision} needs a converted model")
    import torch

    from kpnet_edge.runtimes.torch_runtime import TorchRuntime

    if threads is not None:
        torch.set_num_threads(threads)  # per process: PyTorch has no per-model thread pool
    return TorchRuntime.from_checkpoint(options.get("weights"), device)

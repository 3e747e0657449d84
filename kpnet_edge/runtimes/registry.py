"""open_runtime: the model a convert folder's manifest lists for a backend and precision, checked
(sha256) and wrapped in its adapter. Picks the backend and precision itself when not told: the
first installed backend with a file in the folder. Each backend's module is imported only when
it is opened."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from kpnet_edge.artifacts import (
    BACKENDS,
    PRECISIONS,
    Manifest,
    ModelEntry,
    load_manifest,
    manifest_folder,
    verify_model,
)
from kpnet_edge.errors import KpnetError
from kpnet_edge.runtimes.base import Runtime

SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "assets"
"""The shipped checkpoint's converted files and their manifest.json (made by
`python -m kpnet_edge.converters.release`): what `detect` runs on a device without torch."""

RUNTIME_NAMES = ("torch", *BACKENDS)
"""Every backend `open_runtime` knows; torch runs a checkpoint, the others a convert folder."""

_COMMON = {"self", "model_dir", "entry", "device", "threads"}


def installed(backend: str) -> bool:
    """Whether the package that runs `backend`'s files can be imported here (not importing it)."""
    return importlib.util.find_spec(BACKENDS[backend].package) is not None


def open_runtime(
    model_dir: str | Path | None,
    backend: str | None = None,
    precision: str | None = None,
    device: str = "cpu",
    batch: int = 1,
    threads: int | None = None,
    **options: Any,
) -> Runtime:
    """A Runtime for `backend` ("onnx", "openvino", "tflite" or "torch") at `precision`.

    model_dir: a `kpnet-edge convert` output folder (or its manifest.json); its manifest says which
    file to load and how to feed it, and the file must match its sha256. backend / precision
    None: choose_model picks them. batch: the fixed batch of the file to load; without a file for
    that batch the batch-1 file runs the images in turn (same results). options: the backend's own
    keywords (openvino: hint, exact_fp32, async_inference; tflite: delegate, delegate_options).
    torch ignores model_dir and loads options["weights"] (the shipped checkpoint when absent).
    Raises KpnetError naming what the folder offers when it has no such model.
    """
    if backend is not None and backend not in RUNTIME_NAMES:
        raise KpnetError(f"unknown backend {backend!r}; choose from {', '.join(RUNTIME_NAMES)}")
    if threads is not None and threads < 1:
        raise KpnetError(f"threads must be at least 1, got {threads}")
    if backend == "torch":
        return _open_torch(precision or "fp32", device, threads, options)
    if model_dir is None:
        raise KpnetError(f"backend {backend} needs a model folder (a `kpnet-edge convert` output)")
    entry = choose_model(model_dir, backend, precision, batch)
    return open_model(model_dir, entry, device, threads, **options)


def open_model(
    model_dir: str | Path, entry: ModelEntry, device: str = "cpu", threads: int | None = None, **options: Any
) -> Runtime:
    """The adapter of entry's backend on entry's file in model_dir, once its files match their sha256."""
    folder = manifest_folder(model_dir)
    if entry.format not in BACKENDS:
        raise KpnetError(f"{folder / entry.file}: format {entry.format!r} is none this kpnet-edge runs "
                         f"({', '.join(BACKENDS)})")
    backend = BACKENDS[entry.format]
    if not installed(backend.name):
        raise KpnetError(f"{backend.name} models need {backend.runtime}, which is not installed here: "
                         f"pip install kpnet-edge[{backend.extra}]")
    verify_model(folder, entry)
    module_name, class_name = backend.adapter.split(":")
    adapter = getattr(importlib.import_module(module_name), class_name)
    accepted = set(inspect.signature(adapter.__init__).parameters) - _COMMON
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise KpnetError(f"{entry.format} takes no option {', '.join(unknown)}; "
                         f"its options are {', '.join(sorted(accepted)) or 'none'}")
    return adapter(folder, entry, device=device, threads=threads, **options)


def choose_model(
    model_dir: str | Path, backend: str | None = None, precision: str | None = None, batch: int = 1
) -> ModelEntry:
    """The manifest entry to run: `backend` and `precision` when given, else the first installed
    backend (table order: onnx, openvino, tflite) and precision (fp32, fp16, int8, ...) whose
    files are in the folder. The batch-`batch` file when there is one, else the batch-1 file.

    Raises KpnetError listing what the manifest offers, what the folder holds and what is
    installed, when nothing fits.
    """
    if batch < 1:
        raise KpnetError(f"batch must be at least 1, got {batch}")
    folder = manifest_folder(model_dir)
    manifest = load_manifest(folder)
    if backend is not None and precision is not None:
        return find_entry(manifest, folder, backend, precision, batch)
    present = manifest.present(folder)
    runnable = {backend} if backend else {b for b in BACKENDS if installed(b)}
    usable = [m for m in present if m.format in runnable and precision in (None, m.precision)
              and m.batch in (1, batch)]
    if not usable:
        raise KpnetError(_nothing_to_run(folder, manifest, present, backend, precision))
    rank = {(b, p): i for i, (b, p) in enumerate((b, p) for b in BACKENDS for p in PRECISIONS)}
    return min(usable, key=lambda m: (rank.get((m.format, m.precision), len(rank)), m.batch != batch))


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


def _nothing_to_run(folder: Path, manifest: Manifest, present: list[ModelEntry], backend: str | None,
                    precision: str | None) -> str:
    asked = " ".join(filter(None, (backend, precision))) or "any"
    offered = ", ".join(f"{m.format} {m.precision} ({m.file})" for m in manifest.models) or "nothing"
    here = ", ".join(m.file for m in present) or "none of them"
    ready = [b for b in BACKENDS if installed(b)]
    extras = ", ".join(dict.fromkeys(f"kpnet-edge[{BACKENDS[m.format].extra}]" for m in present
                                     if m.format in BACKENDS and m.format not in ready))
    hint = f"; install {extras}" if extras and backend is None else ""
    return (f"{folder}: no {asked} model to run: the manifest lists {offered}; the folder holds {here}; "
            f"installed backends: {', '.join(ready) or 'none'}{hint}")


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

"""The models a report compares: the PyTorch FP32 reference and every model of a convert folder,
each opened on demand at each batch size it has a file for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kpnet_edge.artifacts.manifest import Manifest
from kpnet_edge.artifacts.targets import TARGETS
from kpnet_edge.runtimes.base import Runtime

REFERENCE_KEY = "torch-fp32"


@dataclass(frozen=True)
class ReportModel:
    """One model of the report. open(batch) gives a Runtime whose fixed batch is `batch` (one of
    `batches`, the sizes latency is measured at); file and size_bytes describe the batch-1 file."""

    key: str
    format: str
    precision: str
    quantized: bool
    file: str
    size_bytes: int
    batches: tuple[int, ...]
    open: Callable[[int], Runtime]


def resolve_weights(weights: Path | None, manifest: Manifest) -> Path:
    """The reference checkpoint: `weights`, else the one the manifest was converted from (when it
    is still there), else the shipped checkpoint."""
    if weights is not None:
        return weights
    source = Path(manifest.source.get("weights") or "")
    if source.is_file():
        return source
    from kpnet_edge.checkpoint import SHIPPED_WEIGHTS

    return SHIPPED_WEIGHTS


def reference_model(weights: Path, batches: tuple[int, ...], threads: int | None) -> ReportModel:
    """DRNet in PyTorch FP32 from `weights`, measured at `batches` (any batch runs in PyTorch)."""
    from kpnet_edge.runtimes.registry import open_runtime

    return ReportModel(
        key=REFERENCE_KEY,
        format="torch",
        precision="fp32",
        quantized=False,
        file=str(weights),
        size_bytes=weights.stat().st_size if weights.is_file() else 0,
        batches=batches,
        open=lambda batch: open_runtime(None, "torch", threads=threads, weights=weights),
    )


def manifest_models(model_dir: Path, manifest: Manifest, threads: int | None) -> list[ReportModel]:
    """One ReportModel per (format, precision) of the manifest, in the manifest's order, measured
    at batch 1 and at every fixed batch the manifest has a file for."""
    from kpnet_edge.runtimes.registry import open_runtime

    models = []
    for entry in manifest.models:
        if entry.batch != 1:
            continue
        same = [m for m in manifest.models if (m.format, m.precision) == (entry.format, entry.precision)]
        batches = tuple(sorted({m.batch for m in same}))
        target = TARGETS.get(f"{entry.format}-{entry.precision}")

        def opener(batch: int, fmt: str = entry.format, precision: str = entry.precision) -> Runtime:
            return open_runtime(model_dir, fmt, precision, batch=batch, threads=threads)

        models.append(ReportModel(
            key=f"{entry.format}-{entry.precision}",
            format=entry.format,
            precision=entry.precision,
            quantized=target.quantized if target is not None else entry.precision == "int8",
            file=entry.file,
            size_bytes=entry.size_bytes,
            batches=batches,
            open=opener,
        ))
    return models


def report_models(model_dir: Path, manifest: Manifest, weights: Path,
                  threads: int | None) -> list[ReportModel]:
    """The reference first, then the manifest's models."""
    candidates = manifest_models(model_dir, manifest, threads)
    batches = tuple(sorted({1, *(b for m in candidates for b in m.batches)}))
    return [reference_model(weights, batches, threads), *candidates]

"""convert(): PyTorch DRNet -> ONNX / OpenVINO / TFLite files, each parity-checked against PyTorch,
with manifest.json, all appearing in the output folder only once every check has passed."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kpnet_edge import __version__, config
from kpnet_edge.converters.manifest import Manifest, ModelEntry, TensorInfo, sha256_file
from kpnet_edge.converters.targets import TARGETS, Target, check_options
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.quantization.calibration import (
    CHECK_SIZE,
    DEFAULT_SIZE,
    CalibrationSet,
    build_calibration_set,
)

if TYPE_CHECKING:
    from kpnet_edge.model import DRNet

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""A loaded model: canvases (N, H, W, 3) uint8 RGB -> (scale logits, landmark logits) NCHW float32."""

Progress = Callable[[str, float | None], None]
"""Called with (stage, None) when a stage starts and (stage, seconds) when it ends."""

BACKENDS = {
    "onnx": "kpnet_edge.converters.onnx_export",
    "openvino": "kpnet_edge.converters.openvino_export",
    "tflite": "kpnet_edge.converters.tflite_export",
}
"""format -> module with export(target, job, batch), load(path), describe(path), TOOLS."""

NORMALISATION = {
    "inside_graph": True,
    "formula": f"(x - {config.PIXEL_MEAN}) / {config.PIXEL_STD}",
    "mean": config.PIXEL_MEAN,
    "std": config.PIXEL_STD,
    "pixel_range": [0, 255],
    "color": "RGB",
}
INTERMEDIATE = ".intermediate"
"""Staging sub-folder for files a backend needs but the user did not ask for."""

PREPROCESSING = (
    f"letterbox: resize so the max edge is {config.INPUT_SIZE} (aspect kept), place top-left on a "
    f"{config.INPUT_SIZE}x{config.INPUT_SIZE} canvas filled with {config.PAD_VALUE}; RGB raw pixels"
)


@dataclass
class Job:
    """What the backends share during one conversion; files go to `staging` only."""

    model: DRNet
    staging: Path
    calibration: CalibrationSet | None
    check: np.ndarray
    per_tensor: bool = False
    max_drop: float | None = None
    _onnx: Path | None = None
    _references: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def onnx_file(self) -> Path:
        """The batch-1 FP32 ONNX model OpenVINO converts from: the onnx-fp32 target's file when
        it was made (targets run in TARGETS order, onnx first), else an intermediate export."""
        if self._onnx is None:
            self._onnx = self.staging / TARGETS["onnx-fp32"].filename(1)
            if not self._onnx.exists():
                from kpnet_edge.converters.onnx_export import export_onnx

                self._onnx = self.staging / INTERMEDIATE / "drnet.onnx"
                self._onnx.parent.mkdir(exist_ok=True)
                export_onnx(self.model, self._onnx)
        return self._onnx

    def reference(self, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """PyTorch outputs (NCHW float32) for canvases (N, H, W, 3) uint8."""
        import torch

        key = hash(canvases.tobytes())
        if key not in self._references:
            pixels = torch.from_numpy(np.ascontiguousarray(canvases.transpose(0, 3, 1, 2), dtype=np.float32))
            with torch.no_grad():
                scale, landmarks = self.model(pixels)
            self._references[key] = (scale.numpy(), landmarks.numpy())
        return self._references[key]


def convert(
    weights: str | Path | None,
    targets: Sequence[str | Target],
    out_dir: str | Path,
    calibration: str | Path | Sequence[AnnotatedImage] | CalibrationSet | None = None,
    *,
    batch: int = 1,
    per_tensor: bool = False,
    max_drop: float | None = None,
    calib_size: int = DEFAULT_SIZE,
    seed: int = 0,
    progress: Progress | None = None,
) -> Manifest:
    """Convert DRNet (`weights`, or the shipped checkpoint when None) to `targets` in `out_dir`.

    targets: keys of targets.TARGETS ('onnx-fp32', 'openvino-int8', ...) or Target objects.
    calibration: a folder of images, annotated records, or a built CalibrationSet; required for
    INT8, and float targets are checked on its held-out images (seeded noise without it).
    batch: also write fixed-batch models for targets that accept it. per_tensor / max_drop: see
    the targets table. Every file is checked against PyTorch within its target's tolerance;
    if any fails, nothing is written and KpnetError lists the failures.
    """
    chosen = _resolve(targets)
    check_options(chosen, {"batch": batch, "per_tensor": per_tensor, "max_drop": max_drop})
    if batch < 1:
        raise KpnetError(f"--batch must be at least 1, got {batch}")
    if max_drop is not None and not 0 < max_drop < 1:
        raise KpnetError(f"--max-drop is an agreement-score drop in (0, 1), got {max_drop}")
    if calibration is None and any(t.quantized for t in chosen):
        raise KpnetError("INT8 needs calibration images: pass --calib DIR (a folder of real images)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise KpnetError(f"{out_dir}: exists and is not a folder; --out needs a folder")
    report = progress or (lambda stage, seconds: None)

    with _stage(report, "load weights"):
        from kpnet_edge.checkpoint import SHIPPED_WEIGHTS, load_drnet

        model = load_drnet(weights)
        weights_path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
    calib_set = None
    if calibration is not None:
        with _stage(report, "calibration set"):
            calib_set = (
                calibration
                if isinstance(calibration, CalibrationSet)
                else build_calibration_set(calibration, calib_size, seed)
            )
    check = calib_set.check if calib_set is not None else _noise_canvases(seed)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.converting-", dir=out_dir.parent))
    except OSError as error:
        raise KpnetError(f"{out_dir}: cannot write there ({error.strerror or error})") from None
    try:
        job = Job(model, staging, calib_set, check, per_tensor=per_tensor, max_drop=max_drop)
        entries, failures = [], []
        for target in chosen:
            for size in (1, batch) if batch != 1 and target.accepts("batch") else (1,):
                entry = _make(target, job, size, report)
                entries.append(entry)
                failures += [f"{entry.file}: {m} = {entry.parity[m]:.3g} > {bound:g}"
                             for m, bound in target.tolerance.items() if not entry.parity[m] <= bound]
        if failures:
            raise KpnetError("parity check failed, nothing written: " + "; ".join(failures))
        manifest = Manifest(
            models=entries,
            source={
                "weights": str(weights_path),
                "sha256": sha256_file(weights_path),
                "widths": model.widths,
            },
            calibration=calib_set.describe() if calib_set is not None else None,
            parity_inputs={"kind": _check_kind(calib_set), "count": len(check)},
            preprocessing=PREPROCESSING,
            tools=_tool_versions({t.format for t in chosen}),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        shutil.rmtree(staging / INTERMEDIATE, ignore_errors=True)
        manifest.write(staging)
        _publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _resolve(targets: Sequence[str | Target]) -> list[Target]:
    chosen = []
    for target in targets:
        if isinstance(target, str):
            if target not in TARGETS:
                raise KpnetError(f"unknown target {target!r}; targets are {', '.join(TARGETS)}")
            target = TARGETS[target]
        if target not in chosen:
            chosen.append(target)
    if not chosen:
        raise KpnetError(f"no target given; targets are {', '.join(TARGETS)}")
    order = list(TARGETS)
    return sorted(chosen, key=lambda t: order.index(t.key) if t.key in order else len(order))


def _make(target: Target, job: Job, batch: int, report: Progress) -> ModelEntry:
    """Export one file into the staging folder, run it, and measure it against PyTorch."""
    from kpnet_edge.quantization.agreement import decoded_agreement, logit_error

    backend = importlib.import_module(BACKENDS[target.format])
    label = f"{target.format} {target.precision}" + (f" batch {batch}" if batch != 1 else "")
    with _stage(report, f"{label}: export"):
        try:
            path = backend.export(target, job, batch)
        except KpnetError:
            raise
        except Exception as error:
            raise KpnetError(f"{target.key}: export failed ({type(error).__name__}: {error})") from error
    with _stage(report, f"{label}: parity check in {target.runtime}"):
        runner = backend.load(path)
        canvases = _fill_batches(job.check, batch)
        outputs = [runner(canvases[i : i + batch]) for i in range(0, len(canvases), batch)]
        candidate = tuple(np.concatenate(parts) for parts in zip(*outputs))
        reference = job.reference(canvases)
        parity = {**logit_error(reference, candidate), **decoded_agreement(reference, candidate)}
    described = backend.describe(path)
    side_files = [path.parent / name for name in described["extra_files"]]
    return ModelEntry(
        file=path.name,
        format=target.format,
        precision=target.precision,
        batch=batch,
        runtime=target.runtime,
        sha256=sha256_file(path),
        size_bytes=sum(p.stat().st_size for p in [path, *side_files]),
        input=TensorInfo(**described["input"]),
        outputs=[TensorInfo(**t) for t in described["outputs"]],
        normalisation=dict(NORMALISATION),
        parity=parity,
        tolerance=dict(target.tolerance),
        options={o: getattr(job, o) for o in ("per_tensor", "max_drop") if target.accepts(o)},
        extra_files={p.name: sha256_file(p) for p in side_files},
    )


def _fill_batches(canvases: np.ndarray, batch: int) -> np.ndarray:
    """Repeat canvases (cyclically) up to a multiple of batch."""
    count = -(-len(canvases) // batch) * batch
    return canvases[np.arange(count) % len(canvases)]


def _noise_canvases(seed: int) -> np.ndarray:
    shape = (CHECK_SIZE, config.INPUT_SIZE, config.INPUT_SIZE, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def _check_kind(calib_set: CalibrationSet | None) -> str:
    if calib_set is None:
        return "seeded uniform noise (no calibration images given)"
    if calib_set.check_held_out:
        return "held-out images of the calibration source"
    return "calibration images (the source had no images to spare)"


def _tool_versions(formats: set[str]) -> dict[str, str]:
    names = {"kpnet-edge", "numpy", "opencv-python-headless", "torch"}
    for fmt in formats:
        names.update(importlib.import_module(BACKENDS[fmt]).TOOLS)
    versions = {}
    for name in sorted(names):
        try:
            versions[name] = __version__ if name == "kpnet-edge" else importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _publish(staging: Path, out_dir: Path) -> None:
    """Make the staged files appear in out_dir: one rename of the folder when out_dir is new,
    else a rename per file with the manifest last, so no reader sees a half-written model."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    files = sorted(p for p in staging.iterdir() if p.is_file())
    for path in sorted(files, key=lambda p: p.name == "manifest.json"):
        os.replace(path, out_dir / path.name)


@contextmanager
def _stage(report: Progress, name: str) -> Iterator[None]:
    report(name, None)
    start = time.perf_counter()
    yield
    report(name, time.perf_counter() - start)


"""convert(): PyTorch DRNet -> ONNX / OpenVINO / TFLite files. Each file is staged, opened through
the runtime adapter `detect` uses (runtimes.registry.open_model) and checked against PyTorch with
its target's tolerance; the files and manifest.json appear in the output folder only once every
check has passed, merged into the manifest already there."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kpnet_edge import __version__, config
from kpnet_edge.artifacts import (
    BACKENDS,
    MANIFEST_NAME,
    TARGETS,
    Manifest,
    ModelEntry,
    Target,
    TensorInfo,
    check_options,
    load_manifest,
    sha256_file,
)
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

Progress = Callable[[str, float | None], None]
"""Called with (stage, None) when a stage starts and (stage, seconds) when it ends."""

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


def preprocessing(size: int) -> str:
    """The manifest's description of the letterbox the models expect."""
    return (f"letterbox: resize so the max edge is {size} (aspect kept), place top-left on a {size}x{size} "
            f"canvas filled with {config.PAD_VALUE}; RGB raw pixels")


@dataclass
class Job:
    """What the backends share during one conversion; files go to `staging` only."""

    model: DRNet
    staging: Path
    calibration: CalibrationSet | None
    check: np.ndarray
    input_size: int = config.INPUT_SIZE
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
                export_onnx(self.model, self._onnx, 1, self.input_size)
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
    input_size: int = config.INPUT_SIZE,
    progress: Progress | None = None,
) -> Manifest:
    """Convert DRNet (`weights`, or the shipped checkpoint when None) to `targets` in `out_dir`.

    targets: keys of artifacts.TARGETS ('onnx-fp32', 'openvino-int8', ...) or Target objects.
    calibration: a folder of images, annotated records, or a built CalibrationSet; required for
    INT8, and float targets are checked on its held-out images (seeded noise without it).
    batch: also write fixed-batch models for targets that accept it. per_tensor / max_drop: see
    the targets table. input_size: the square canvas the models take (a multiple of 8).
    Every file is run through its runtime adapter and checked against PyTorch within its target's
    tolerance; if any fails, nothing is written and KpnetError lists the failures. An existing
    out_dir's manifest is merged into (same weights, input size and calibration, else refused);
    SIGTERM or Ctrl-C removes the staged files.
    """
    chosen = _resolve(targets)
    check_options(chosen, {"batch": batch, "per_tensor": per_tensor, "max_drop": max_drop})
    if batch < 1:
        raise KpnetError(f"--batch must be at least 1, got {batch}")
    if max_drop is not None and not 0 < max_drop < 1:
        raise KpnetError(f"--max-drop is an agreement-score drop in (0, 1), got {max_drop}")
    if input_size < 32 or input_size % 8:
        raise KpnetError(f"--input-size must be a multiple of 8, at least 32, got {input_size}")
    if calibration is None and any(t.quantized for t in chosen):
        raise KpnetError("INT8 needs calibration images: pass --calib DIR (a folder of real images)")
    out_dir = Path(out_dir)
    existing = _existing_manifest(out_dir)
    report = progress or (lambda stage, seconds: None)

    with _stage(report, "load weights"):
        from kpnet_edge.checkpoint import SHIPPED_WEIGHTS, load_drnet

        model = load_drnet(weights)
        weights_path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
    source = {"weights": str(weights_path), "sha256": sha256_file(weights_path), "widths": model.widths}
    calib_set = None
    if calibration is not None:
        with _stage(report, "calibration set"):
            calib_set = (
                calibration
                if isinstance(calibration, CalibrationSet)
                else build_calibration_set(calibration, calib_size, seed, input_size)
            )
        if calib_set.canvases.shape[1] != input_size:
            raise KpnetError(f"the calibration set is letterboxed to {calib_set.canvases.shape[1]}, "
                             f"the models take {input_size}")
    calib_record = calib_set.describe() if calib_set is not None else None
    if existing is not None:
        _check_mergeable(out_dir, existing, source, calib_record, input_size)
    check = calib_set.check if calib_set is not None else _noise_canvases(seed, input_size)
    with _staging_folder(out_dir) as staging:
        job = Job(model, staging, calib_set, check, input_size, per_tensor=per_tensor, max_drop=max_drop)
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
            models=_merge_models(existing, entries),
            source=source,
            calibration=calib_record or (existing.calibration if existing is not None else None),
            preprocessing=preprocessing(input_size),
            tools={**(existing.tools if existing is not None else {}), **_tool_versions({t.format for t in chosen})},
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        shutil.rmtree(staging / INTERMEDIATE, ignore_errors=True)
        manifest.write(staging)
        _publish(staging, out_dir)
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
    """Export one file into the staging folder, open it as `detect` would, measure it against PyTorch."""
    from kpnet_edge.quantization.agreement import decoded_agreement, logit_error
    from kpnet_edge.runtimes.registry import open_model

    exporter = importlib.import_module(target.backend.converter)
    label = f"{target.format} {target.precision}" + (f" batch {batch}" if batch != 1 else "")
    with _stage(report, f"{label}: export"):
        try:
            path = exporter.export(target, job, batch)
        except (KpnetError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            raise KpnetError(f"{target.key}: export failed ({type(error).__name__}: {error})") from error
    described = exporter.describe(path)
    side_files = [path.parent / name for name in described["extra_files"]]
    entry = ModelEntry(
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
        parity={},
        tolerance=dict(target.tolerance),
        checked_on=_checked_on(job),
        options={o: getattr(job, o) for o in ("per_tensor", "max_drop") if target.accepts(o)},
        extra_files={p.name: sha256_file(p) for p in side_files},
    )
    with _stage(report, f"{label}: parity check in {target.runtime}"):
        runtime = open_model(job.staging, entry)
        canvases = fill_batches(job.check, batch)
        candidate = runtime.run(canvases)
        reference = job.reference(canvases)
        parity = {**logit_error(reference, candidate), **decoded_agreement(reference, candidate)}
    return replace(entry, parity=parity)


def fill_batches(canvases: np.ndarray, batch: int) -> np.ndarray:
    """Repeat canvases (cyclically) up to a multiple of batch."""
    count = -(-len(canvases) // batch) * batch
    return canvases[np.arange(count) % len(canvases)]


def _noise_canvases(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (CHECK_SIZE, size, size, 3), np.uint8)


def _checked_on(job: Job) -> str:
    count = len(job.check)
    if job.calibration is None:
        return f"{count} canvases of seeded uniform noise (no calibration images given)"
    where = "held-out images" if job.calibration.check_held_out else "images (none to spare)"
    return f"{count} {where} of the calibration source {job.calibration.source} (seed {job.calibration.seed})"


def _existing_manifest(out_dir: Path) -> Manifest | None:
    """The manifest of an existing --out folder to merge into; refuses a file, or a non-empty
    folder without a manifest (its files would be mixed with ours and overwritten)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise KpnetError(f"{out_dir}: exists and is not a folder; --out needs a folder")
    if not out_dir.is_dir():
        return None
    if (out_dir / MANIFEST_NAME).exists():
        try:
            return load_manifest(out_dir)
        except KpnetError as error:
            raise KpnetError(f"cannot add models to {out_dir}: {error}") from None
    if any(out_dir.iterdir()):
        raise KpnetError(f"{out_dir}: holds files but no {MANIFEST_NAME}; choose an empty or new --out")
    return None


def _check_mergeable(out_dir: Path, existing: Manifest, source: dict[str, Any], calibration: dict[str, Any] | None,
                     input_size: int) -> None:
    """Refuse to add models to a folder whose models differ in weights, input size or calibration:
    one manifest describes one model, letterboxed one way, calibrated on one set."""
    problems = []
    if existing.source.get("sha256") != source["sha256"]:
        problems.append(f"its models come from other weights ({existing.source.get('weights')})")
    sizes = sorted({m.input_size for m in existing.models} - {input_size})
    if sizes:
        problems.append(f"its models take {sizes[0]}x{sizes[0]} canvases, these {input_size}x{input_size}")
    if calibration and existing.calibration and calibration["sha256"] != existing.calibration["sha256"]:
        problems.append("its INT8 models were calibrated on other images")
    if problems:
        raise KpnetError(f"{out_dir}: cannot add these models to its {MANIFEST_NAME}: {'; '.join(problems)}; "
                         "convert into a new --out folder (or delete this one)")


def _merge_models(existing: Manifest | None, entries: list[ModelEntry]) -> list[ModelEntry]:
    """The existing entries that the new ones do not replace (same format, precision, batch:
    same file names), then the new ones in the table's order."""
    made = {(m.format, m.precision, m.batch) for m in entries}
    kept = [m for m in (existing.models if existing is not None else []) if (m.format, m.precision, m.batch) not in made]
    order = {key: i for i, key in enumerate(TARGETS)}
    return sorted([*kept, *entries], key=lambda m: (order.get(f"{m.format}-{m.precision}", len(order)), m.batch))


def _tool_versions(formats: set[str]) -> dict[str, str]:
    names = {"kpnet-edge", "numpy", "opencv-python-headless", "torch"}
    for fmt in formats:
        names.update(importlib.import_module(BACKENDS[fmt].converter).TOOLS)
    versions = {}
    for name in sorted(names):
        try:
            versions[name] = __version__ if name == "kpnet-edge" else importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@contextmanager
def _staging_folder(out_dir: Path) -> Iterator[Path]:
    """A hidden folder beside out_dir with the umask's permissions (mkdtemp makes 0700), removed
    on the way out, also when SIGTERM arrives (turned into SystemExit) or Ctrl-C."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.converting-", dir=out_dir.parent))
    except OSError as error:
        raise KpnetError(f"{out_dir}: cannot write there ({error.strerror or error})") from None
    try:
        staging.chmod(0o777 & ~_umask())
        with _exit_on_sigterm():
            yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """Inside: SIGTERM raises SystemExit(143), so `finally` blocks clean up as for Ctrl-C. Only
    the main thread can own signal handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _publish(staging: Path, out_dir: Path) -> None:
    """Make the staged files appear in out_dir: one rename of the folder when out_dir is new,
    else a rename per file with the manifest last, so no reader sees a half-written model."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    files = sorted(p for p in staging.iterdir() if p.is_file())
    for path in sorted(files, key=lambda p: p.name == MANIFEST_NAME):
        os.replace(path, out_dir / path.name)


@contextmanager
def _stage(report: Progress, name: str) -> Iterator[None]:
    report(name, None)
    start = time.perf_counter()
    yield
    report(name, time.perf_counter() - start)

"""INT8 accuracy against calibration-set size: the manifest's INT8 targets re-quantized (through the
converters) with calibration sets of several sizes, each scored like the report's models."""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from kpnet_edge.artifacts.manifest import Manifest
from kpnet_edge.errors import KpnetError
from kpnet_edge.postprocess import PostprocessParams
from kpnet_edge.reporting.accuracy import model_accuracy
from kpnet_edge.reporting.models import manifest_models
from kpnet_edge.reporting.run import EvalSets, collect


def calibration_source(manifest: Manifest, calib: Path | None) -> Path:
    """The folder to draw calibration images from: `calib`, else the manifest's source folder.
    Raises KpnetError when the manifest has no INT8 model or no folder is known."""
    if not any(m.precision == "int8" for m in manifest.models):
        raise KpnetError("--calib-sweep: the manifest has no INT8 model to re-quantize")
    if calib is not None:
        if not calib.is_dir():
            raise KpnetError(f"--calib {calib}: not a folder of calibration images")
        return calib
    source = (manifest.calibration or {}).get("source")
    if source and Path(source).is_dir():
        return Path(source)
    raise KpnetError(f"--calib-sweep needs --calib DIR: the manifest's calibration source "
                     f"({source or 'none'}) is not a folder here")


def calibration_sweep(
    sizes: Sequence[int],
    weights: Path,
    manifest: Manifest,
    source: Path,
    sets: EvalSets,
    params: PostprocessParams,
    operating_score: float,
    progress: bool = False,
) -> list[dict]:
    """One row per (size, INT8 target): the calibration set actually used and the accuracy, or
    the converter's error when that size fails its parity check (nothing is scored then)."""
    int8 = [m for m in manifest.models if m.precision == "int8" and m.batch == 1]
    # One convert call makes every INT8 target, with the options of the original ones.
    options = {
        "per_tensor": any(m.options.get("per_tensor") for m in int8),
        "max_drop": next((m.options.get("max_drop") for m in int8 if m.options.get("max_drop")), None),
    }
    targets = [f"{m.format}-int8" for m in int8]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kpnet-calib-sweep-") as work:
        for size in sizes:
            if progress:
                print(f"calibration sweep: {size} images ...", file=sys.stderr, flush=True)
            folder = Path(work) / f"calib_{size}"
            try:
                swept = _convert(weights, targets, folder, source, size, manifest, options)
            except KpnetError as error:
                rows += [{"target": t, "requested_size": size, "error": str(error)} for t in targets]
                continue
            models = manifest_models(folder, swept, threads=None)
            runs = collect(models, sets, params, progress=progress)
            for model in models:
                rows.append({
                    "target": model.key,
                    "requested_size": size,
                    "calibration_size": swept.calibration["size"],
                    "calibration_sha256": swept.calibration["sha256"],
                    "accuracy": model_accuracy(runs[model.key], sets, operating_score),
                    "error": None,
                })
    return rows


def _convert(weights: Path, targets: list[str], folder: Path, source: Path, size: int, manifest: Manifest,
             options: dict) -> Manifest:
    from kpnet_edge.converters.pipeline import convert
    from kpnet_edge.quantization.calibration import CalibrationWarning

    seed = int((manifest.calibration or {}).get("seed") or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # small sets are the point of the sweep
        return convert(weights, targets, folder, source, calib_size=size, seed=seed,
                       per_tensor=options["per_tensor"], max_drop=options["max_drop"])

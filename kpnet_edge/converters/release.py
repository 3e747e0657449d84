"""Regenerate the converted models shipped beside the checkpoint (kpnet_edge/assets/): FP32 ONNX and
INT8 TFLite with their manifest.json, so `pip install kpnet-edge[tflite]` (or [onnx]) detects with
no convert step and no torch. Run after every change of kpnet_edge/assets/drnet.pt:

    python -m kpnet_edge.converters.release            # calibrates on ../shared/data/caltech_webfaces

The new files replace the old ones only once every parity check has passed; files the old
manifest listed and the new one does not are removed, so the folder never holds orphans.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

from kpnet_edge.artifacts import MANIFEST_NAME, Manifest, load_manifest
from kpnet_edge.checkpoint import SHIPPED_WEIGHTS
from kpnet_edge.datapaths import data_root
from kpnet_edge.errors import KpnetError

SHIPPED_TARGETS = ("onnx-fp32", "tflite-int8")
CALIBRATION = "caltech_webfaces/images"
"""Calibration images: real photos from the training side of the data, never the evaluation sets."""
CALIB_SIZE = 300


def release(weights: Path = SHIPPED_WEIGHTS, calibration: Path | None = None, calib_size: int = CALIB_SIZE,
            folder: Path | None = None) -> Manifest:
    """Convert `weights` to SHIPPED_TARGETS and put the files and manifest beside it (or in `folder`)."""
    from kpnet_edge.converters.pipeline import convert

    folder = folder or weights.parent
    calibration = calibration or data_root() / CALIBRATION
    if not calibration.is_dir():
        raise KpnetError(f"{calibration}: no such folder of calibration images (pass --calib DIR)")
    old = load_manifest(folder) if (folder / MANIFEST_NAME).exists() else None
    with tempfile.TemporaryDirectory(prefix=".release-", dir=folder) as scratch:
        staged = Path(scratch) / "models"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # converters' own deprecation chatter
            manifest = convert(weights, list(SHIPPED_TARGETS), staged, calibration, calib_size=calib_size,
                               progress=_print_stage)
        new_files = {name for entry in manifest.models for name in entry.files}
        for name in sorted(new_files):
            os.replace(staged / name, folder / name)
        os.replace(staged / MANIFEST_NAME, folder / MANIFEST_NAME)
        for entry in old.models if old is not None else []:
            for name in set(entry.files) - new_files:
                (folder / name).unlink(missing_ok=True)
    _relative_source(folder, weights)
    return load_manifest(folder, verify=True)


def _relative_source(folder: Path, weights: Path) -> None:
    """Record the checkpoint by its name when it sits beside the manifest: the absolute path of
    the machine that made the release means nothing where the package is installed."""
    import json

    if weights.resolve().parent != folder.resolve():
        return
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["source"]["weights"] = weights.name
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temp, path)


def _print_stage(stage: str, seconds: float | None) -> None:
    if seconds is not None:
        print(f"{stage}: {seconds:.1f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kpnet_edge.converters.release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS,
                        help="checkpoint to release (default: the shipped one); files go beside it")
    parser.add_argument("--calib", type=Path, help=f"calibration images (default: <data>/{CALIBRATION})")
    parser.add_argument("--calib-size", type=int, default=CALIB_SIZE)
    args = parser.parse_args(argv)
    try:
        manifest = release(args.weights, args.calib, args.calib_size)
    except KpnetError as error:
        print(f"release: error: {error}", file=sys.stderr)
        return 2
    for entry in manifest.models:
        figures = ", ".join(f"{k} {entry.parity[k]:.2g} <= {v:g}" for k, v in entry.tolerance.items())
        print(f"{entry.file}: {entry.size_bytes / 1e6:.2f} MB, {figures}")
    print(f"{len(manifest.models)} models and {MANIFEST_NAME} in {args.weights.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

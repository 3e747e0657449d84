"""`kpnet-edge convert`: DRNet weights -> checked ONNX / OpenVINO IR / TFLite models + manifest.json."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from kpnet_edge import config
from kpnet_edge.artifacts import FORMATS, select_targets
from kpnet_edge.quantization.calibration import DEFAULT_SIZE, CalibrationWarning

if TYPE_CHECKING:
    from kpnet_edge.artifacts import ModelEntry

EXAMPLES = """examples:
  kpnet-edge convert --to onnx
  kpnet-edge convert --to openvino,tflite --int8 --calib photos/ --out models/
  kpnet-edge convert --to openvino --int8 --calib photos/ --max-drop 0.01 --batch 8
  kpnet-edge convert --to onnx --input-size 320 --out models-320/

Every file is run through the runtime adapter `detect` uses and compared with PyTorch before it is
written; the files appear in --out only when all checks pass, with manifest.json describing
inputs, outputs, quantization, calibration set and parity figures. Converting into a folder that
already has a manifest adds to it (same weights, input size and calibration), else is refused."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add convert's arguments to its sub-parser."""
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--to", default=",".join(FORMATS), metavar="FORMATS",
        help=f"comma-separated formats: {', '.join(FORMATS)} (default: all); each gives its float "
        "models (FP32; OpenVINO also FP16)",
    )
    parser.add_argument("--int8", action="store_true", help="also write INT8 models (needs --calib)")
    parser.add_argument("--calib", metavar="DIR", type=Path,
                        help="folder of real images: INT8 calibration and the parity checks' inputs")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("kpnet-models"),
                        help="output folder (default: kpnet-models)")
    parser.add_argument("--weights", metavar="PATH", type=Path,
                        help="DRNet checkpoint (default: the shipped weights); only read, never changed")
    parser.add_argument("--batch", type=int, default=1, metavar="N",
                        help="also write fixed-batch-N models (onnx, openvino)")
    parser.add_argument("--per-tensor", action="store_true",
                        help="INT8 with one weight scale per tensor instead of per channel")
    parser.add_argument("--max-drop", type=float, metavar="X",
                        help="OpenVINO INT8: keep layers in float until the agreement score with "
                        "PyTorch (1 - keypoint NME - proposal probability error) drops by at most X")
    parser.add_argument("--input-size", type=int, default=config.INPUT_SIZE, metavar="N",
                        help=f"square canvas the models take, a multiple of 8 (default: {config.INPUT_SIZE}); "
                        "recorded in manifest.json, which the runtimes read")
    parser.add_argument("--calib-size", type=int, default=DEFAULT_SIZE, metavar="N",
                        help=f"calibration images to sample (default: {DEFAULT_SIZE})")
    parser.add_argument("--seed", type=int, default=0, help="calibration sampling seed (default: 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert, printing each stage with its time, then a table of the files written."""
    from kpnet_edge.converters.pipeline import convert

    targets = select_targets(args.to.split(","), args.int8)
    with warnings.catch_warnings():
        # Framework deprecation chatter is not the user's business; skipped or scarce
        # calibration images are.
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", CalibrationWarning)
        warnings.showwarning = _show_warning
        manifest = convert(
            args.weights,
            targets,
            args.out,
            calibration=args.calib,
            batch=args.batch,
            per_tensor=args.per_tensor,
            max_drop=args.max_drop,
            calib_size=args.calib_size,
            seed=args.seed,
            input_size=args.input_size,
            progress=_print_stage,
        )
    print(format_summary(manifest.models, args.out))
    return 0


def format_summary(models: list[ModelEntry], out_dir: Path) -> str:
    """The closing table: file, size, precision, batch, parity figures against their bounds."""
    header = ("file", "size", "precision", "batch", "parity vs PyTorch (figure <= bound)")
    rows = [
        (
            m.file,
            f"{m.size_bytes / 1e6:.2f} MB",
            m.precision,
            str(m.batch),
            ", ".join(f"{k} {m.parity[k]:.2g} <= {bound:g}" for k, bound in m.tolerance.items()),
        )
        for m in models
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"{len(models)} models and manifest.json in {out_dir.resolve()}")
    return "\n".join(lines)


def _print_stage(stage: str, seconds: float | None) -> None:
    if seconds is None:
        print(f"{stage} ...", file=sys.stderr, flush=True)
    else:
        print(f"{stage}: done in {seconds:.1f} s", file=sys.stderr, flush=True)


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    print(f"kpnet-edge convert: warning: {message}", file=sys.stderr)


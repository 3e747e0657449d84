"""`kpnet-edge` command line: one verb per job; a thin layer over the Python API."""

from __future__ import annotations

import argparse
import importlib
import sys

from kpnet_edge import __version__
from kpnet_edge.errors import KpnetError

# verb -> (module under kpnet_edge.commands, one-line help). Modules load lazily so `detect` on a
# device never imports the converters' heavy dependencies.
COMMANDS = {
    "detect": ("detect", "find faces in an image, a folder of images or a video"),
    "eval": ("evaluate", "score detections or landmarks against ground truth"),
    "label": ("label", "complete a folder's face labels with a teacher detector (YuNet)"),
    "train": ("train", "train DRNet on real photos and synthetic scenes"),
    "convert": ("convert", "export DRNet to ONNX, OpenVINO IR and TFLite, FP32 and INT8"),
    "report": ("report", "accuracy drop and latency of every converted model vs the FP32 reference"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The top-level parser; only the chosen verb's module is imported."""
    parser = argparse.ArgumentParser(
        prog="kpnet-edge",
        description="Convert, quantize, run and measure KPNet face detectors on edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"kpnet-edge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for verb, (module_name, help_text) in COMMANDS.items():
        if verb == chosen:
            module = importlib.import_module(f"kpnet_edge.commands.{module_name}")
            module.register(subparsers.add_parser(verb, help=help_text, description=help_text))
        else:
            subparsers.add_parser(verb, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kpnet-edge` console script. Returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KpnetError as error:
        print(f"kpnet-edge {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kpnet-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

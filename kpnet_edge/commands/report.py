"""`kpnet-edge report`: how much accuracy each converted model lost against PyTorch FP32, where, and
what it gained in speed; report.md, report.html and report.json, optionally gated on the AP drop."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kpnet_edge.commands.output_paths import check_output_folder
from kpnet_edge.errors import KpnetError

EXAMPLES = """examples:
  kpnet-edge report --model models/
  kpnet-edge report --model models/ --max-drop 0.01 --peers
  kpnet-edge report --model models/ --calib-sweep 32,100,300 --calib photos/ --limit 50

Every model of the convert folder and the PyTorch FP32 reference go through the same letterbox,
post-processor and metrics: AP50 and recall at 0.1 / 1 false positives per image on
WIDER-val-200-dev@416 (faces >= 16 and >= 24 px; not a WIDER FACE score), inter-ocular NME on MTFL
test. Exit codes: 0 done, 2 bad input, 3 the --max-drop gate failed (the report is written first)."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add report's arguments to its sub-parser."""
    from kpnet_edge.reporting.build import DEFAULT_PARAMS, ReportSettings

    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--model", required=True, type=Path, metavar="DIR",
                        help="a `kpnet-edge convert` output folder (its manifest.json lists the models)")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="data folder holding widerface_val200_dev/ and mtfl/ "
                             "(default: ../shared/data or $KPNET_DATA)")
    parser.add_argument("--out", type=Path, metavar="DIR", default=Path("kpnet-report"),
                        help="where report.md, report.html, report.json and the figures go "
                             "(default: %(default)s)")
    parser.add_argument("--weights", type=Path, metavar="PATH",
                        help="reference checkpoint (default: the one the manifest was converted from, "
                             "else the shipped one)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="first N images of each evaluation set (quick runs)")
    parser.add_argument("--repeats", type=int, default=ReportSettings.repeats, metavar="N",
                        help="timed calls per model and batch (default: %(default)s)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of every runtime (default: each one's own)")
    parser.add_argument("--max-drop", type=float, metavar="X",
                        help="fail (exit 3) when an INT8 model's AP50 at faces >= 24 px drops by more than X "
                             "(a fraction: 0.01 = 1 point)")
    parser.add_argument("--calib-sweep", metavar="SIZES",
                        help="re-quantize the INT8 targets with these calibration-set sizes, e.g. 32,100,300")
    parser.add_argument("--calib", type=Path, metavar="DIR",
                        help="calibration images for --calib-sweep "
                             "(default: the manifest's calibration folder)")
    parser.add_argument("--peers", nargs="?", const="", metavar="SOURCE",
                        help="add YuNet and Haar rows: from benchmarks/results/peers.json (no value), "
                             "a peers JSON file, or `live` to run benchmarks/peers.py on the same images")
    parser.add_argument("--proposal-threshold", type=float, metavar="P",
                        default=DEFAULT_PARAMS.proposal_threshold,
                        help="post-processor's scale-map threshold for every model (default: %(default)s)")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_PARAMS.score_threshold, metavar="S",
                        help="post-processor's face-score threshold for every model (default: %(default)s)")
    parser.add_argument("--operating-score", type=float, default=ReportSettings.operating_score, metavar="S",
                        help="score a face needs on MTFL and in the regression list (default: %(default)s)")
    parser.add_argument("--moved-px", type=float, default=ReportSettings.moved_px, metavar="N",
                        help="list matched faces whose landmarks moved more than N image pixels "
                             "(default: %(default)s)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="ray: evaluate each model as a Ray task (needs kpnet-edge[scale]; latency is "
                             "still timed here)")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="--engine ray: join this cluster (default: $RAY_ADDRESS, else a local instance)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build and write the report, print where it is; 3 when the gate fails."""
    from dataclasses import replace

    from kpnet_edge.artifacts.manifest import load_manifest
    from kpnet_edge.datapaths import data_root
    from kpnet_edge.reporting.build import DEFAULT_PARAMS, ReportSettings, build_report, write_report
    from kpnet_edge.reporting.gate import EXIT_CODE
    from kpnet_edge.reporting.models import report_models, resolve_weights
    from kpnet_edge.reporting.peers import DEFAULT_RESULTS
    from kpnet_edge.reporting.sections import summary_lines

    _check(args)
    sweep_sizes = _sizes(args.calib_sweep)
    manifest = load_manifest(args.model)
    weights = resolve_weights(args.weights, manifest)
    settings = ReportSettings(
        model_dir=args.model,
        data=args.data or data_root(),
        weights=weights,
        limit=args.limit,
        params=replace(DEFAULT_PARAMS, proposal_threshold=args.proposal_threshold,
                       score_threshold=args.score_threshold),
        operating_score=args.operating_score,
        moved_px=args.moved_px,
        repeats=args.repeats,
        threads=args.threads,
        calib_sweep=sweep_sizes,
        calib=args.calib,
        peers=None if args.peers is None else (args.peers or str(DEFAULT_RESULTS)),
        max_drop=args.max_drop,
    )
    models = report_models(args.model, manifest, weights, args.threads)
    engine = {}
    if args.engine == "ray":
        from kpnet_edge.scale.report import ray_collector  # Ray is imported only here

        engine["collector"] = ray_collector(args.ray_address, args.threads)
    report = build_report(settings, models, manifest, progress=True, **engine)
    written = write_report(report, args.out)
    gate = report.data["gate"]
    for line in summary_lines(report.data):
        if gate is None or line != gate["message"]:
            print(line)
    print(f"report written to {written['report.html'].resolve()} (and report.md, report.json beside it)")
    if gate is not None:
        print(gate["message"], file=sys.stdout if gate["passed"] else sys.stderr)
        if not gate["passed"]:
            return EXIT_CODE
    return 0


def _check(args: argparse.Namespace) -> None:
    for value, flag in ((args.limit, "--limit"), (args.repeats, "--repeats"), (args.threads, "--threads")):
        if value is not None and value < 1:
            raise KpnetError(f"{flag} must be at least 1, got {value}")
    fractions = ((args.proposal_threshold, "--proposal-threshold"),
                 (args.score_threshold, "--score-threshold"),
                 (args.operating_score, "--operating-score"))
    for value, flag in fractions:
        if not 0.0 <= value <= 1.0:
            raise KpnetError(f"{flag} must lie in [0, 1], got {value}")
    if args.max_drop is not None and not 0.0 <= args.max_drop < 1.0:
        raise KpnetError(f"--max-drop is an AP drop in [0, 1) (0.01 = 1 point), got {args.max_drop}")
    if args.moved_px < 0:
        raise KpnetError(f"--moved-px must not be negative, got {args.moved_px}")
    check_output_folder(args.out, "--out")


def _sizes(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        message = f"--calib-sweep takes comma-separated image counts like 32,100,300, got {text!r}"
        raise KpnetError(message) from None
    if not sizes or min(sizes) < 1:
        raise KpnetError(f"--calib-sweep sizes must be at least 1, got {text!r}")
    return sizes

"""`kpnet-edge report`: whether each converted model can ship: how much accuracy it lost against
PyTorch FP32 (with paired bootstrap intervals), where, and what it gained in speed, judged by one
gate; report.md, report.html and report.json, and an exit code that follows the verdict."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kpnet_edge.commands.output_paths import check_output_folder
from kpnet_edge.errors import KpnetError

EXAMPLES = """examples:
  kpnet-edge report --model models/                        # about a minute: a sample, a verdict per model
  kpnet-edge report --model models/ --full                 # every image, narrower intervals
  kpnet-edge report --model models/ --gate gate.yaml       # bounds from a file (CI)
  kpnet-edge report --model models/ --max-drop 0.02 --max-latency-ratio 1.2 --peers
  kpnet-edge report --model models/ --calib-sweep 32,100,300 --calib photos/ --limit 50

Every model of the convert folder and the PyTorch FP32 reference go through the same letterbox,
post-processor and metrics: AP50, recall at 0.1 / 1 false positives per image and face recall at
the operating score on WIDER-val-200-dev@416 (faces >= 16 and >= 24 px; not a WIDER FACE score),
inter-ocular NME on MTFL test; 95 % paired bootstrap intervals on every figure and drop.

Each candidate gets PASS, FAIL or "not decidable on this data" on four bounds (AP50 drop at
>= 24 px 0.01, face recall drop 0.02, NME increase 0.005, latency ratio 1.0 by default): a gate
file (YAML: bounds:, and models: for per-model bounds) or the --max-* flags change them.
Exit codes: 0 every model passes, 3 one fails, 4 none fails but one is not decidable (try --full),
2 bad input, 130 interrupted. The report is written before the exit code is given."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add report's arguments to its sub-parser."""
    from kpnet_edge.reporting.build import DEFAULT_PARAMS, ReportSettings
    from kpnet_edge.reporting.gate import CRITERIA

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
    parser.add_argument("--models", metavar="KEYS",
                        help="only these models of the folder, e.g. openvino-int8,tflite-int8 (default: all)")
    parser.add_argument("--full", action="store_true",
                        help="score every image (default: a seeded sample sized for about a minute)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="first N images of each evaluation set (quick runs)")
    parser.add_argument("--repeats", type=int, default=ReportSettings.repeats, metavar="N",
                        help="timed calls per model, batch and kind (model, end to end), spread over the "
                             "interleaved rounds (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=ReportSettings.rounds, metavar="N",
                        help="latency rounds; each times every model in turn (default: %(default)s)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of every runtime (default: each one's own)")
    parser.add_argument("--input-size", type=int, metavar="N",
                        help="letterbox canvas side for every model (default: the convert folder's; the "
                             "reference follows it)")
    gate = parser.add_argument_group("gate (bounds are 'at most'; the file's, then these flags)")
    gate.add_argument("--gate", type=Path, metavar="FILE", help="YAML file of bounds (see examples)")
    for criterion in CRITERIA:
        gate.add_argument(criterion.flag, type=float, metavar="X", dest=criterion.name,
                          help=f"{criterion.label} (default: {criterion.default:g}"
                               + (", a fraction: 0.01 = 1 point)" if criterion.unit == "points" else ")"))
    parser.add_argument("--resamples", type=int, default=ReportSettings.resamples, metavar="N",
                        help="bootstrap resamples for the intervals (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=ReportSettings.seed, metavar="N",
                        help="seed of the sample and of the resamples (default: %(default)s)")
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
                        help="score a face needs to count as found: MTFL, face recall and the regression "
                             "list (default: %(default)s)")
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
    """Build and write the report, print the verdicts and where it is; the exit code follows the
    worst verdict (gate.EXIT_CODES)."""
    from dataclasses import replace

    from kpnet_edge.artifacts.manifest import load_manifest
    from kpnet_edge.datapaths import data_root
    from kpnet_edge.reporting.build import DEFAULT_PARAMS, ReportSettings, build_report, write_report
    from kpnet_edge.reporting.gate import CRITERIA, load_gate_config
    from kpnet_edge.reporting.models import report_models, resolve_weights
    from kpnet_edge.reporting.peers import DEFAULT_RESULTS
    from kpnet_edge.reporting.sections import summary_lines, verdict_lines

    _check(args)
    sweep_sizes = _sizes(args.calib_sweep)
    overrides = {c.name: getattr(args, c.name) for c in CRITERIA if getattr(args, c.name) is not None}
    gate = load_gate_config(args.gate, overrides)
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
        rounds=args.rounds,
        threads=args.threads,
        calib_sweep=sweep_sizes,
        calib=args.calib,
        peers=None if args.peers is None else (args.peers or str(DEFAULT_RESULTS)),
        gate=gate,
        full=args.full,
        input_size=args.input_size,
        resamples=args.resamples,
        seed=args.seed,
    )
    models = _chosen(report_models(args.model, manifest, weights, args.threads), args.models, args.model)
    engine = {}
    if args.engine == "ray":
        from kpnet_edge.scale.report import ray_collector  # Ray is imported only here

        engine["collector"] = ray_collector(args.ray_address, args.threads)
    report = build_report(settings, models, manifest, progress=True, **engine)
    written = write_report(report, args.out)
    gate_result = report.data["gate"]
    for line in summary_lines(report.data) + verdict_lines(report.data):
        if line != gate_result["message"]:  # said last, on stderr when it fails
            print(line)
    print(f"report written to {written['report.html'].resolve()} (and report.md, report.json beside it); "
          f"{report.data['run_seconds']:.0f} s")
    print(gate_result["message"], file=sys.stdout if gate_result["passed"] else sys.stderr)
    return gate_result["exit_code"]


def _check(args: argparse.Namespace) -> None:
    counts = ((args.limit, "--limit"), (args.repeats, "--repeats"), (args.threads, "--threads"),
              (args.rounds, "--rounds"), (args.resamples, "--resamples"))
    for value, flag in counts:
        if value is not None and value < 1:
            raise KpnetError(f"{flag} must be at least 1, got {value}")
    fractions = ((args.proposal_threshold, "--proposal-threshold"),
                 (args.score_threshold, "--score-threshold"),
                 (args.operating_score, "--operating-score"))
    for value, flag in fractions:
        if not 0.0 <= value <= 1.0:
            raise KpnetError(f"{flag} must lie in [0, 1], got {value}")
    if args.ap_drop is not None and not 0.0 <= args.ap_drop < 1.0:
        raise KpnetError(f"--max-drop is an AP drop in [0, 1) (0.01 = 1 point), got {args.ap_drop}")
    if args.moved_px < 0:
        raise KpnetError(f"--moved-px must not be negative, got {args.moved_px}")
    check_output_folder(args.out, "--out")


def _chosen(models: list, keys: str | None, folder: Path) -> list:
    """The reference and the --models the user named (all when None), in the folder's order."""
    if not keys:
        return models
    wanted = [key.strip() for key in keys.split(",") if key.strip()]
    known = [model.key for model in models[1:]]
    unknown = [key for key in wanted if key not in known]
    if unknown or not wanted:
        raise KpnetError(f"--models {keys}: {', '.join(unknown) or 'nothing'} not in {folder}'s manifest "
                         f"(it has {', '.join(known) or 'no model'})")
    return [models[0], *(model for model in models[1:] if model.key in wanted)]


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

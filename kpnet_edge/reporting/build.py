"""Build a report: run every model over the evaluation sets, score and time them, and assemble the
JSON-ready dict, its figures and the regression thumbnails; write_report puts them on disk."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kpnet_edge import config
from kpnet_edge.atomic import atomic_write_bytes, atomic_write_text
from kpnet_edge.artifacts.manifest import Manifest
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import read_image
from kpnet_edge.postprocess import PostprocessParams
from kpnet_edge.reporting import plots
from kpnet_edge.reporting.accuracy import accuracy_drop, accuracy_samples, attach_intervals, model_accuracy
from kpnet_edge.reporting.bootstrap import CONFIDENCE, RESAMPLES, Resamples
from kpnet_edge.reporting.environment import machine, tool_versions
from kpnet_edge.reporting.gate import GateConfig, model_verdict, overall
from kpnet_edge.reporting.latency import ROUNDS, WARMUP, latency_ratio, measure_interleaved
from kpnet_edge.reporting.models import ReportModel
from kpnet_edge.reporting.regressions import worst_first
from kpnet_edge.reporting.run import MTFL_SIZE, WIDER_NAME, EvalSets, ModelRun, collect, probe_seconds
from kpnet_edge.reporting.thumbnails import Thumbnails, regression_thumbnail

SCHEMA = "kpnet-edge/report"
SCHEMA_VERSION = 1

DEFAULT_PARAMS = PostprocessParams(proposal_threshold=0.05, score_threshold=0.02)
"""Low thresholds, so AP sees the whole precision-recall curve (benchmarks/peers.py's KPNet row)."""

LATENCY_PARAMS = PostprocessParams()
"""End-to-end latency is timed at the `detect` defaults, what a deployment runs, not at the low
thresholds the accuracy pass uses to trace whole PR curves (those leave many more proposals)."""

MAX_THUMBNAILS = 24
"""Regression thumbnails per model in the HTML, the most harmful changes first."""

MAX_REGRESSIONS = 100
"""Changed images kept per model in report.json, ranked by harm (the counts cover them all)."""

DEFAULT_SAMPLE = {"wider": None, "mtfl": 200}
"""Images the default run scores (`--full` takes every image): all of WIDER-val-200-dev (100
images, 192 faces >= 24 px: the AP and recall gates need every one) and a seeded sample of 200 of
the 2,995 MTFL test crops, sized so a report on the reference and two INT8 files takes about a
minute on an idle 2-core machine (report.json records the run's wall and CPU seconds)."""

STAGE_COST = 2.0
"""A WIDER image costs about this many times a plain detection per candidate (the stage-by-stage
comparison), as measured; only the up-front estimate uses it."""


@dataclass(frozen=True)
class ReportSettings:
    """What to measure and how; models are passed to build_report separately (models.py)."""

    model_dir: Path
    data: Path
    weights: Path
    limit: int | None = None
    params: PostprocessParams = DEFAULT_PARAMS
    operating_score: float = PostprocessParams.score_threshold
    """Faces scoring below this do not count on MTFL or in the regression list (default: the
    detector's own operating score, as benchmarks/peers.py uses for the KPNet row)."""
    moved_px: float = 2.0
    repeats: int = 40
    rounds: int = ROUNDS
    threads: int | None = None
    calib_sweep: tuple[int, ...] = ()
    calib: Path | None = None
    peers: str | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    full: bool = False
    input_size: int | None = None
    """Letterbox canvas side for every model (default: the convert folder's)."""
    resamples: int = RESAMPLES
    seed: int = 0


@dataclass
class Report:
    """data: the JSON document; plots: file name -> PNG; thumbnails: model key -> [(item, JPEG)]."""

    data: dict
    plots: dict[str, bytes] = field(default_factory=dict)
    thumbnails: Thumbnails = field(default_factory=dict)


def build_report(settings: ReportSettings, models: Sequence[ReportModel], manifest: Manifest,
                 progress: bool = False, collector: Callable[..., dict[str, ModelRun]] = collect) -> Report:
    """Measure `models` (the first one is the reference), judge each candidate, assemble the report.

    Inputs that can fail (data, calibration folder, peers file) are checked before the long runs;
    the sample size and an estimate of the run time are said before the accuracy pass starts.
    collector runs the accuracy pass: run.collect, or Ray tasks (kpnet_edge.scale.report).
    """
    say = _say if progress else (lambda text: None)
    started, cpu_started = time.perf_counter(), time.process_time()
    every = EvalSets.load(settings.data, settings.limit)
    sets = every if settings.full else every.sample(DEFAULT_SAMPLE["wider"], DEFAULT_SAMPLE["mtfl"], settings.seed)
    sweep_source = None
    if settings.calib_sweep:
        from kpnet_edge.reporting.sweep import calibration_source

        sweep_source = calibration_source(manifest, settings.calib)
    peers = None
    if settings.peers is not None:
        from kpnet_edge.reporting.peers import load_peers

        peers = load_peers(settings.peers, settings.data, settings.limit, progress)
    reference = models[0]
    host = machine()
    canvas = canvas_size(manifest, settings.input_size)
    # Only a non-default canvas is passed on, so collectors written for 256 px keep working.
    sized = {} if canvas == config.INPUT_SIZE else {"canvas_size": canvas}
    runtimes = {model.key: model.open(1) for model in models}
    say(_plan(settings, sets, every, models, probe_seconds(runtimes, sets, settings.params, canvas)))
    runs = collector(models, sets, settings.params, reference, settings.operating_score,
                     settings.moved_px, progress, runtimes, **sized)
    rows = [_model_row(model, runs[model.key], sets, settings, model is reference) for model in models]
    for row in rows[1:]:
        row["drop"] = accuracy_drop(rows[0]["accuracy"], row["accuracy"])
    draws = Resamples.draw(len(sets.wider), len(sets.mtfl_paths), settings.resamples, settings.seed)
    attach_intervals(rows, {m.key: accuracy_samples(runs[m.key], sets, settings.operating_score, draws)
                            for m in models})
    _measure_latency(models, rows, runtimes, sets, settings, say, canvas)
    verdicts = {row["key"]: model_verdict(row, settings.gate) for row in rows[1:]}
    for row in rows[1:]:
        row["verdict"] = verdicts[row["key"]]
    sweep = None
    if sweep_source is not None:
        from kpnet_edge.reporting.sweep import calibration_sweep

        sweep = calibration_sweep(settings.calib_sweep, settings.weights, manifest, sweep_source, sets,
                                  settings.params, settings.operating_score, progress)
    data = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {**_settings_record(settings, sets, every, reference), "input_size": canvas},
        "environment": {"machine": host, "tools": tool_versions(), "manifest_tools": manifest.tools},
        "reference": reference.key,
        "models": rows,
        "calibration_sweep": sweep,
        "peers": peers,
        "gate": {**overall(verdicts), "config": settings.gate.to_dict(), "confidence": CONFIDENCE},
        "notes": _notes(settings, sets, every, manifest, host, rows),
        "run_seconds": None,
        "cpu_seconds": None,
    }
    say("drawing figures")
    report = Report(data, _figures(data), _thumbnails(rows))
    data["run_seconds"] = round(time.perf_counter() - started, 1)
    data["cpu_seconds"] = round(time.process_time() - cpu_started, 1)
    return report


def _plan(settings: ReportSettings, sets: EvalSets, every: EvalSets, models: Sequence[ReportModel],
          seconds: dict[str, float]) -> str:
    """The line said before the long part: what is scored, and how long it should take."""
    per_image = sum(seconds.values())
    candidates = sum(seconds[m.key] for m in models[1:])
    accuracy = per_image * (len(sets.wider) + len(sets.mtfl_paths)) + (STAGE_COST - 1) * candidates * len(sets.wider)
    batches = sorted({b for m in models for b in m.batches})
    timing = sum(2 * (settings.repeats + 2 * WARMUP) * seconds[m.key] * b for m in models for b in m.batches)
    scope = ("every image (--full)" if settings.full else
             f"a seeded sample ({len(sets.wider)} of {len(every.wider)} WIDER images, {len(sets.mtfl_paths)} of "
             f"{len(every.mtfl_paths)} MTFL crops; --full for all)")
    return (f"{len(models)} models on {scope}, latency at batch {', '.join(map(str, batches))}; "
            f"estimated {accuracy + timing:.0f} s ({accuracy:.0f} s accuracy, {timing:.0f} s latency)")


def canvas_size(manifest: Manifest, requested: int | None) -> int:
    """The one letterbox side every model runs at: the convert folder's models' (the reference
    follows them), or `requested` (--input-size), which must then match them. Raises KpnetError
    before any work when they cannot agree."""
    from kpnet_edge.preprocess import check_input_size

    sizes = sorted({entry.input_size for entry in manifest.models})
    if len(sizes) > 1:
        raise KpnetError(f"the convert folder's models take different input sizes {sizes}; report one at a time "
                         "with --models")
    if requested is not None:
        try:
            check_input_size(requested)
        except ValueError as error:
            raise KpnetError(f"--input-size: {error}") from None
        if sizes and sizes != [requested]:
            raise KpnetError(f"--input-size {requested}: the convert folder's models take {sizes[0]} x {sizes[0]} "
                             "canvases; convert at that size (kpnet-edge convert --input-size) to compare there")
        return requested
    return sizes[0] if sizes else config.INPUT_SIZE


def _measure_latency(models: Sequence[ReportModel], rows: list[dict], opened: dict, sets: EvalSets,
                     settings: ReportSettings, say: Callable[[str], None], canvas: int) -> None:
    """Every batch size's models timed together, interleaved in rounds; the batch-1 runtimes of
    the accuracy pass are reused. Fills row["latency"] and each candidate's "latency_ratio"."""
    batches = sorted({b for m in models for b in m.batches})
    images = [read_image(record.path) for record in (sets.wider or [])[: max(batches)]]
    if not images:
        images = [read_image(path) for path in sets.mtfl_paths[: max(batches)]]
    by_key = {row["key"]: row for row in rows}
    for row in rows:
        row["latency"] = []
    for batch in batches:
        chosen = [m for m in models if batch in m.batches]
        say(f"timing {len(chosen)} models at batch {batch}: {settings.rounds} interleaved rounds")
        runtimes = {m.key: opened[m.key] if batch == 1 else m.open(batch) for m in chosen}
        batch_images = [images[i % len(images)] for i in range(batch)]
        measured = measure_interleaved(runtimes, batch_images, LATENCY_PARAMS, settings.repeats, settings.rounds,
                                       canvas)
        for key, figures in measured.items():
            figures["runtime"]["threads_requested"] = settings.threads
            by_key[key]["latency"].append(figures)
    reference = rows[0]
    for row in rows[1:]:
        ours, theirs = (next((m for m in r["latency"] if m["batch"] == 1), None) for r in (row, reference))
        row["latency_ratio"] = latency_ratio(ours, theirs, seed=settings.seed) if ours and theirs else None


def _model_row(model: ReportModel, run: ModelRun, sets: EvalSets, settings: ReportSettings,
               is_reference: bool) -> dict:
    """A model's row without latency; drop is filled in against the reference's row."""
    return {
        "key": model.key,
        "role": "reference" if is_reference else "candidate",
        "format": model.format,
        "precision": model.precision,
        "quantized": model.quantized,
        "file": model.file,
        "size_bytes": model.size_bytes,
        "batches": list(model.batches),
        "accuracy": model_accuracy(run, sets, settings.operating_score),
        "drop": None,
        "stages": run.stages.result() if run.stages is not None else None,
        "regressions": worst_first(run.stages.regressions)[:MAX_REGRESSIONS] if run.stages is not None else [],
        "regressions_total": len(run.stages.regressions) if run.stages is not None else 0,
        "verdict": None,
        "latency_ratio": None,
    }


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """report.json, report.md, report.html (self-contained) and the PNGs into `out`."""
    from kpnet_edge.reporting.html import render_html
    from kpnet_edge.reporting.markdown import render_markdown

    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, png in report.plots.items():
        atomic_write_bytes(out / name, png)
        written[name] = out / name
    document = json.dumps(_json_safe(report.data), indent=1, allow_nan=False)
    atomic_write_text(out / "report.json", document + "\n")
    atomic_write_text(out / "report.md", render_markdown(report.data, list(report.plots)))
    atomic_write_text(out / "report.html", render_html(report.data, report.plots, report.thumbnails))
    written.update({name: out / name for name in ("report.json", "report.md", "report.html")})
    return written


def _settings_record(settings: ReportSettings, sets: EvalSets, every: EvalSets, reference: ReportModel) -> dict:
    return {
        "model_dir": str(settings.model_dir),
        "reference": {"key": reference.key, "weights": str(settings.weights)},
        "data": str(settings.data),
        "wider": {"name": WIDER_NAME, "images": len(sets.wider), "of": len(every.wider),
                  "note": "not a WIDER FACE score"},
        "mtfl": {"name": "MTFL test", "images": len(sets.mtfl_paths), "of": len(every.mtfl_paths),
                 "upscaled_to": MTFL_SIZE},
        "full": settings.full,
        "sample_seed": settings.seed,
        "bootstrap": {"resamples": settings.resamples, "seed": settings.seed, "confidence": CONFIDENCE,
                      "paired": True},
        "limit": settings.limit,
        "postprocess": _thresholds(settings.params),
        "latency_postprocess": _thresholds(LATENCY_PARAMS),
        "operating_score": settings.operating_score,
        "moved_px": settings.moved_px,
        "repeats": settings.repeats,
        "rounds": settings.rounds,
        "warmup": WARMUP,
        "threads": settings.threads,
        "calib_sweep": list(settings.calib_sweep),
    }


def _thresholds(params: PostprocessParams) -> dict:
    return {k: v for k, v in asdict(params).items() if k != "template"}


def _notes(settings: ReportSettings, sets: EvalSets, every: EvalSets, manifest: Manifest, host: dict,
           rows: list[dict]) -> list[str]:
    notes = []
    if settings.limit is not None:
        notes.append(f"--limit {settings.limit}: a quick run on the first images only, not the full sets.")
    if not settings.full and len(sets.mtfl_paths) + len(sets.wider) < len(every.mtfl_paths) + len(every.wider):
        notes.append(f"A sample: {len(sets.wider)} of {len(every.wider)} WIDER images and {len(sets.mtfl_paths)} "
                     f"of {len(every.mtfl_paths)} MTFL crops; `--full` scores them all and narrows the intervals.")
    load = (host["load_average"] or [0.0])[0]
    if load > 0.5 * host["usable_cores"]:
        notes.append(f"The machine was busy (load {load:.1f} on {host['usable_cores']} cores) when the run "
                     "started: timings are slower and noisier than on an idle machine.")
    for row in rows:
        for measured in row["latency"]:
            if not measured["consistent"]:
                notes.append(f"{row['key']} at batch {measured['batch']}: end-to-end p50 came out below the "
                             "model-only p50, which only a change in the machine's load can cause; its timings "
                             "are not trustworthy.")
    calibration = manifest.calibration or {}
    source = Path(calibration.get("source") or "")
    if source.is_dir():
        calibrated = {(source / name).resolve() for name in calibration.get("files", [])}
        evaluated = {record.path.resolve() for record in sets.wider}
        overlap = len(calibrated & evaluated)
        if overlap:
            notes.append(f"{overlap} of the evaluation images were INT8 calibration images: INT8 accuracy "
                         "may be optimistic.")
    return notes


def _figures(data: dict) -> dict[str, bytes]:
    rows = data["models"]
    figures = {
        "pr_curves.png": plots.pr_curves(rows, data["peers"]),
        "accuracy_latency.png": plots.accuracy_latency(rows),
    }
    if any(row["stages"] is not None for row in rows):
        figures["head_sqnr.png"] = plots.head_sqnr(rows)
    if data["calibration_sweep"]:
        sweep, reference = data["calibration_sweep"], rows[0]["accuracy"]
        figures["calibration_sweep.png"] = plots.calibration_sweep(sweep, reference)
    return figures


def _thumbnails(rows: list[dict]) -> Thumbnails:
    thumbnails = {}
    for row in rows:
        worst = row["regressions"][:MAX_THUMBNAILS]  # ranked by _model_row
        thumbnails[row["key"]] = [(item, regression_thumbnail(item)) for item in worst]
    return thumbnails


def _json_safe(value: object) -> object:
    """Plain JSON: numpy scalars as numbers, non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _say(text: str) -> None:
    print(f"{text} ...", file=sys.stderr, flush=True)

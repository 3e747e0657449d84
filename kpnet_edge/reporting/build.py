"""Build a report: run every model over the evaluation sets, score and time them, and assemble the
JSON-ready dict, its figures and the regression thumbnails; write_report puts them on disk."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kpnet_edge.atomic import atomic_write_bytes, atomic_write_text
from kpnet_edge.artifacts.manifest import Manifest
from kpnet_edge.imageio import read_image
from kpnet_edge.postprocess import PostprocessParams
from kpnet_edge.reporting import plots
from kpnet_edge.reporting.accuracy import accuracy_drop, model_accuracy
from kpnet_edge.reporting.environment import machine, tool_versions
from kpnet_edge.reporting.gate import check_gate
from kpnet_edge.reporting.latency import WARMUP, measure_latency
from kpnet_edge.reporting.models import ReportModel
from kpnet_edge.reporting.regressions import worst_first
from kpnet_edge.reporting.run import MTFL_SIZE, WIDER_NAME, EvalSets, ModelRun, collect
from kpnet_edge.reporting.thumbnails import Thumbnails, regression_thumbnail

SCHEMA = "kpnet-edge/report"
SCHEMA_VERSION = 1

DEFAULT_PARAMS = PostprocessParams(proposal_threshold=0.05, score_threshold=0.02)
"""Low thresholds, so AP sees the whole precision-recall curve (benchmarks/peers.py's KPNet row)."""

LATENCY_PARAMS = PostprocessParams()
"""End-to-end latency is timed at the `detect` defaults, what a deployment runs, not at the low
thresholds the accuracy pass uses to trace whole PR curves (those leave many more proposals)."""

MAX_THUMBNAILS = 24
"""Regression thumbnails per model in the HTML, the images with the most changes first."""


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
    repeats: int = 100
    threads: int | None = None
    calib_sweep: tuple[int, ...] = ()
    calib: Path | None = None
    peers: str | None = None
    max_drop: float | None = None


@dataclass
class Report:
    """data: the JSON document; plots: file name -> PNG; thumbnails: model key -> [(item, JPEG)]."""

    data: dict
    plots: dict[str, bytes] = field(default_factory=dict)
    thumbnails: Thumbnails = field(default_factory=dict)


def build_report(settings: ReportSettings, models: Sequence[ReportModel], manifest: Manifest,
                 progress: bool = False, collector: Callable[..., dict[str, ModelRun]] = collect) -> Report:
    """Measure `models` (the first one is the reference) and assemble the report.

    Inputs that can fail (data, calibration folder, peers file) are checked before the long runs,
    and the gate right after the accuracy pass, so a bad run stops early.
    collector runs the accuracy pass: run.collect, or Ray tasks (kpnet_edge.scale.report).
    """
    say = _say if progress else (lambda text: None)
    sets = EvalSets.load(settings.data, settings.limit)
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
    say(f"running {len(models)} models on {len(sets.wider)} WIDER images, {len(sets.mtfl_paths)} MTFL crops")
    runs = collector(models, sets, settings.params, reference, settings.operating_score,
                     settings.moved_px, progress)
    rows = [_model_row(model, runs[model.key], sets, settings, model is reference) for model in models]
    for row in rows[1:]:
        row["drop"] = accuracy_drop(rows[0]["accuracy"], row["accuracy"])
    gate = check_gate(rows, settings.max_drop).to_dict() if settings.max_drop is not None else None
    largest_batch = max(b for m in models for b in m.batches)
    latency_images = [read_image(record.path) for record in sets.wider[:largest_batch]]
    for model, row in zip(models, rows):
        say(f"timing {model.key} at batch {', '.join(map(str, model.batches))}")
        row["latency"] = [_latency(model, batch, latency_images, settings) for batch in model.batches]
    sweep = None
    if sweep_source is not None:
        from kpnet_edge.reporting.sweep import calibration_sweep

        sweep = calibration_sweep(settings.calib_sweep, settings.weights, manifest, sweep_source, sets,
                                  settings.params, settings.operating_score, progress)
    data = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": _settings_record(settings, sets, reference),
        "environment": {"machine": host, "tools": tool_versions(), "manifest_tools": manifest.tools},
        "reference": reference.key,
        "models": rows,
        "calibration_sweep": sweep,
        "peers": peers,
        "gate": gate,
        "notes": _notes(settings, sets, manifest, host),
    }
    say("drawing figures")
    return Report(data, _figures(data), _thumbnails(rows))


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
        "regressions": run.stages.regressions if run.stages is not None else [],
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


def _latency(model: ReportModel, batch: int, images: Sequence[np.ndarray], settings: ReportSettings) -> dict:
    batch_images = [images[i % len(images)] for i in range(batch)]
    measured = measure_latency(model.open(batch), batch_images, LATENCY_PARAMS, settings.repeats)
    measured["runtime"]["threads_requested"] = settings.threads
    return measured


def _settings_record(settings: ReportSettings, sets: EvalSets, reference: ReportModel) -> dict:
    return {
        "model_dir": str(settings.model_dir),
        "reference": {"key": reference.key, "weights": str(settings.weights)},
        "data": str(settings.data),
        "wider": {"name": WIDER_NAME, "images": len(sets.wider), "note": "not a WIDER FACE score"},
        "mtfl": {"name": "MTFL test", "images": len(sets.mtfl_paths), "upscaled_to": MTFL_SIZE},
        "limit": settings.limit,
        "postprocess": _thresholds(settings.params),
        "latency_postprocess": _thresholds(LATENCY_PARAMS),
        "operating_score": settings.operating_score,
        "moved_px": settings.moved_px,
        "repeats": settings.repeats,
        "warmup": WARMUP,
        "threads": settings.threads,
        "calib_sweep": list(settings.calib_sweep),
        "max_drop": settings.max_drop,
    }


def _thresholds(params: PostprocessParams) -> dict:
    return {k: v for k, v in asdict(params).items() if k != "template"}


def _notes(settings: ReportSettings, sets: EvalSets, manifest: Manifest, host: dict) -> list[str]:
    notes = []
    if settings.limit is not None:
        notes.append(f"--limit {settings.limit}: a quick run on the first images only, not the full sets.")
    load = (host["load_average"] or [0.0])[0]
    if load > 0.5 * host["usable_cores"]:
        notes.append(f"The machine was busy (load {load:.1f} on {host['usable_cores']} cores) when the run "
                     "started: timings are slower and noisier than on an idle machine.")
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
        worst = worst_first(row["regressions"])[:MAX_THUMBNAILS]
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

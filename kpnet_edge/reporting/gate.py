"""The ship gate: one verdict per candidate model over four figures, each judged on its paired
confidence interval against a bound (MMDeploy's regression configs in spirit: a metric, a
tolerance, written where the reader sees it).

A figure PASSes when its whole interval lies within the bound, FAILs when its whole interval lies
beyond it, and is "not decidable on this data" when the interval straddles the bound (more images,
`--full`, may settle it). A model fails when any figure fails; it passes only when all pass.

Bounds come from the defaults below, then a YAML file (`--gate FILE`), then command-line flags:

    # kpnet-edge report gate: every bound is "at most"; null leaves a figure ungated
    bounds:
      ap_drop: 0.01          # AP50 drop, faces >= 24 px (0.01 = 1 point)
      recall_drop: 0.02      # face recall drop at the operating score, faces >= 24 px
      nme_increase: 0.005    # MTFL inter-ocular NME increase (0.005 = 0.5 points)
      latency_ratio: 1.0     # end-to-end p50 at batch 1 / the reference's
    models:                  # optional per-model bounds, by report key
      tflite-int8:
        latency_ratio: 1.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kpnet_edge.errors import KpnetError
from kpnet_edge.reporting.accuracy import GATE_MIN_SIZE

PASS = "PASS"
FAIL = "FAIL"
UNDECIDED = "not decidable on this data"
NOT_GATED = "not gated"

EXIT_CODES = {PASS: 0, FAIL: 3, UNDECIDED: 4}
"""`kpnet-edge report` exits with the worst model's verdict (2 stays a usage or data error)."""
EXIT_CODE = EXIT_CODES[FAIL]


@dataclass(frozen=True)
class Criterion:
    """One gated figure: name (config key and flag stem), what it is, its default bound, and how
    to print its values ("points": fractions shown x100; "ratio": as they are)."""

    name: str
    label: str
    default: float
    unit: str
    flag: str


CRITERIA = (
    Criterion("ap_drop", f"AP50 drop, faces >= {GATE_MIN_SIZE} px", 0.01, "points", "--max-drop"),
    Criterion("recall_drop", f"face recall drop at the operating score, faces >= {GATE_MIN_SIZE} px", 0.02,
              "points", "--max-recall-drop"),
    Criterion("nme_increase", "MTFL NME increase", 0.005, "points", "--max-nme-increase"),
    Criterion("latency_ratio", "end-to-end p50 latency / reference's, batch 1", 1.0, "ratio",
              "--max-latency-ratio"),
)
BY_NAME = {criterion.name: criterion for criterion in CRITERIA}


@dataclass(frozen=True)
class GateConfig:
    """bounds: criterion -> bound (None: not gated); per_model: model key -> its own bounds;
    source: where they came from, for the report."""

    bounds: dict[str, float | None] = field(default_factory=lambda: {c.name: c.default for c in CRITERIA})
    per_model: dict[str, dict[str, float | None]] = field(default_factory=dict)
    source: str = "defaults"

    def bound(self, model: str, criterion: str) -> float | None:
        return self.per_model.get(model, {}).get(criterion, self.bounds.get(criterion))

    def to_dict(self) -> dict:
        return {"bounds": dict(self.bounds), "models": {k: dict(v) for k, v in self.per_model.items()},
                "source": self.source}


def load_gate_config(path: Path | None, overrides: Mapping[str, float | None] | None = None) -> GateConfig:
    """The defaults, updated by the YAML file at `path` and then by `overrides` (flags; those
    replace per-model bounds too). Raises KpnetError naming the file and key on any bad entry."""
    bounds: dict[str, float | None] = {c.name: c.default for c in CRITERIA}
    per_model: dict[str, dict[str, float | None]] = {}
    source = "defaults"
    if path is not None:
        document = _read_yaml(path)
        unknown = sorted(set(document) - {"bounds", "models"})
        if unknown:
            raise KpnetError(f"{path}: unknown top-level key(s) {unknown}; expected bounds and models")
        bounds.update(_bounds(document.get("bounds") or {}, path, "bounds"))
        models = document.get("models") or {}
        if not isinstance(models, dict):
            raise KpnetError(f"{path}: models must map model keys (e.g. openvino-int8) to bounds")
        per_model = {str(key): _bounds(value or {}, path, f"models.{key}") for key, value in models.items()}
        source = str(path)
    for name, value in (overrides or {}).items():
        checked = _bound(value, f"{BY_NAME[name].flag}", name)
        bounds[name] = checked
        for model_bounds in per_model.values():
            model_bounds.pop(name, None)
        source += f", {BY_NAME[name].flag} {value:g}" if value is not None else ""
    return GateConfig(bounds, per_model, source)


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise KpnetError(f"{path}: cannot read the gate file ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise KpnetError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise KpnetError(f"{path}: a gate file is a mapping with bounds (and models), got {type(document).__name__}")
    return document


def _bounds(section: object, path: Path, where: str) -> dict[str, float | None]:
    if not isinstance(section, dict):
        raise KpnetError(f"{path}: {where} must map criteria to bounds, got {type(section).__name__}")
    unknown = sorted(set(map(str, section)) - set(BY_NAME))
    if unknown:
        raise KpnetError(f"{path}: {where}: unknown criteria {unknown} (known: {', '.join(BY_NAME)})")
    return {name: _bound(value, f"{path}: {where}.{name}", name) for name, value in section.items()}


def _bound(value: object, where: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise KpnetError(f"{where} must be a number >= 0 (or null to leave {name} ungated), got {value!r}")
    if BY_NAME[name].unit == "points" and value >= 1:
        raise KpnetError(f"{where} is a fraction (0.01 = 1 point), got {value!r}")
    return float(value)


def judge(interval: Sequence[float] | None, bound: float | None) -> str:
    """PASS when the interval lies within the bound, FAIL when wholly beyond it, else UNDECIDED
    (an undefined figure is undecided, never passed)."""
    if bound is None:
        return NOT_GATED
    if interval is None:
        return UNDECIDED
    low, high = interval
    if high <= bound:
        return PASS
    if low > bound:
        return FAIL
    return UNDECIDED


def gate_figures(row: dict) -> dict[str, tuple[float | None, list[float] | None]]:
    """criterion -> (value, interval) of one candidate's report row."""
    wider = row["drop"]["wider"][f"{GATE_MIN_SIZE:g}"]
    mtfl = row["drop"]["mtfl"]
    latency = row.get("latency_ratio") or {}
    return {
        "ap_drop": (wider["ap"], wider.get("ap_ci")),
        "recall_drop": (wider.get("recall_at_score"), wider.get("recall_at_score_ci")),
        "nme_increase": (mtfl["nme_increase"], mtfl.get("nme_increase_ci")),
        "latency_ratio": (latency.get("value"), latency.get("interval")),
    }


def model_verdict(row: dict, config: GateConfig) -> dict:
    """{"verdict", "checks": {criterion: {"value", "interval", "bound", "result"}}} of one candidate."""
    checks = {}
    for name, (value, interval) in gate_figures(row).items():
        bound = config.bound(row["key"], name)
        checks[name] = {"value": value, "interval": interval, "bound": bound, "result": judge(interval, bound)}
    results = {check["result"] for check in checks.values()}
    verdict = FAIL if FAIL in results else UNDECIDED if UNDECIDED in results else PASS
    return {"verdict": verdict, "checks": checks}


def overall(verdicts: Mapping[str, dict]) -> dict:
    """The run's verdict (the worst model's), its exit code and one line naming each model's."""
    order = (PASS, UNDECIDED, FAIL)
    worst = max((v["verdict"] for v in verdicts.values()), key=order.index, default=PASS)
    named = "; ".join(f"{key} {v['verdict']}" for key, v in verdicts.items()) or "no candidate model"
    failing = [f"{key}: {_reasons(v)}" for key, v in verdicts.items() if v["verdict"] != PASS]
    message = f"verdict {worst}: {named}" + (f" ({'; '.join(failing)})" if failing else "")
    return {"verdict": worst, "exit_code": EXIT_CODES[worst], "passed": worst == PASS, "message": message}


def _reasons(verdict: dict) -> str:
    return ", ".join(f"{BY_NAME[name].label} {describe(check, name)}" for name, check in verdict["checks"].items()
                     if check["result"] in (FAIL, UNDECIDED))


def describe(check: dict, criterion: str) -> str:
    """'+1.20 [+0.40, +2.10] vs bound 1.00 points: FAIL'-style text of one check."""
    unit = BY_NAME[criterion].unit
    interval = check["interval"]
    shown = _format(check["value"], unit)
    if interval is not None:
        shown += f" [{_format(interval[0], unit)}, {_format(interval[1], unit)}]"
    bound = check["bound"]
    limit = "" if bound is None else f" vs bound {_format(bound, unit, signed=False)}"
    return f"{shown}{limit}: {check['result']}"


def _format(value: float | None, unit: str, signed: bool = True) -> str:
    """Fractions as percentage points (signed figures, unsigned bounds), ratios as 1.23x."""
    if value is None:
        return "-"
    if unit == "ratio":
        return f"{value:.2f}x"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f} points"

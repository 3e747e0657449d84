"""The report's outline, shared by the Markdown and HTML writers: the headline answers, then the
sections in order, each a list of tables and figure file names."""

from __future__ import annotations

from collections.abc import Sequence

from kpnet_edge.reporting import tables
from kpnet_edge.reporting.accuracy import GATE_MIN_SIZE
from kpnet_edge.reporting.gate import CRITERIA, describe
from kpnet_edge.reporting.tables import Table

Part = Table | str
"""A table or a figure's file name (e.g. "pr_curves.png")."""


def summary_lines(report: dict) -> list[str]:
    """The evaluation data, one line per candidate (AP and NME change, p50 latency and speed-up
    over the reference, size on disk), the gate's verdict, the notes."""
    settings, rows = report["settings"], report["models"]
    reference = rows[0]
    gate_key = f"{GATE_MIN_SIZE:g}"
    wider, mtfl = settings["wider"], settings["mtfl"]
    scope = "every image" if settings.get("full") else "a seeded sample"
    lines = [f"Reference: {reference['key']} ({settings['reference']['weights']}); "
             f"models from {settings['model_dir']}.",
             f"Data ({scope}): {wider['name']} ({wider['images']} of {wider.get('of', wider['images'])} images, "
             f"not a WIDER FACE score) and MTFL test ({mtfl['images']} of {mtfl.get('of', mtfl['images'])} crops)."]
    for row in rows[1:]:
        ap_drop = row["drop"]["wider"][gate_key]
        nme = row["drop"]["mtfl"]
        model = _speed(row, reference, "model_ms", "model")
        end_to_end = _speed(row, reference, "end_to_end_ms", "end to end")
        sizes = f"{row['size_bytes'] / 1e6:.2f} MB (reference {reference['size_bytes'] / 1e6:.2f} MB)"
        verdict = f"{row['verdict']['verdict']}: " if row.get("verdict") else ""
        lines.append(f"{row['key']}: {verdict}AP50 >= {gate_key} px {_signed(ap_drop['ap'], 'drop', ap_drop.get('ap_ci'))}, "
                     f"NME {_signed(nme['nme_increase'], 'increase', nme.get('nme_increase_ci'))}; {model}, "
                     f"{end_to_end} at batch 1; {sizes}.")
    lines.append(report["gate"]["message"])
    return lines + list(report["notes"])


def verdict_lines(report: dict) -> list[str]:
    """One line per candidate and gated figure: value [interval] vs bound: result."""
    lines = []
    for row in report["models"][1:]:
        checks = row["verdict"]["checks"]
        parts = [f"{c.label} {describe(checks[c.name], c.name)}" for c in CRITERIA]
        lines.append(f"{row['key']} {row['verdict']['verdict']}: " + "; ".join(parts))
    return lines


def sections(report: dict, figures: Sequence[str]) -> list[tuple[str, list[Part]]]:
    """(title, parts) in reading order; figures not in `figures` are left out."""
    outline: list[tuple[str, list[Part]]] = [
        ("Verdict", [tables.verdict_table(report)]),
        ("Accuracy", [tables.accuracy_table(report), tables.drop_table(report), "pr_curves.png"]),
        ("Where the error comes from",
         [tables.head_table(report), "head_sqnr.png", tables.decoding_table(report), tables.faces_table(report)]),
        ("Speed", [tables.latency_table(report), "accuracy_latency.png"]),
    ]
    if report["calibration_sweep"]:
        outline.append(("INT8 calibration-set size", [tables.sweep_table(report), "calibration_sweep.png"]))
    outline.append(("Machine and tools", [tables.environment_table(report)]))
    def shown(part: Part) -> bool:
        return isinstance(part, Table) or part in figures

    return [(title, [part for part in parts if shown(part)]) for title, parts in outline]


def _speed(row: dict, reference: dict, kind: str, label: str) -> str:
    """'model 9.3 ms (x1.55)': p50 milliseconds at batch 1 and the speed-up over the reference."""
    ms, ref_ms = (next((m[kind]["p50"] for m in r["latency"] if m["batch"] == 1), None)
                  for r in (row, reference))
    if not ms or not ref_ms:
        return f"{label} -"
    return f"{label} {ms:.1f} ms (x{ref_ms / ms:.2f})"


def _signed(value: float | None, word: str, interval: list[float] | None = None) -> str:
    if value is None:
        return "-"
    shown = f"{word} {100 * value:+.2f}"
    if interval is not None:
        shown += f" [{100 * interval[0]:+.2f}, {100 * interval[1]:+.2f}]"
    return shown + " points"


def change_summary(item: dict) -> str:
    """'2 true faces lost, 1 false positive removed, landmarks moved 3.1 px' for one changed image."""
    changes = item.get("changes")
    if changes is None:
        parts = [f"{len(item['lost'])} lost", f"{len(item['gained'])} gained"]
    else:
        names = {"true_faces_lost": "true faces lost", "new_false_positives": "new false positives",
                 "false_positives_removed": "false positives removed", "true_faces_gained": "true faces gained",
                 "unlabelled_lost": "unlabelled lost", "unlabelled_gained": "unlabelled gained"}
        parts = [f"{count} {names[kind]}" for kind, count in changes.items() if count]
    if item["moved"]:
        parts.append("landmarks moved " + ", ".join(f"{face['max_px']:.1f} px" for face in item["moved"]))
    return ", ".join(parts) or "no change"

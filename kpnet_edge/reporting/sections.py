"""The report's outline, shared by the Markdown and HTML writers: the headline answers, then the
sections in order, each a list of tables and figure file names."""

from __future__ import annotations

from collections.abc import Sequence

from kpnet_edge.reporting import tables
from kpnet_edge.reporting.accuracy import GATE_MIN_SIZE
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
    lines = [f"Reference: {reference['key']} ({settings['reference']['weights']}); "
             f"models from {settings['model_dir']}.",
             f"Data: {wider['name']} ({wider['images']} images, not a WIDER FACE score) and MTFL test "
             f"({mtfl['images']} crops)."]
    for row in rows[1:]:
        ap_drop = row["drop"]["wider"][gate_key]["ap"]
        nme = row["drop"]["mtfl"]["nme_increase"]
        model = _speed(row, reference, "model_ms", "model")
        end_to_end = _speed(row, reference, "end_to_end_ms", "end to end")
        sizes = f"{row['size_bytes'] / 1e6:.2f} MB (reference {reference['size_bytes'] / 1e6:.2f} MB)"
        lines.append(f"{row['key']}: AP50 >= {gate_key} px {_signed(ap_drop, 'drop')}, "
                     f"NME {_signed(nme, 'increase')}; {model}, {end_to_end} at batch 1; {sizes}.")
    if report["gate"] is not None:
        lines.append(report["gate"]["message"])
    return lines + list(report["notes"])


def sections(report: dict, figures: Sequence[str]) -> list[tuple[str, list[Part]]]:
    """(title, parts) in reading order; figures not in `figures` are left out."""
    outline: list[tuple[str, list[Part]]] = [
        ("Accuracy", [tables.accuracy_table(report), tables.drop_table(report), "pr_curves.png"]),
        ("Where the error comes from",
         [tables.head_table(report), "head_sqnr.png", tables.decoding_table(report)]),
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


def _signed(value: float | None, word: str) -> str:
    return "-" if value is None else f"{word} {100 * value:+.2f} points"

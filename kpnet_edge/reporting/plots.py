"""The report's figures as PNG bytes (matplotlib's Agg canvas, no display): PR curves, accuracy
against latency, per-head SQNR, INT8 accuracy against calibration-set size."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kpnet_edge.reporting.accuracy import GATE_MIN_SIZE, MIN_SIZES
from kpnet_edge.reporting.stages import HEADS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100


def pr_curves(rows: Sequence[dict], peers: dict | None) -> bytes:
    """Precision against recall, one panel per face-size filter, every model (peers dashed)."""
    figure, axes = _figure(len(MIN_SIZES), width=5.0)
    curves = [(row["key"], row["accuracy"]["wider"], "-") for row in rows]
    for name, peer in ((peers or {}).get("rows") or {}).items():
        curves.append((name, peer["accuracy"]["wider"], "--"))
    for ax, size in zip(axes, MIN_SIZES):
        for label, wider, style in curves:
            subset = wider[f"{size:g}"]
            ap = "-" if subset["ap"] is None else f"{100 * subset['ap']:.1f}"
            curve = subset["curve"]
            ax.plot(curve["recall"], curve["precision"], style, label=f"{label} (AP {ap})")
        ax.set(title=f"faces >= {size} px", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    return _png(figure)


def accuracy_latency(rows: Sequence[dict]) -> bytes:
    """AP50 (faces >= GATE_MIN_SIZE px, with its interval) against end-to-end p50 milliseconds at
    batch 1 (with the interquartile range). Models are told apart by a legend, not labels beside
    the points: close points would make labels overlap."""
    figure, (ax,) = _figure(1, width=7.5)
    colours = _colours(len(rows))
    for number, row in enumerate(rows):
        latency = next((m for m in row["latency"] if m["batch"] == 1), None)
        subset = row["accuracy"]["wider"][f"{GATE_MIN_SIZE:g}"]
        if latency is None or subset["ap"] is None:
            continue
        x, y = latency["end_to_end_ms"]["p50"], 100 * subset["ap"]
        interval = subset.get("ap_ci")
        yerr = None if interval is None else [[y - 100 * interval[0]], [100 * interval[1] - y]]
        spread = latency.get("spread", {}).get("end_to_end_iqr_over_p50")
        xerr = None if spread is None else [[x * spread / 2], [x * spread / 2]]
        ax.errorbar([x], [y], yerr=yerr, xerr=xerr, fmt="s" if row["quantized"] else "o", markersize=7,
                    capsize=3, color=colours[number], label=row["key"])
    ax.set(xlabel="end-to-end p50 latency, batch 1 (ms; bar: interquartile range)",
           ylabel=f"AP50, faces >= {GATE_MIN_SIZE} px (%; bar: 95 % interval)",
           title="accuracy vs latency (squares: quantized)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return _png(figure)


def _colours(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(index % palette.N) for index in range(count)]


def head_sqnr(rows: Sequence[dict]) -> bytes:
    """SQNR (dB) of each output head, one bar per model against the reference; identical heads
    are drawn 10 dB above the tallest finite bar and marked with the infinity sign."""
    candidates = [row for row in rows if row["stages"] is not None]
    figure, (ax,) = _figure(1, width=max(6.0, 1.2 * len(HEADS)))
    heads = [h for row in candidates for h in row["stages"]["heads"].values()]
    finite = [h["sqnr_db"] for h in heads if h["sqnr_db"] is not None]
    ceiling = max([*finite, 0.0]) + 10.0  # where identical heads are drawn: above every finite bar
    width = 0.8 / max(len(candidates), 1)
    for number, row in enumerate(candidates):
        positions, heights, infinite = [], [], []
        for index, head in enumerate(HEADS):
            figures = row["stages"]["heads"][head]
            if figures["sqnr_db"] is None and not figures["identical"]:
                continue
            positions.append(index + (number - (len(candidates) - 1) / 2) * width)
            heights.append(ceiling if figures["identical"] else figures["sqnr_db"])
            infinite.append(figures["identical"])
        bars = ax.bar(positions, heights, width, label=row["key"])
        for bar, is_infinite in zip(bars, infinite):
            if is_infinite:
                top = (bar.get_x() + bar.get_width() / 2, bar.get_height())
                ax.annotate("\u221e", top, ha="center", va="bottom")
    ax.set_xticks(range(len(HEADS)), [h.replace("_", " ") for h in HEADS], fontsize=8)
    ax.set(ylabel="SQNR vs reference (dB, higher is closer)", title="per-head output agreement")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(figure)


def calibration_sweep(sweep: Sequence[dict], reference: dict) -> bytes:
    """AP50 (faces >= GATE_MIN_SIZE px) and MTFL NME against calibration images, per INT8 target,
    with the FP32 reference as a dotted line."""
    figure, (ap_axis, nme_axis) = _figure(2, width=5.0)
    key = f"{GATE_MIN_SIZE:g}"
    for target in dict.fromkeys(row["target"] for row in sweep):
        scored = [row for row in sweep if row["target"] == target and row["error"] is None]
        sizes = [row["calibration_size"] for row in scored]
        ap = [_percent(row["accuracy"]["wider"][key]["ap"]) for row in scored]
        nme = [_percent(row["accuracy"]["mtfl"]["nme"]) for row in scored]
        ap_axis.plot(sizes, ap, "o-", label=target)
        nme_axis.plot(sizes, nme, "o-", label=target)
    for ax, value, label in ((ap_axis, reference["wider"][key]["ap"], f"AP50, faces >= {key} px (%)"),
                             (nme_axis, reference["mtfl"]["nme"], "MTFL NME, inter-ocular (%)")):
        if value is not None:
            ax.axhline(100 * value, linestyle=":", color="black", label="FP32 reference")
        ax.set(xlabel="calibration images", ylabel=label, xscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(figure)


def _percent(value: float | None) -> float:
    return float("nan") if value is None else 100 * value


def _figure(panels: int, width: float) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * panels, 4.0), dpi=DPI, layout="constrained")
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()

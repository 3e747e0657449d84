"""Plain-text tables of evaluation results, shared by the `eval` command and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

MISSING = "-"


def percent(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage string ('81.2'); MISSING for None."""
    return MISSING if value is None else f"{100 * value:.{digits}f}"


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None
) -> str:
    """Align rows under headers: text columns to the left, numeric columns to the right.

    Cells are printed with str(), floats with 3 decimals and None as MISSING; a column is numeric
    when all its cells are numbers, None or numeric strings.
    """
    text = [[_cell(value) for value in row] for row in rows]
    for row in text:
        if len(row) != len(headers):
            raise ValueError(f"row {row} has {len(row)} cells for {len(headers)} headers")
    widths = [max([len(header)] + [len(row[i]) for row in text]) for i, header in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in text) and bool(text) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric))
        return "  ".join(padded).rstrip()

    lines = [title] if title else []
    lines += [line(headers), "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in text]
    return "\n".join(lines)


def detection_table(result: dict, title: str | None = None) -> str:
    """One row per minimum face size of an evaluate_detections result."""
    rows = [
        [
            f">= {subset['min_size']:g} px",
            subset["num_faces"],
            subset["num_ignored_faces"],
            percent(subset["ap"]),
            *(percent(recall) for recall in subset["recall_at_fppi"].values()),
        ]
        for subset in result["by_min_size"].values()
    ]
    fppi_points = next(iter(result["by_min_size"].values()), {"recall_at_fppi": {}})["recall_at_fppi"]
    headers = ["faces", "counted", "ignored", "AP50 (%)", *(f"R@{p}FPPI (%)" for p in fppi_points)]
    title = title or f"Detection, {result['num_images']} images, IoU {result['iou_threshold']:g}"
    return format_table(headers, rows, title)


def landmark_table(result: dict, title: str | None = None) -> str:
    """One row summarising an evaluate_landmarks result: found faces, miss rate, NME."""
    nme = f"NME {result['normalisation']} (%)"
    headers = ["images", "found", "miss rate (%)", "with landmarks", nme]
    row = [
        result["num_images"],
        result["num_found"],
        percent(result["miss_rate"]),
        result["num_with_landmarks"],
        percent(result["nme"], digits=2),
    ]
    return format_table(headers, [row], title or "Landmarks")


def _cell(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _is_number(text: str) -> bool:
    if text == MISSING:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True

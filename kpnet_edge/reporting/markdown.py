"""report.md: the report's tables as Markdown, the figures linked as the PNG files beside it."""

from __future__ import annotations

from collections.abc import Sequence

from kpnet_edge.reporting.sections import change_summary, sections, summary_lines
from kpnet_edge.reporting.tables import Table

REGRESSIONS_LISTED = 10
"""Images listed per model under "Regressions", most changes first (report.json has them all)."""


def render_markdown(report: dict, figures: Sequence[str]) -> str:
    """The whole Markdown document; figures: PNG file names written beside it."""
    lines = ["# KPNet conversion report", "", *(f"- {line}" for line in summary_lines(report)), ""]
    for title, content in sections(report, figures):
        lines += [f"## {title}", ""]
        for part in content:
            if isinstance(part, Table):
                lines += _table(part)
            else:
                lines += [f"![{part[:-4].replace('_', ' ')}]({part})", ""]
    score = report["settings"]["operating_score"]
    lines += ["## Regressions", "",
              f"WIDER images where a candidate's faces (score >= {score:g}) differ from the reference's, the most "
              "harmful first (true faces lost, then new false positives, then moved landmarks); thumbnails in "
              "report.html.", ""]
    for row in report["models"]:
        if row["stages"] is None:
            continue
        items, total = row["regressions"], row.get("regressions_total", len(row["regressions"]))
        lines += [f"### {row['key']}: {total} images changed", ""]
        for item in items[:REGRESSIONS_LISTED]:
            lines.append(f"- `{item['image']}`: {change_summary(item)}")
        if total > REGRESSIONS_LISTED:
            lines.append(f"- ... {total - REGRESSIONS_LISTED} more ({len(items)} listed in report.json)")
        lines.append("")
    return "\n".join(lines)


def _table(table: Table) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = ["---:" if numeric else "---" for numeric in table.numeric()]
    lines = [f"**{table.title}**", "", line(table.headers), line(rule)]
    lines += [line(row) for row in table.rows]
    return lines + ([""] + [table.note] if table.note else []) + [""]

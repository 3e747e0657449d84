"""report.html: one self-contained page (figures and thumbnails embedded as base64 data URIs, no
scripts, no external resources), readable offline."""

from __future__ import annotations

import base64
from html import escape

from kpnet_edge.reporting.gate import FAIL, PASS, UNDECIDED
from kpnet_edge.reporting.sections import change_summary, sections, summary_lines
from kpnet_edge.reporting.tables import Table
from kpnet_edge.reporting.thumbnails import LEGEND, Thumbnails

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
td.number { text-align: right; }
td.PASS { background: #d9f2d9; font-weight: bold; }
td.FAIL { background: #f8d0d0; font-weight: bold; }
td.UNDECIDED { background: #fbeec2; }
th { background: #f0f0f0; }
p.note { font-size: 12px; color: #555; max-width: 1100px; }
img.figure { max-width: 100%; display: block; margin: 8px 0; }
.thumbs { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; font-size: 11px; width: 240px; }
figure img { display: block; }
"""


def render_html(report: dict, figures: dict[str, bytes], thumbnails: Thumbnails) -> str:
    """The whole page; figures: file name -> PNG; thumbnails: model key -> [(regression item, JPEG)]."""
    body = ["<h1>KPNet conversion report</h1>", "<ul>"]
    body += [f"<li>{escape(line)}</li>" for line in summary_lines(report)]
    body.append("</ul>")
    for title, parts in sections(report, list(figures)):
        body.append(f"<h2>{escape(title)}</h2>")
        for part in parts:
            if isinstance(part, Table):
                body += _table(part)
            else:
                body.append(_image(figures[part], "image/png", part[:-4].replace("_", " "), "figure"))
    body += _regressions(report, thumbnails)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>KPNet conversion report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _table(table: Table) -> list[str]:
    lines = [f"<h3>{escape(table.title)}</h3>", "<table>", "<tr>"
             + "".join(f"<th>{escape(h)}</th>" for h in table.headers) + "</tr>"]
    cells = ["<td class=\"number\">" if numeric else "<td>" for numeric in table.numeric()]
    lines += ["<tr>" + "".join(f"{_verdict_cell(cell) or td}{escape(cell)}</td>" for td, cell in zip(cells, row))
              + "</tr>" for row in table.rows]
    lines.append("</table>")
    if table.note:
        lines.append(f"<p class=\"note\">{escape(table.note)}</p>")
    return lines


def _verdict_cell(cell: str) -> str | None:
    """A coloured <td> for a verdict cell, else None."""
    classes = {PASS: "PASS", FAIL: "FAIL", UNDECIDED: "UNDECIDED"}
    return f"<td class=\"{classes[cell]}\">" if cell in classes else None


def _regressions(report: dict, thumbnails: Thumbnails) -> list[str]:
    settings = report["settings"]
    lines = ["<h2>Regressions</h2>", "<p class=\"note\">"
             + escape(f"WIDER images where a candidate differs from the reference at score >= "
                      f"{settings['operating_score']:g}: ")
             + "; ".join(f"{escape(colour)}: {escape(meaning)}" for colour, meaning in LEGEND)
             + escape(f" (more than {settings['moved_px']:g} px). The most harmful changes first (true faces "
                      "lost, new false positives, moved landmarks); report.json lists the first "
                      "hundred.") + "</p>"]
    for row in report["models"]:
        if row["stages"] is None:
            continue
        shown = thumbnails.get(row["key"], [])
        total = row.get("regressions_total", len(row["regressions"]))
        lines.append(f"<h3>{escape(row['key'])}: {total} images changed</h3>")
        if not shown:
            lines.append("<p>No face lost, gained or moved.</p>")
            continue
        lines.append("<div class=\"thumbs\">")
        for item, jpeg in shown:
            name = item["image"].rsplit("/", 1)[-1]
            caption = f"{name}: {change_summary(item)}"
            lines.append(f"<figure>{_image(jpeg, 'image/jpeg', caption)}"
                         f"<figcaption>{escape(caption)}</figcaption></figure>")
        lines.append("</div>")
    return lines


def _image(data: bytes, mime: str, alt: str, css_class: str | None = None) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    class_attribute = f" class=\"{css_class}\"" if css_class else ""
    return f"<img{class_attribute} alt=\"{escape(alt)}\" src=\"data:{mime};base64,{encoded}\">"

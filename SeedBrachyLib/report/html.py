"""A :class:`~.document.Document` as one self-contained HTML file (CSS inline, images as base64 PNG)."""

from __future__ import annotations

import base64
from html import escape

from .document import Figure, Heading, Paragraph, Table

CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #111; margin: 24px auto;
       max-width: 1000px; padding: 0 16px; }
h1 { font-size: 18pt; margin: 0 0 4px 0; }
h2 { font-size: 13.5pt; border-bottom: 2px solid #345; padding-bottom: 2px; margin-top: 22px; }
h3 { font-size: 11.5pt; margin-bottom: 4px; }
.subtitle { color: #444; margin: 0 0 10px 0; }
.notice { border: 2px solid #b00; background: #fff4f4; padding: 6px 10px; font-weight: bold; }
.warning { border: 2px solid #c60; background: #fff8ec; padding: 6px 10px; color: #7a2e00; font-weight: bold; }
.small { font-size: 8.5pt; color: #444; }
table { border-collapse: collapse; margin: 6px 0 4px 0; font-size: 9.5pt; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #e8edf2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.pass { color: #060; font-weight: bold; }
td.fail { color: #b00; font-weight: bold; }
caption { caption-side: bottom; text-align: left; font-size: 8.5pt; color: #444; padding-top: 2px; }
figure { margin: 8px 0; page-break-inside: avoid; }
figure img { max-width: 100%; }
figcaption { font-size: 8.5pt; color: #444; }
@media print { body { margin: 0; max-width: none; } h2 { page-break-after: avoid; } }
"""

FAIL_WORDS = ("FAIL", "NOT MET")


def _is_number(text):
    try:
        float(str(text).replace("n/a", "nan").lstrip("+"))
        return True
    except ValueError:
        return False


def _table(t):
    out = [f'<table id="{escape(t.key)}">' if t.key else "<table>"]
    if t.caption:
        out.append(f"<caption>{escape(t.caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in t.header) + "</tr>")
    for row in t.rows:
        cells = []
        for i, cell in enumerate(row):
            text = str(cell)
            cls = []
            if i == t.status_column:
                cls.append("fail" if text.upper() in FAIL_WORDS else "pass")
            elif _is_number(text):
                cls.append("num")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(document):
    """The document as an HTML string: no external resources (fonts, styles and images are inline)."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(document.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{escape(document.title)}</h1>"]
    if document.subtitle:
        parts.append(f'<p class="subtitle">{escape(document.subtitle)}</p>')
    for block in document.blocks:
        if isinstance(block, Heading):
            tag = "h2" if block.level == 1 else "h3"
            parts.append(f'<{tag} id="{escape(block.key)}">{escape(block.text)}</{tag}>')
        elif isinstance(block, Paragraph):
            cls = "" if block.style == "normal" else f' class="{block.style}"'
            parts.append(f"<p{cls}>{escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(f'<figure id="{escape(block.key)}"><img alt="{escape(block.caption)}" '
                         f'style="width:{100 * block.width:.0f}%" src="data:image/png;base64,{data}">'
                         f"<figcaption>{escape(block.caption)}</figcaption></figure>")
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"

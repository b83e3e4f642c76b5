"""A :class:`~.document.Document` as a PDF (A4 pages) with matplotlib's PdfPages.

matplotlib is the only dependency (no browser, no system libraries): the blocks are laid out
top to bottom on A4 pages, tables split across pages with their header repeated, figures
embedded as images. Text is embedded as TrueType (pdf.fonttype 42) so it can be searched and
extracted.
"""

from __future__ import annotations

import io
import textwrap

from .document import Figure, Heading, Paragraph, Table
from .html import FAIL_WORDS

PAGE_W, PAGE_H = 8.27, 11.69  # A4, inches
MARGIN = 0.55
BODY_PT = 9.0
CHAR_EM = 0.56  # mean glyph width of DejaVu Sans, in em (for line wrapping)
MIN_TABLE_PT = 6.0
BOLD_WIDTH = 1.12  # bold glyphs are this much wider
MIN_WRAP_CHARS = 14  # a wrapped column keeps at least this many characters


def _chars(width_in, size_pt):
    return max(8, int(width_in * 72.0 / (size_pt * CHAR_EM)))


def _wrap(text, width_in, size_pt):
    lines = []
    for para in str(text).split("\n"):
        lines.extend(textwrap.wrap(para, _chars(width_in, size_pt)) or [""])
    return lines


class _Layout:
    """Places blocks on pages from the top; starts a new page when the next item does not fit."""

    def __init__(self, pdf, title):
        from matplotlib.figure import Figure as MplFigure
        self._new_figure = lambda: MplFigure(figsize=(PAGE_W, PAGE_H))
        self.pdf, self.title = pdf, title
        self.page, self.fig, self.y = 0, None, 0.0
        self.width = PAGE_W - 2 * MARGIN
        self.new_page()

    # coordinates: inches from the page's bottom-left; matplotlib wants fractions
    def _fx(self, x):
        return x / PAGE_W

    def _fy(self, y):
        return y / PAGE_H

    def new_page(self):
        self.finish_page()
        self.page += 1
        self.fig = self._new_figure()
        self.y = PAGE_H - MARGIN
        footer = f"{self.title}  |  Research use only, not for clinical decisions  |  page {self.page}"
        self.fig.text(self._fx(MARGIN), self._fy(MARGIN * 0.5), footer, fontsize=7, color="#555", va="center")

    def finish_page(self):
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            self.fig = None

    def room(self):
        return self.y - MARGIN

    def need(self, height):
        if height > self.room():
            self.new_page()

    def text_lines(self, lines, size, weight="normal", color="#111", x=MARGIN, family="sans-serif"):
        step = size * 1.35 / 72.0
        for line in lines:
            self.need(step)
            self.fig.text(self._fx(x), self._fy(self.y), line, fontsize=size, fontweight=weight, color=color,
                          va="top", family=family)
            self.y -= step

    def heading(self, block, next_height=1.0):
        size = 13.0 if block.level == 1 else 10.5
        self.need(size * 1.6 / 72.0 + min(next_height, 0.6 * PAGE_H))  # keep the heading with what follows
        self.y -= 0.08
        self.text_lines(_wrap(block.text, self.width, size * BOLD_WIDTH), size, "bold", "#123")
        if block.level == 1:
            self.fig.add_artist(_line(self, MARGIN, MARGIN + self.width, self.y + 0.03, "#345", 1.2))
        self.y -= 0.06

    def paragraph(self, block):
        from matplotlib.patches import Rectangle
        size = {"small": 7.5}.get(block.style, BODY_PT)
        boxed = block.style in ("notice", "warning")
        color = {"notice": "#8b0000", "warning": "#7a2e00", "small": "#444"}.get(block.style, "#111")
        pad = 0.08 if boxed else 0.0
        lines = _wrap(block.text, self.width - 2 * pad - 0.05, size * (BOLD_WIDTH if boxed else 1.0))
        height = len(lines) * size * 1.35 / 72.0
        if boxed:
            self.need(height + 2 * pad)
            top = self.y
            self.y -= pad
            self.text_lines(lines, size, "bold", color, MARGIN + pad)
            self.fig.add_artist(Rectangle((self._fx(MARGIN), self._fy(self.y - pad)), self._fx(self.width),
                                          self._fy(top - self.y + pad), transform=self.fig.transFigure,
                                          fill=False, edgecolor=color, linewidth=1.2))
            self.y -= pad
        else:
            self.text_lines(lines, size, "normal", color)
        self.y -= 0.08

    def table(self, block):
        header = [str(h) for h in block.header]
        rows = [[str(c) for c in r] for r in block.rows]
        ncol = len(header)
        size = BODY_PT - 1.0
        longest = [max([len(header[i]) + 1] + [len(r[i]) for r in rows]) + 2 for i in range(ncol)]
        narrowest = [min(w, max(len(h) + 3, MIN_WRAP_CHARS)) for w, h in zip(longest, header)]
        while size > MIN_TABLE_PT and sum(narrowest) > _chars(self.width, size):
            size -= 0.5
        total = _chars(self.width, size)
        widths = _column_widths(longest, total)
        cells = [[_wrap_cell(c, w) for c, w in zip(r, widths)] for r in rows]
        head = [_wrap_cell(h, w) for h, w in zip(header, widths)]
        char_in = size * CHAR_EM / 72.0
        x = [MARGIN]
        for w in widths:
            x.append(x[-1] + w * char_in)
        step = size * 1.3 / 72.0

        def draw_row(lines_per_cell, bold, shade):
            from matplotlib.patches import Rectangle
            height = max(len(c) for c in lines_per_cell) * step + 0.04
            if shade:
                self.fig.add_artist(Rectangle((self._fx(MARGIN), self._fy(self.y - height)), self._fx(x[-1] - MARGIN),
                                              self._fy(height), transform=self.fig.transFigure, color="#e8edf2",
                                              zorder=0))
            for i, lines in enumerate(lines_per_cell):
                text = "\n".join(lines)
                colour = "#111"
                if not bold and i == block.status_column:
                    colour = "#b00" if text.upper() in FAIL_WORDS else "#060"
                self.fig.text(self._fx(x[i] + 0.03), self._fy(self.y - 0.02), text, fontsize=size, va="top",
                              fontweight="bold" if bold or i == block.status_column else "normal", color=colour,
                              linespacing=1.15)
            self.fig.add_artist(_line(self, MARGIN, x[-1], self.y - height, "#999", 0.5))
            self.y -= height

        head_h = max(len(c) for c in head) * step + 0.04
        self.need(head_h + step * 2)
        self.fig.add_artist(_line(self, MARGIN, x[-1], self.y, "#999", 0.5))
        draw_row(head, True, True)
        for r in cells:
            height = max(len(c) for c in r) * step + 0.04
            if height > self.room():
                self.new_page()
                self.fig.add_artist(_line(self, MARGIN, x[-1], self.y, "#999", 0.5))
                draw_row(head, True, True)
            draw_row(r, False, False)
        if block.caption:
            self.y -= 0.03
            self.text_lines(_wrap(block.caption, self.width, 7.5), 7.5, color="#444")
        self.y -= 0.12

    def figure_size(self, block, image):
        """(width, height, caption lines) of a figure on the page (inches)."""
        h_px, w_px = image.shape[:2]
        width = self.width * block.width
        height = width * h_px / w_px
        cap = _wrap(block.caption, self.width, 7.5)
        max_h = PAGE_H - 2 * MARGIN - len(cap) * 7.5 * 1.35 / 72.0 - 0.2
        if height > max_h:
            width, height = width * max_h / height, max_h
        return width, height, cap

    def figure(self, block, image):
        width, height, cap = self.figure_size(block, image)
        self.need(height + len(cap) * 7.5 * 1.35 / 72.0 + 0.1)
        ax = self.fig.add_axes([self._fx(MARGIN), self._fy(self.y - height), self._fx(width), self._fy(height)])
        ax.imshow(image, interpolation="lanczos")
        ax.set_axis_off()
        self.y -= height + 0.05
        self.text_lines(cap, 7.5, color="#444")
        self.y -= 0.12


def _line(layout, x0, x1, y, color, lw):
    from matplotlib.lines import Line2D
    return Line2D([layout._fx(x0), layout._fx(x1)], [layout._fy(y)] * 2, transform=layout.fig.transFigure,
                  color=color, linewidth=lw)


def _column_widths(longest, total):
    """Column widths (characters) summing to at most ``total``: long columns shrink first."""
    widths = list(longest)
    while sum(widths) > total:
        i = max(range(len(widths)), key=lambda k: widths[k])
        if widths[i] <= 6:
            break
        widths[i] -= 1
    return widths


def _wrap_cell(text, width):
    return textwrap.wrap(text, max(4, width - 2), break_long_words=True) or [""]


def render_pdf(document, path):
    """Write the document to ``path`` as a PDF (A4); returns the number of pages."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.image import imread

    with matplotlib.rc_context({"pdf.fonttype": 42, "font.family": "DejaVu Sans"}):
        with PdfPages(path, metadata={"Title": document.title, "Creator": "SeedBrachy"}) as pdf:
            layout = _Layout(pdf, document.title)
            layout.text_lines(_wrap(document.title, layout.width, 16), 16, "bold", "#123")
            if document.subtitle:
                layout.text_lines(_wrap(document.subtitle, layout.width, BODY_PT), BODY_PT, color="#444")
            layout.y -= 0.1
            images = {id(b): imread(io.BytesIO(b.png), format="png") for b in document.blocks
                      if isinstance(b, Figure)}
            for n, block in enumerate(document.blocks):
                if isinstance(block, Heading):
                    following = document.blocks[n + 1] if n + 1 < len(document.blocks) else None
                    next_height = (layout.figure_size(following, images[id(following)])[1]
                                   if isinstance(following, Figure) else 1.0)
                    layout.heading(block, next_height)
                elif isinstance(block, Paragraph):
                    layout.paragraph(block)
                elif isinstance(block, Table):
                    layout.table(block)
                elif isinstance(block, Figure):
                    layout.figure(block, images[id(block)])
                else:
                    raise TypeError(f"unknown report block {type(block).__name__}")
            layout.finish_page()
            return layout.page

"""Reports a clinic would keep: one self-contained HTML file and a PDF, from the same content.

Usage::

    from SeedBrachyLib.report import ReportContent, write_report
    write_report(ReportContent("Pre-plan", rx_gy, evaluation, ...), html="plan.html", pdf="plan.pdf")

The figures (DVH, dose slices) need matplotlib, a dependency of the pip package and installed on
demand in Slicer (``SeedBrachy/Resources/requirements.txt``); it is imported only when a report is
written. The PDF is laid out by matplotlib's PdfPages (no browser or system library needed).
"""

from __future__ import annotations

from ..errors import InputError
from ..outputs import check_output
from .content import ReportContent, build_document

__all__ = ["ReportContent", "build_document", "require_matplotlib", "write_report"]


def require_matplotlib():
    """Raise InputError with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("reports need matplotlib: pip install matplotlib (in Slicer: the module installs it on "
                         "first use)") from None


def write_report(content, html=None, pdf=None, force=False):
    """Write the report of ``content`` (:class:`ReportContent`) as HTML and/or PDF; returns the document.

    Existing files are refused unless ``force``. Paths are checked before anything is computed.
    """
    paths = [check_output(p, "file", force) for p in (html, pdf) if p is not None]
    if len(paths) == 2 and paths[0].resolve() == paths[1].resolve():
        raise InputError(f"the HTML and PDF reports cannot both be written to {str(paths[0])!r}")
    require_matplotlib()
    document = build_document(content)
    if html is not None:
        from .html import render_html
        paths[0].write_text(render_html(document), encoding="utf-8")
    if pdf is not None:
        from .pdf import render_pdf
        render_pdf(document, paths[-1])
    return document

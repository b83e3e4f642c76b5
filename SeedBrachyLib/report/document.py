"""The report as a list of blocks (headings, paragraphs, tables, figures), rendered to HTML or PDF alike."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    """A section title; ``level`` 1 (section) or 2 (subsection); ``key`` a stable anchor id."""

    text: str
    key: str
    level: int = 1


@dataclass(frozen=True)
class Paragraph:
    """Plain text; ``style`` "normal", "notice" (boxed, bold), "warning" (boxed, red) or "small"."""

    text: str
    style: str = "normal"


@dataclass(frozen=True)
class Table:
    """A table of strings: ``header`` (with units), ``rows`` (lists of cells), optional ``caption``.

    ``status_column``: index of a PASS/FAIL (or met/NOT MET) column shown in colour, or None.
    """

    header: tuple
    rows: tuple
    caption: str = ""
    key: str = ""
    status_column: int | None = None


@dataclass(frozen=True)
class Figure:
    """A PNG image (bytes) with a caption; ``width`` fraction of the page width."""

    png: bytes
    caption: str
    key: str
    width: float = 1.0


@dataclass
class Document:
    """A report: ``title``, ``subtitle`` and the ``blocks`` in reading order."""

    title: str
    subtitle: str = ""
    blocks: list = field(default_factory=list)

    def add(self, *blocks):
        self.blocks.extend(blocks)
        return self

    def section_keys(self):
        """Keys of the level-1 headings, in order (the report's sections)."""
        return [b.key for b in self.blocks if isinstance(b, Heading) and b.level == 1]

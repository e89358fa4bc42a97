"""What a workbook holds, before it is written: columns, highlights, charts, unknown values, small sheets.

Nothing here knows about XlsxWriter; `workbook.XlsxWriter` turns these into a file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_TEXT = 32_767

# Characters XML 1.0 cannot hold (tab, line feed and carriage return are kept).
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")

# Cell styles a caller may ask for; a number style also sets the number format.
STYLES = ("default", "text", "bool", "header", "int", "float", "pct", "datetime", "date", "title", "link", "bold",
          "delta_int", "delta_pct", "unknown")
KINDS = ("text", "int", "float", "pct", "datetime", "date", "bool")
TONES = ("bad", "warn")


def clean_text(value: str) -> str:
    """Text Excel can hold: illegal control characters removed, at most 32,767 UTF-16 units (cut with "…").

    `_xHHHH_` sequences stay literal: XlsxWriter escapes their underscore.
    """
    if _ILLEGAL_XML.search(value):
        value = _ILLEGAL_XML.sub("", value)
    if len(value) > EXCEL_MAX_TEXT // 2:
        units = value.encode("utf-16-le")
        if len(units) // 2 > EXCEL_MAX_TEXT:  # a surrogate pair split by the cut is dropped
            value = units[: (EXCEL_MAX_TEXT - 1) * 2].decode("utf-16-le", errors="ignore") + "…"
    return value


def column_letter(index: int) -> str:
    """1 -> A, 27 -> AA."""
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def check_sheet_name(name: str) -> str:
    if not name or len(name) > 31 or _SHEET_NAME_BAD.search(name) or name.startswith("'") or name.endswith("'"):
        raise ValueError(f"Sheet name {name!r} is not valid in Excel: 1-31 characters, none of []:*?/\\, no outer quotes.")
    return name


def sheet_ref(sheet: str, cell: str = "A1") -> str:
    """`'My sheet'!A1`: a reference usable in hyperlinks and chart ranges."""
    return "'" + sheet.replace("'", "''") + "'!" + cell


@dataclass(frozen=True)
class Unknown:
    """A value nobody knows: written as an empty grey cell carrying `note` as a cell comment, never as 0."""

    note: str


@dataclass(frozen=True)
class Column:
    """A column of a table: header, kind (text, int, float, pct, datetime, date, bool), minimum width, and an
    optional note shown as a comment on the header cell."""

    name: str
    kind: str = "text"
    width: Optional[float] = None
    note: Optional[str] = None


@dataclass(frozen=True)
class Highlight:
    """Conditional formatting of whole rows: where `column` equals `value`, fill red (`bad`) or amber (`warn`)."""

    column: str
    value: str
    tone: str = "bad"


@dataclass
class Chart:
    """A native bar or line chart over ranges of the same sheet (categories in one column, one series per column).

    `categories` and `series` name what is drawn; the values come from the ranges. Each series keeps its colour
    from one workbook to the next: `colours` (series name -> "#RRGGBB") first, then the writer's palette by name.
    """

    kind: str  # "bar" or "line"
    title: str
    categories: list[str]
    series: list[tuple[str, list[float]]]
    cat_ref: str  # e.g. "$A$20:$A$25"
    series_refs: list[tuple[str, str]]  # (name cell, values range)
    anchor: tuple[int, int, int, int]  # from col, from row, to col, to row (0-based)
    stacked: bool = False
    colours: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DocProperties:
    """Document properties; `created` pins the document dates so the bytes are reproducible."""

    title: str
    subject: str = ""
    creator: str = "ows_pipeline"
    keywords: str = ""
    description: str = ""
    created: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class SheetInfo:
    """What was written for one sheet of a streamed table."""

    name: str
    rows: int


@dataclass
class SheetTable:
    """A table of a small sheet: header at 1-based (row, col), `rows` data rows (at least one, maybe empty)."""

    name: str
    row: int
    col: int
    columns: list[Column]
    rows: int
    highlights: tuple[Highlight, ...] = ()


class Sheet:
    """A small sheet kept in memory: cells, column widths, tables, hyperlinks, charts and highlighted rows."""

    def __init__(self, name: str):
        self.name = check_sheet_name(name)
        self.cells: dict[int, dict[int, tuple[object, str, Optional[str]]]] = {}
        self.widths: dict[int, float] = {}
        self.tables: list[SheetTable] = []
        self.links: list[tuple[int, int, str, str]] = []  # (row, col, kind, target)
        self.charts: list[Chart] = []
        self.tones: dict[int, tuple[str, int, Optional[int]]] = {}  # row -> (tone, first col, last col)
        self.freeze_row: int = 0

    def write(self, row: int, col: int, value, kind: str = "text", style: Optional[str] = None) -> None:
        """Put `value` at 1-based (row, col); `style` overrides the style of the kind. `Unknown(note)` is blank."""
        if kind not in KINDS:
            raise ValueError(f"Unknown column kind {kind!r}; use one of {', '.join(KINDS)}.")
        if style is not None and style not in STYLES:
            raise ValueError(f"Unknown style {style!r}; use one of {', '.join(STYLES)}.")
        self.cells.setdefault(row, {})[col] = (value, kind, style)

    def write_row(self, row: int, col: int, values: Sequence, kinds: Optional[Sequence[str]] = None, style=None) -> None:
        for i, value in enumerate(values):
            self.write(row, col + i, value, kinds[i] if kinds else "text", style)

    def set_width(self, col: int, width: float) -> None:
        """A minimum width for column `col`; the writer widens it to fit what the column holds."""
        self.widths[col] = width

    def add_table(self, name: str, row: int, col: int, columns: Sequence[Column], rows: Sequence[Sequence],
                  highlights: Sequence[Highlight] = ()) -> int:
        """A filterable Excel table with its header at (row, col); returns the row after it."""
        self.write_row(row, col, [c.name for c in columns], style="header")
        for i, values in enumerate(rows, start=1):
            self.write_row(row + i, col, values, [c.kind for c in columns])
        for i, c in enumerate(columns):
            if c.width and (col + i) not in self.widths:
                self.widths[col + i] = c.width
        names = [c.name for c in columns]
        for h in highlights:
            if h.column not in names:
                raise ValueError(f"Highlight on {h.column!r}, which is not a column of table {name!r}.")
        self.tables.append(SheetTable(name, row, col, list(columns), max(len(rows), 1), tuple(highlights)))
        return row + max(len(rows), 1) + 1

    def mark_row(self, row: int, tone: str = "bad", first_col: int = 1, last_col: Optional[int] = None) -> None:
        """Fill row `row` red (`bad`) or amber (`warn`), from `first_col` to `last_col` (default: its last cell)."""
        if tone not in TONES:
            raise ValueError(f"Unknown tone {tone!r}; use 'bad' or 'warn'.")
        self.tones[row] = (tone, first_col, last_col)

    def link_to_sheet(self, row: int, col: int, text: str, sheet: str, cell: str = "A1") -> None:
        self.write(row, col, text, style="link")
        self.links.append((row, col, "internal", sheet_ref(sheet, cell)))

    def link_to_url(self, row: int, col: int, text: str, url: str) -> None:
        self.write(row, col, text, style="link")
        self.links.append((row, col, "external", url))

    def add_chart(self, chart: Chart) -> None:
        if chart.kind not in ("bar", "line"):
            raise ValueError(f"Chart kind {chart.kind!r} is not 'bar' or 'line'.")
        self.charts.append(chart)

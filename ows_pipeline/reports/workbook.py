"""A small streaming xlsx writer: safe text, flat memory, sheet splitting, reproducible bytes.

Why not openpyxl or XlsxWriter: both turn a string starting with `=` into a live formula,
both are slow on a million rows, and neither gives byte-identical files without rewriting
the zip. This writer produces the SpreadsheetML parts itself:

- text is always an inline string (`t="inlineStr"`): `=HYPERLINK(...)`, `+1`, `@x`, `#N/A`
  stay text; illegal XML control characters are removed and `_xHHHH_` sequences escaped;
- large sheets (`add_table_sheet`) are streamed row by row into the zip, so memory stays
  flat; a sheet that would pass `max_rows` (1,048,576 in Excel) continues on another sheet
  with its own header, table, filters and highlighting;
- timezone-aware datetimes are shown in the workbook's display time zone;
- zip entries carry a fixed date and a fixed order, and document dates come from the
  caller, so the same inputs give the same bytes.

Small free-form sheets (`add_sheet`) are kept in memory and support tables, internal and
external hyperlinks and native bar and line charts.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Optional, Union
from zoneinfo import ZoneInfo

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_TEXT = 32_767
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPED_CHAR = re.compile(r"_(x[0-9A-Fa-f]{4}_)")
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_EXCEL_EPOCH_DATE = dt.date(1899, 12, 30)

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

# Cell styles (indexes into cellXfs of styles.xml).
STYLES = {
    "default": 0,
    "header": 1,
    "int": 2,
    "float": 3,
    "pct": 4,
    "datetime": 5,
    "date": 6,
    "title": 7,
    "link": 8,
    "bold": 9,
    "delta_int": 10,
    "delta_pct": 11,
    "text": 0,
    "bool": 0,
}
DXF_BAD = 0
DXF_WARN = 1


# --------------------------------------------------------------------------- values


def clean_text(value: str) -> str:
    """Text Excel can hold: illegal control characters removed, `_xHHHH_` kept literal, at most 32,767 chars."""
    if _ILLEGAL_XML.search(value):
        value = _ILLEGAL_XML.sub("", value)
    if "_x" in value:
        value = _ESCAPED_CHAR.sub(r"_x005F_\1", value)
    if len(value) > EXCEL_MAX_TEXT:
        value = value[: EXCEL_MAX_TEXT - 1] + "…"
    return value


def xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    return xml_escape(value).replace('"', "&quot;")


def _style_attr(style: int) -> str:
    return f' s="{style}"' if style else ""


def _inline(ref: str, style: int, text: str) -> str:
    text = xml_escape(clean_text(text))
    space = ' xml:space="preserve"' if text and (text[0].isspace() or text[-1].isspace()) else ""
    s = f' s="{style}"' if style else ""
    return f'<c r="{ref}"{s} t="inlineStr"><is><t{space}>{text}</t></is></c>'


def excel_serial(value: Union[dt.datetime, dt.date], tz: Optional[ZoneInfo]) -> float:
    """Excel's day number; aware datetimes are first shown in `tz`, naive ones are taken as they are."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(tz or dt.timezone.utc).replace(tzinfo=None)
        delta = value - _EXCEL_EPOCH
        return delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400
    return float((value - _EXCEL_EPOCH_DATE).days)


def _number(value) -> Optional[str]:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return repr(value)
    return None


def cell_xml(ref: str, value, kind: str = "text", tz: Optional[ZoneInfo] = None, style: Optional[int] = None) -> str:
    """One `<c>` element. `kind` says how the column is meant: text is always written as text."""
    if value is None or value == "":
        return ""
    s = STYLES.get(kind, 0) if style is None else style
    if kind == "text" or isinstance(value, str):
        return _inline(ref, s, value if isinstance(value, str) else str(value))
    if isinstance(value, (dt.datetime, dt.date)):
        if kind not in ("datetime", "date"):
            s = STYLES["datetime"] if isinstance(value, dt.datetime) else STYLES["date"]
        return f'<c r="{ref}" s="{s}"><v>{excel_serial(value, tz)!r}</v></c>'
    if isinstance(value, bool):
        return f'<c r="{ref}"{_style_attr(s)} t="b"><v>{int(value)}</v></c>'
    number = _number(value)
    if number is None:
        if isinstance(value, float):
            return ""
        return _inline(ref, s, str(value))
    return f'<c r="{ref}"{_style_attr(s)}><v>{number}</v></c>'


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


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Column:
    """A column of a table: header, kind (text, int, float, pct, datetime, date, bool) and width."""

    name: str
    kind: str = "text"
    width: Optional[float] = None


@dataclass(frozen=True)
class Highlight:
    """Conditional formatting of whole rows: where `column` equals `value`, fill red (`bad`) or amber (`warn`)."""

    column: str
    value: str
    tone: str = "bad"


@dataclass
class Chart:
    """A native bar or line chart over ranges of the same sheet (categories in one column, one series per column)."""

    kind: str  # "bar" or "line"
    title: str
    categories: list[str]
    series: list[tuple[str, list[float]]]
    cat_ref: str  # e.g. "$A$20:$A$25"
    series_refs: list[tuple[str, str]]  # (name cell, values range)
    anchor: tuple[int, int, int, int]  # from col, from row, to col, to row (0-based)
    stacked: bool = False


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
class _Table:
    name: str
    ref: str
    columns: list[str]


@dataclass
class _SheetPart:
    name: str
    path: str  # xl/worksheets/sheetN.xml
    rels: list[tuple[str, str, str, bool]] = field(default_factory=list)  # (rId, type, target, external)


@dataclass
class SheetInfo:
    """What was written for one sheet of a streamed table."""

    name: str
    rows: int


class Sheet:
    """A small sheet kept in memory: cells, column widths, tables, hyperlinks and charts."""

    def __init__(self, name: str):
        self.name = check_sheet_name(name)
        self.cells: dict[int, dict[int, tuple[object, str, Optional[int]]]] = {}
        self.widths: dict[int, float] = {}
        self.tables: list[tuple[str, int, int, list[Column], int]] = []
        self.links: list[tuple[str, str, str]] = []  # (cell, kind, target)
        self.charts: list[Chart] = []
        self.freeze_row: int = 0

    def write(self, row: int, col: int, value, kind: str = "text", style: Optional[str] = None) -> None:
        """Put `value` at 1-based (row, col); `style` overrides the style of the kind."""
        self.cells.setdefault(row, {})[col] = (value, kind, STYLES[style] if style else None)

    def write_row(self, row: int, col: int, values: Sequence, kinds: Optional[Sequence[str]] = None, style=None) -> None:
        for i, value in enumerate(values):
            self.write(row, col + i, value, kinds[i] if kinds else "text", style)

    def set_width(self, col: int, width: float) -> None:
        self.widths[col] = width

    def add_table(self, name: str, row: int, col: int, columns: Sequence[Column], rows: Sequence[Sequence]) -> int:
        """A filterable Excel table with its header at (row, col); returns the row after it."""
        self.write_row(row, col, [c.name for c in columns], style="header")
        for i, values in enumerate(rows, start=1):
            self.write_row(row + i, col, values, [c.kind for c in columns])
        for i, c in enumerate(columns):
            if c.width and (col + i) not in self.widths:
                self.widths[col + i] = c.width
        self.tables.append((name, row, col, list(columns), max(len(rows), 1)))
        return row + max(len(rows), 1) + 1

    def link_to_sheet(self, row: int, col: int, text: str, sheet: str, cell: str = "A1") -> None:
        self.write(row, col, text, style="link")
        self.links.append((f"{column_letter(col)}{row}", "internal", sheet_ref(sheet, cell)))

    def link_to_url(self, row: int, col: int, text: str, url: str) -> None:
        self.write(row, col, text, style="link")
        self.links.append((f"{column_letter(col)}{row}", "external", url))

    def add_chart(self, chart: Chart) -> None:
        self.charts.append(chart)


# --------------------------------------------------------------------------- writer


class XlsxWriter:
    """Writes an .xlsx package to `target` (a path or a binary file object).

    Sheets appear in the order they are added. Call `close()` (or use `with`) to finish.
    """

    def __init__(
        self,
        target: Union[str, IO[bytes]],
        properties: DocProperties,
        *,
        display_tz: Optional[ZoneInfo] = None,
        max_rows: int = EXCEL_MAX_ROWS,
        compresslevel: int = 6,
        width_sample: int = 200,
    ):
        if max_rows < 2 or max_rows > EXCEL_MAX_ROWS:
            raise ValueError(f"max_rows must be between 2 and {EXCEL_MAX_ROWS}, got {max_rows}")
        self.zip = zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.properties = properties
        self.tz = display_tz
        self.max_rows = max_rows
        self.compresslevel = compresslevel
        self.width_sample = width_sample
        self.sheets: list[_SheetPart] = []
        self.tables: list[_Table] = []
        self.table_names: set[str] = set()
        self.charts = 0
        self.drawings = 0

    def __enter__(self) -> "XlsxWriter":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.zip.close()

    # -- parts

    def _info(self, name: str, level: Optional[int] = None) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        info._compresslevel = self.compresslevel if level is None else level  # noqa: SLF001 - fixed level: same bytes
        info.create_system = 0
        info.external_attr = 0o600 << 16
        return info

    def _put(self, name: str, text: str) -> None:
        self.zip.writestr(self._info(name), text.encode("utf-8"))

    def _new_sheet(self, name: str) -> _SheetPart:
        check_sheet_name(name)
        if any(s.name.lower() == name.lower() for s in self.sheets):
            raise ValueError(f"Sheet name {name!r} is used twice.")
        part = _SheetPart(name, f"xl/worksheets/sheet{len(self.sheets) + 1}.xml")
        self.sheets.append(part)
        return part

    def _table_name(self, wanted: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", wanted) or "Table"
        if not base[0].isalpha():
            base = "T_" + base
        name, n = base, 1
        while name.lower() in self.table_names:
            n += 1
            name = f"{base}{n}"
        self.table_names.add(name.lower())
        return name

    def _add_table_part(self, part: _SheetPart, name: str, ref: str, columns: list[str]) -> str:
        self.tables.append(_Table(name, ref, columns))
        rid = f"rId{len(part.rels) + 1}"
        part.rels.append((rid, "table", f"../tables/table{len(self.tables)}.xml", False))
        return rid

    # -- streamed table sheets

    def add_table_sheet(
        self,
        name: str,
        columns: Sequence[Column],
        rows: Iterable[Sequence],
        *,
        table_name: Optional[str] = None,
        highlights: Sequence[Highlight] = (),
        back_link: Optional[tuple[str, str]] = None,
        large: bool = False,
    ) -> list[SheetInfo]:
        """Stream `rows` into a sheet as a filterable Excel table with a frozen header.

        Rows past `max_rows` continue on sheets named `name (2)`, `name (3)`, ... each a full
        table of its own. `back_link` = (text, sheet) puts a link in the cell right of the
        table header. Returns the sheets written and their data row counts.
        """
        columns = list(columns)
        kinds = [c.kind for c in columns]
        iterator = iter(rows)
        sample: list[Sequence] = []
        for row in iterator:
            sample.append(row)
            if len(sample) >= self.width_sample:
                break
        widths = _widths(columns, sample)
        per_sheet = self.max_rows - 1
        written: list[SheetInfo] = []
        pending = _chain(sample, iterator)
        index = 1
        while True:
            sheet_name = name if index == 1 else _continued(name, index)
            count = self._stream_sheet(
                sheet_name, columns, kinds, widths, pending, per_sheet,
                table_name or name, highlights, back_link, large,
            )
            written.append(SheetInfo(sheet_name, count))
            if count < per_sheet:
                break
            try:
                first = next(pending)
            except StopIteration:
                break
            pending = _chain([first], pending)
            index += 1
        return written

    def _stream_sheet(self, name, columns, kinds, widths, rows, limit, table_name, highlights, back_link, large) -> int:
        part = self._new_sheet(name)
        ncols = len(columns)
        last_col = column_letter(ncols)
        letters = [column_letter(i + 1) for i in range(ncols)]
        convert = [_converter(k, self.tz) for k in kinds]
        cells = list(zip(letters, convert))
        info = self._info(part.path, level=1 if large else None)
        with self.zip.open(info, "w", force_zip64=large) as raw:
            buffer: list[str] = []
            write = buffer.append

            def flush():
                raw.write("".join(buffer).encode("utf-8"))
                buffer.clear()

            write(XML_HEAD)
            write(f'<worksheet xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">')
            write(_sheet_views(1))
            write(_cols(widths))
            write("<sheetData>")
            header = "".join(_inline(f"{letters[i]}1", STYLES["header"], c.name) for i, c in enumerate(columns))
            link_xml = ""
            if back_link:
                link_cell = f"{column_letter(ncols + 2)}1"
                header += _inline(link_cell, STYLES["link"], back_link[0])
                link_xml = f'<hyperlinks><hyperlink ref="{link_cell}" location="{_attr(sheet_ref(back_link[1]))}" display="{_attr(back_link[0])}"/></hyperlinks>'
            write(f'<row r="1">{header}</row>')
            count = 0
            r = 1
            for row in rows:
                r += 1
                rs = str(r)
                write(f'<row r="{rs}">')
                write("".join([conv(f"{letter}{rs}", value) for (letter, conv), value in zip(cells, row)]))
                write("</row>")
                count += 1
                if len(buffer) >= 3000:
                    flush()
                if count >= limit:
                    break
            write("</sheetData>")
            last_row = max(r, 2)
            ref = f"A1:{last_col}{last_row}"
            write(_conditional_formats(columns, highlights, f"A2:{last_col}{last_row}"))
            write(link_xml)
            tname = self._table_name(table_name)
            rid = self._add_table_part(part, tname, ref, [c.name for c in columns])
            write(f'<tableParts count="1"><tablePart r:id="{rid}"/></tableParts></worksheet>')
            flush()
        return count

    # -- small sheets

    def reserve(self, name: str) -> _SheetPart:
        """Keep a place in the sheet order for a sheet written later with `add_sheet(sheet, part=...)`."""
        return self._new_sheet(name)

    def add_sheet(self, sheet: Sheet, part: Optional[_SheetPart] = None) -> None:
        """Write a free-form sheet kept in memory (into its reserved place, if given)."""
        if part is None:
            part = self._new_sheet(sheet.name)
        elif part.name != sheet.name:
            raise ValueError(f"Sheet {sheet.name!r} was reserved as {part.name!r}.")
        out = [XML_HEAD, f'<worksheet xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">', _sheet_views(sheet.freeze_row)]
        if sheet.widths:
            out.append(_cols([sheet.widths.get(i, 9.0) for i in range(1, max(sheet.widths) + 1)]))
        out.append("<sheetData>")
        for r in sorted(sheet.cells):
            row = sheet.cells[r]
            out.append(f'<row r="{r}">')
            for c in sorted(row):
                value, kind, style = row[c]
                out.append(cell_xml(f"{column_letter(c)}{r}", value, kind, self.tz, style))
            out.append("</row>")
        out.append("</sheetData>")
        if sheet.links:
            out.append("<hyperlinks>")
            for cell, kind, target in sheet.links:
                if kind == "internal":
                    out.append(f'<hyperlink ref="{cell}" location="{_attr(target)}"/>')
                else:
                    rid = f"rId{len(part.rels) + 1}"
                    part.rels.append((rid, "hyperlink", target, True))
                    out.append(f'<hyperlink ref="{cell}" r:id="{rid}"/>')
            out.append("</hyperlinks>")
        if sheet.charts:
            self.drawings += 1
            rid = f"rId{len(part.rels) + 1}"
            part.rels.append((rid, "drawing", f"../drawings/drawing{self.drawings}.xml", False))
            out.append(f'<drawing r:id="{rid}"/>')
            self._write_drawing(sheet)
        table_rids = []
        for name, row, col, columns, nrows in sheet.tables:
            ref = f"{column_letter(col)}{row}:{column_letter(col + len(columns) - 1)}{row + nrows}"
            table_rids.append(self._add_table_part(part, self._table_name(name), ref, [c.name for c in columns]))
        if table_rids:
            out.append(f'<tableParts count="{len(table_rids)}">')
            out.extend(f'<tablePart r:id="{rid}"/>' for rid in table_rids)
            out.append("</tableParts>")
        out.append("</worksheet>")
        self._put(part.path, "".join(out))

    def _write_drawing(self, sheet: Sheet) -> None:
        anchors, rels = [], []
        for i, chart in enumerate(sheet.charts, start=1):
            self.charts += 1
            rels.append((f"rId{i}", "chart", f"../charts/chart{self.charts}.xml", False))
            self._put(f"xl/charts/chart{self.charts}.xml", _chart_xml(chart, sheet.name))
            anchors.append(_anchor_xml(chart.anchor, i, f"rId{i}", chart.title))
        self._put(
            f"xl/drawings/drawing{self.drawings}.xml",
            XML_HEAD
            + '<xdr:wsDr xmlns:xdr="http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing" '
            'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main">' + "".join(anchors) + "</xdr:wsDr>",
        )
        self._put(f"xl/drawings/_rels/drawing{self.drawings}.xml.rels", _rels_xml(rels))

    # -- package

    def close(self) -> None:
        """Write the workbook, styles, tables, relationships, content types and properties."""
        if not self.sheets:
            raise ValueError("A workbook needs at least one sheet.")
        for i, table in enumerate(self.tables, start=1):
            self._put(f"xl/tables/table{i}.xml", _table_xml(i, table))
        for part in self.sheets:
            if part.rels:
                folder, file = part.path.rsplit("/", 1)
                self._put(f"{folder}/_rels/{file}.rels", _rels_xml(part.rels))
        sheets = "".join(
            f'<sheet name="{_attr(p.name)}" sheetId="{i}" r:id="rId{i}"/>' for i, p in enumerate(self.sheets, start=1)
        )
        self._put(
            "xl/workbook.xml",
            XML_HEAD + f'<workbook xmlns="{NS_MAIN}" xmlns:r="{NS_REL}"><workbookPr/>'
            '<bookViews><workbookView activeTab="0"/></bookViews>'
            f"<sheets>{sheets}</sheets><calcPr calcId=\"191029\"/></workbook>",
        )
        wb_rels = [(f"rId{i}", "worksheet", p.path[3:], False) for i, p in enumerate(self.sheets, start=1)]
        wb_rels.append((f"rId{len(self.sheets) + 1}", "styles", "styles.xml", False))
        self._put("xl/_rels/workbook.xml.rels", _rels_xml(wb_rels))
        self._put("xl/styles.xml", STYLES_XML)
        self._put("docProps/core.xml", _core_xml(self.properties))
        self._put("docProps/app.xml", _app_xml([p.name for p in self.sheets]))
        self._put(
            "_rels/.rels",
            XML_HEAD + f'<Relationships xmlns="{NS_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{REL}officeDocument" Target="xl/workbook.xml"/>'
            f'<Relationship Id="rId2" Type="{NS_PKG_REL}/metadata/core-properties" Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{REL}extended-properties" Target="docProps/app.xml"/>'
            "</Relationships>",
        )
        self._put("[Content_Types].xml", self._content_types())
        self.zip.close()

    def _content_types(self) -> str:
        ct = "application/vnd.openxmlformats-officedocument."
        parts = [("/xl/workbook.xml", ct + "spreadsheetml.sheet.main+xml"), ("/xl/styles.xml", ct + "spreadsheetml.styles+xml")]
        parts += [("/" + p.path, ct + "spreadsheetml.worksheet+xml") for p in self.sheets]
        parts += [(f"/xl/tables/table{i}.xml", ct + "spreadsheetml.table+xml") for i in range(1, len(self.tables) + 1)]
        parts += [(f"/xl/drawings/drawing{i}.xml", ct + "drawing+xml") for i in range(1, self.drawings + 1)]
        parts += [(f"/xl/charts/chart{i}.xml", ct + "drawingml.chart+xml") for i in range(1, self.charts + 1)]
        parts += [
            ("/docProps/core.xml", "application/vnd.openxmlformats-package.core-properties+xml"),
            ("/docProps/app.xml", ct + "extended-properties+xml"),
        ]
        overrides = "".join(f'<Override PartName="{n}" ContentType="{t}"/>' for n, t in parts)
        return (
            XML_HEAD + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>' + overrides + "</Types>"
        )


# --------------------------------------------------------------------------- helpers


def _chain(first: list, rest):
    yield from first
    yield from rest


def _continued(name: str, index: int) -> str:
    suffix = f" ({index})"
    return name[: 31 - len(suffix)] + suffix


def _converter(kind: str, tz: Optional[ZoneInfo]):
    """A fast `(ref, value) -> xml` function for one column kind."""
    style = STYLES.get(kind, 0)
    s_attr = f' s="{style}"' if style else ""

    if kind == "text":

        def text(ref, value):
            if value is None or value == "":
                return ""
            return _inline(ref, style, value if isinstance(value, str) else str(value))

        return text

    if kind in ("int", "float", "pct"):

        def number(ref, value):
            if value is None:
                return ""
            if type(value) is int:
                return f'<c r="{ref}"{s_attr}><v>{value}</v></c>'
            if type(value) is float and math.isfinite(value):
                return f'<c r="{ref}"{s_attr}><v>{value!r}</v></c>'
            return cell_xml(ref, value, kind, tz)

        return number

    if kind in ("datetime", "date"):

        def when(ref, value):
            if value is None:
                return ""
            if isinstance(value, (dt.datetime, dt.date)):
                return f'<c r="{ref}"{s_attr}><v>{excel_serial(value, tz)!r}</v></c>'
            return cell_xml(ref, value, kind, tz)

        return when

    return lambda ref, value: cell_xml(ref, value, kind, tz)


def _widths(columns: Sequence[Column], sample: Sequence[Sequence]) -> list[float]:
    widths = []
    for i, c in enumerate(columns):
        if c.width:
            widths.append(c.width)
            continue
        longest = len(c.name) + 3  # room for the filter button
        if c.kind == "datetime":
            longest = max(longest, 17)
        elif c.kind == "date":
            longest = max(longest, 11)
        else:
            for row in sample:
                value = row[i] if i < len(row) else None
                if value is not None:
                    longest = max(longest, len(str(value)) + 1)
        widths.append(float(min(max(longest, 6), 60)))
    return widths


def _cols(widths: Sequence[float]) -> str:
    return "<cols>" + "".join(
        f'<col min="{i}" max="{i}" width="{w:g}" customWidth="1"/>' for i, w in enumerate(widths, start=1)
    ) + "</cols>"


def _sheet_views(freeze_row: int) -> str:
    if not freeze_row:
        return '<sheetViews><sheetView workbookViewId="0"/></sheetViews>'
    top = f"A{freeze_row + 1}"
    return (
        '<sheetViews><sheetView workbookViewId="0">'
        f'<pane ySplit="{freeze_row}" topLeftCell="{top}" activePane="bottomLeft" state="frozen"/>'
        f'<selection pane="bottomLeft" activeCell="{top}" sqref="{top}"/></sheetView></sheetViews>'
    )


def _conditional_formats(columns: Sequence[Column], highlights: Sequence[Highlight], sqref: str) -> str:
    if not highlights:
        return ""
    names = [c.name for c in columns]
    rules = []
    for priority, h in enumerate(highlights, start=1):
        letter = column_letter(names.index(h.column) + 1)
        formula = f'${letter}2="' + h.value.replace('"', '""') + '"'
        dxf = DXF_BAD if h.tone == "bad" else DXF_WARN
        rules.append(
            f'<cfRule type="expression" dxfId="{dxf}" priority="{priority}">'
            f"<formula>{xml_escape(formula)}</formula></cfRule>"
        )
    return f'<conditionalFormatting sqref="{sqref}">' + "".join(rules) + "</conditionalFormatting>"


def _table_xml(index: int, table: _Table) -> str:
    columns = "".join(f'<tableColumn id="{i}" name="{_attr(clean_text(n))}"/>' for i, n in enumerate(table.columns, start=1))
    return (
        XML_HEAD + f'<table xmlns="{NS_MAIN}" id="{index}" name="{table.name}" displayName="{table.name}" '
        f'ref="{table.ref}" totalsRowShown="0"><autoFilter ref="{table.ref}"/>'
        f'<tableColumns count="{len(table.columns)}">{columns}</tableColumns>'
        '<tableStyleInfo name="TableStyleMedium2" showFirstColumn="0" showLastColumn="0" '
        'showRowStripes="1" showColumnStripes="0"/></table>'
    )


def _rels_xml(rels: Sequence[tuple[str, str, str, bool]]) -> str:
    items = "".join(
        f'<Relationship Id="{rid}" Type="{REL}{kind}" Target="{_attr(target)}"'
        + (' TargetMode="External"' if external else "")
        + "/>"
        for rid, kind, target, external in rels
    )
    return XML_HEAD + f'<Relationships xmlns="{NS_PKG_REL}">{items}</Relationships>'


def _w3c(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _core_xml(p: DocProperties) -> str:
    stamp = _w3c(p.created)
    return (
        XML_HEAD + '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<dc:title>{xml_escape(clean_text(p.title))}</dc:title>"
        f"<dc:subject>{xml_escape(clean_text(p.subject))}</dc:subject>"
        f"<dc:creator>{xml_escape(clean_text(p.creator))}</dc:creator>"
        f"<cp:keywords>{xml_escape(clean_text(p.keywords))}</cp:keywords>"
        f"<dc:description>{xml_escape(clean_text(p.description))}</dc:description>"
        f"<cp:lastModifiedBy>{xml_escape(clean_text(p.creator))}</cp:lastModifiedBy>"
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
        f'<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified>'
        "</cp:coreProperties>"
    )


def _app_xml(sheet_names: Sequence[str]) -> str:
    titles = "".join(f"<vt:lpstr>{xml_escape(n)}</vt:lpstr>" for n in sheet_names)
    return (
        XML_HEAD + '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties" '
        'xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">'
        "<Application>Microsoft Excel</Application><DocSecurity>0</DocSecurity><ScaleCrop>false</ScaleCrop>"
        "<HeadingPairs><vt:vector size=\"2\" baseType=\"variant\"><vt:variant><vt:lpstr>Worksheets</vt:lpstr></vt:variant>"
        f"<vt:variant><vt:i4>{len(sheet_names)}</vt:i4></vt:variant></vt:vector></HeadingPairs>"
        f'<TitlesOfParts><vt:vector size="{len(sheet_names)}" baseType="lpstr">{titles}</vt:vector></TitlesOfParts>'
        "<AppVersion>16.0300</AppVersion></Properties>"
    )


def _str_cache(values: Sequence[str]) -> str:
    pts = "".join(f'<c:pt idx="{i}"><c:v>{xml_escape(clean_text(str(v)))}</c:v></c:pt>' for i, v in enumerate(values))
    return f'<c:strCache><c:ptCount val="{len(values)}"/>{pts}</c:strCache>'


def _num_cache(values: Sequence[float]) -> str:
    pts = "".join(
        f'<c:pt idx="{i}"><c:v>{_number(v)}</c:v></c:pt>' for i, v in enumerate(values) if _number(v) is not None
    )
    return f'<c:numCache><c:formatCode>General</c:formatCode><c:ptCount val="{len(values)}"/>{pts}</c:numCache>'


# Explicit series colours: the workbook carries no theme, and without one some readers
# (LibreOffice among them) draw theme-coloured series invisible.
SERIES_COLOURS = ("4472C4", "ED7D31", "A5A5A5", "FFC000", "5B9BD5", "70AD47", "264478", "9E480E", "636363", "997300")


def _chart_xml(chart: Chart, sheet: str) -> str:
    def ref(cells: str) -> str:
        return xml_escape(sheet_ref(sheet, cells))

    series = []
    for i, ((name, values), (name_ref, values_ref)) in enumerate(zip(chart.series, chart.series_refs)):
        parts = [
            f'<c:ser><c:idx val="{i}"/><c:order val="{i}"/>',
            f"<c:tx><c:strRef><c:f>{ref(name_ref)}</c:f>{_str_cache([name])}</c:strRef></c:tx>",
        ]
        colour = f'<a:solidFill><a:srgbClr val="{SERIES_COLOURS[i % len(SERIES_COLOURS)]}"/></a:solidFill>'
        if chart.kind == "bar":
            parts.append(f'<c:spPr>{colour}</c:spPr><c:invertIfNegative val="0"/>')
        else:
            parts.append(
                f'<c:spPr><a:ln w="22225">{colour}</a:ln></c:spPr>'
                f'<c:marker><c:symbol val="circle"/><c:size val="5"/><c:spPr>{colour}</c:spPr></c:marker>'
            )
        parts.append(f"<c:cat><c:strRef><c:f>{ref(chart.cat_ref)}</c:f>{_str_cache(chart.categories)}</c:strRef></c:cat>")
        parts.append(f"<c:val><c:numRef><c:f>{ref(values_ref)}</c:f>{_num_cache(values)}</c:numRef></c:val>")
        if chart.kind == "line":
            parts.append('<c:smooth val="0"/>')
        parts.append("</c:ser>")
        series.append("".join(parts))
    axes_ids = '<c:axId val="50010001"/><c:axId val="50010002"/>'
    if chart.kind == "bar":
        grouping = "stacked" if chart.stacked else "clustered"
        overlap = '<c:overlap val="100"/>' if chart.stacked else ""
        plot = (
            f'<c:barChart><c:barDir val="col"/><c:grouping val="{grouping}"/><c:varyColors val="0"/>'
            + "".join(series) + f'<c:gapWidth val="150"/>{overlap}{axes_ids}</c:barChart>'
        )
    else:
        plot = (
            '<c:lineChart><c:grouping val="standard"/><c:varyColors val="0"/>'
            + "".join(series) + f'<c:marker val="1"/>{axes_ids}</c:lineChart>'
        )
    title = (
        "<c:title><c:tx><c:rich><a:bodyPr/><a:lstStyle/><a:p><a:pPr><a:defRPr/></a:pPr>"
        f"<a:r><a:t>{xml_escape(clean_text(chart.title))}</a:t></a:r></a:p></c:rich></c:tx>"
        '<c:overlay val="0"/></c:title>'
    )
    axes = (
        '<c:catAx><c:axId val="50010001"/><c:scaling><c:orientation val="minMax"/></c:scaling><c:delete val="0"/>'
        '<c:axPos val="b"/><c:numFmt formatCode="General" sourceLinked="1"/><c:tickLblPos val="nextTo"/>'
        '<c:crossAx val="50010002"/><c:crosses val="autoZero"/><c:auto val="1"/><c:lblAlgn val="ctr"/>'
        '<c:lblOffset val="100"/><c:noMultiLvlLbl val="0"/></c:catAx>'
        '<c:valAx><c:axId val="50010002"/><c:scaling><c:orientation val="minMax"/></c:scaling><c:delete val="0"/>'
        '<c:axPos val="l"/><c:majorGridlines/><c:numFmt formatCode="General" sourceLinked="1"/>'
        '<c:tickLblPos val="nextTo"/><c:crossAx val="50010001"/><c:crosses val="autoZero"/>'
        '<c:crossBetween val="between"/></c:valAx>'
    )
    return (
        XML_HEAD + '<c:chartSpace xmlns:c="http://schemas.openxmlformats.org/drawingml/2006/chart" '
        'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
        f'xmlns:r="{NS_REL}"><c:roundedCorners val="0"/><c:chart>{title}<c:autoTitleDeleted val="0"/>'
        f"<c:plotArea><c:layout/>{plot}{axes}</c:plotArea>"
        '<c:legend><c:legendPos val="r"/><c:overlay val="0"/></c:legend><c:plotVisOnly val="1"/>'
        '<c:dispBlanksAs val="gap"/></c:chart></c:chartSpace>'
    )


def _anchor_xml(anchor: tuple[int, int, int, int], index: int, rid: str, title: str) -> str:
    c1, r1, c2, r2 = anchor
    return (
        "<xdr:twoCellAnchor>"
        f"<xdr:from><xdr:col>{c1}</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>{r1}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:from>"
        f"<xdr:to><xdr:col>{c2}</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>{r2}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:to>"
        f'<xdr:graphicFrame macro=""><xdr:nvGraphicFramePr><xdr:cNvPr id="{index + 1}" name="{_attr(clean_text(title))}"/>'
        "<xdr:cNvGraphicFramePr/></xdr:nvGraphicFramePr>"
        '<xdr:xfrm><a:off x="0" y="0"/><a:ext cx="0" cy="0"/></xdr:xfrm>'
        '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/chart">'
        f'<c:chart xmlns:c="http://schemas.openxmlformats.org/drawingml/2006/chart" xmlns:r="{NS_REL}" r:id="{rid}"/>'
        "</a:graphicData></a:graphic></xdr:graphicFrame><xdr:clientData/></xdr:twoCellAnchor>"
    )


STYLES_XML = (
    XML_HEAD + f'<styleSheet xmlns="{NS_MAIN}">'
    '<numFmts count="5">'
    '<numFmt numFmtId="164" formatCode="0.0%"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm"/>'
    '<numFmt numFmtId="166" formatCode="yyyy-mm-dd"/>'
    '<numFmt numFmtId="167" formatCode="+#,##0;-#,##0;0"/>'
    '<numFmt numFmtId="168" formatCode="+0.0%;-0.0%;0.0%"/>'
    "</numFmts>"
    '<fonts count="4">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="16"/><name val="Calibri"/><family val="2"/></font>'
    '<font><u/><sz val="11"/><color rgb="FF0563C1"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="3"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>'
    '<fill><patternFill patternType="solid"><fgColor rgb="FFDDEBF7"/><bgColor indexed="64"/></patternFill></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="12">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="2" borderId="0" xfId="0" applyFont="1" applyFill="1"/>'
    '<xf numFmtId="3" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="4" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="0" fontId="3" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="167" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="168" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    '<dxfs count="2">'
    '<dxf><font><color rgb="FF9C0006"/></font><fill><patternFill><bgColor rgb="FFFFC7CE"/></patternFill></fill></dxf>'
    '<dxf><font><color rgb="FF9C5700"/></font><fill><patternFill><bgColor rgb="FFFFEB9C"/></patternFill></fill></dxf>'
    "</dxfs>"
    '<tableStyles count="0" defaultTableStyle="TableStyleMedium2" defaultPivotStyle="PivotStyleLight16"/>'
    "</styleSheet>"
)

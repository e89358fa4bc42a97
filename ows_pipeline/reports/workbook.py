"""The workbook writer, on XlsxWriter: text stays text, big sheets stream and split, the same inputs give the same bytes.

- Text is always written as text: XlsxWriter's conversions of strings to formulas, URLs and
  numbers are off, so `=HYPERLINK(...)`, `+1`, `@x`, `#N/A` stay what they are; characters XML
  cannot hold are removed (`clean_text`).
- Large tables (`add_table_sheet`) stream: each of their sheets is in XlsxWriter's
  constant_memory mode, so a row goes to a temporary file when the next begins and memory stays
  flat. A table that would pass `max_rows` (1,048,576 in Excel) continues on `name (2)`, ... each
  with its header, native table, filters and highlighting.
- Small sheets (`Sheet`, `add_sheet`) are kept in memory and hold tables, links, native charts
  with a fixed colour per series, highlighted rows and unknown values (blank with a comment).
- Every sheet prints landscape on A4, fitted to the page width, header rows repeated; a sheet
  with charts is scaled and broken so that no chart is cut (`workbook_style.plan_pages`).
- Column widths fit what the columns hold; no number format shows a negative zero.
- Timezone-aware datetimes are shown in the display time zone; naive ones as they are.
- Document dates come from the caller and every zip entry is dated 1980-01-01, so the same
  inputs give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import os
import re
import struct
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import IO, Optional, Union
from zoneinfo import ZoneInfo

import xlsxwriter
from xlsxwriter.sharedstrings import SharedStringTable
from xlsxwriter.url import Url, UrlTypes
from xlsxwriter.utility import xl_col_to_name, xl_range
from xlsxwriter.worksheet import Worksheet

from ows_pipeline.reports import workbook_style as look
from ows_pipeline.reports.workbook_sheet import (
    EXCEL_MAX_ROWS,
    EXCEL_MAX_TEXT,
    STYLES,
    Chart,
    Column,
    DocProperties,
    Highlight,
    Sheet,
    SheetInfo,
    Unknown,
    check_sheet_name,
    clean_text,
    column_letter,
    sheet_ref,
)

__all__ = ["EXCEL_MAX_ROWS", "EXCEL_MAX_TEXT", "STYLES", "Chart", "Column", "DocProperties", "Highlight", "Sheet",
           "SheetInfo", "Unknown", "XlsxWriter", "clean_text", "column_letter", "excel_serial", "sheet_ref"]

_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_EXCEL_EPOCH_DATE = dt.date(1899, 12, 30)
_ZIP_1980 = struct.pack("<HH", 0, (1 << 5) | 1)  # DOS time 00:00:00, date 1980-01-01
_COMMENT = {"author": "ows_pipeline", "x_scale": 1.6}
_CELL_LIKE = re.compile(r"^([a-zA-Z]{1,3}\d+|[rcRC]|[rcRC]\d+[rcRC]\d+)$")


def excel_serial(value: Union[dt.datetime, dt.date], tz: Optional[ZoneInfo]) -> float:
    """Excel's day number; aware datetimes are first shown in `tz`, naive ones are taken as they are."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(tz or dt.timezone.utc).replace(tzinfo=None)
        delta = value - _EXCEL_EPOCH
        return delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400
    return float((value - _EXCEL_EPOCH_DATE).days)


class _StreamedWorksheet(Worksheet):
    """A worksheet in XlsxWriter's constant_memory mode whatever the workbook's mode: each row goes to a
    temporary file once the next one begins, and its strings are written inline."""

    def _initialize(self, init_data) -> None:
        super()._initialize({**init_data, "constant_memory": True})

    def _escape_control_characters(self, data):
        # Called for every inline string. Text without control characters or a literal `_xHHHH_`, that is
        # nearly all of it once cleaned (clean_text), needs no escaping: skip XlsxWriter's two regexes.
        if type(data) is str and data.isprintable() and "_x" not in data:
            return data
        return super()._escape_control_characters(data)

    def add_table_over_rows(self, last_row: int, last_col: int, options: dict) -> None:
        """An Excel table over rows 0..last_row, all already written.

        XlsxWriter refuses tables in constant_memory mode because `add_table` writes the header
        cells and checks every cell of the range for overlaps. The table is declared on its header
        and first row only, with its header cells sent to a throwaway row store (the header row is
        already written), then stretched to every row written.
        """
        held = self.table, self.str_table
        self.constant_memory = False
        self.table, self.str_table = defaultdict(dict), SharedStringTable()
        try:
            status = self.add_table(0, 0, 1, last_col, options)
        finally:
            self.constant_memory = True
            self.table, self.str_table = held
        if status != 0:
            raise ValueError(f"XlsxWriter refused table {options.get('name')!r} on sheet {self.name!r} ({status}).")
        table = self.tables[-1]
        table["range"] = table["a_range"] = xl_range(0, 0, last_row, last_col)
        if table.get("autofilter"):
            table["autofilter"] = table["range"]


class _FileUrl(Url):
    """A file:// link kept as written. XlsxWriter reads what follows file:/// as a Windows path, so that
    file:///tmp/x would become the relative link tmp\\x."""

    def _parse_url(self) -> None:
        self._link_type = UrlTypes.EXTERNAL
        self._link, _, self._anchor = self._original_url.partition("#")
        self._relationship_link = self._link
        self._text = self._text or self._original_url


class XlsxWriter:
    """Writes an .xlsx workbook to `target`: a path, or a binary file open for reading and writing ("w+b").

    Sheets appear in the order they are added (or reserved). Call `close()` (or use `with`) to finish.
    """

    def __init__(
        self,
        target: Union[str, os.PathLike, IO[bytes]],
        properties: DocProperties,
        *,
        display_tz: Optional[ZoneInfo] = None,
        max_rows: int = EXCEL_MAX_ROWS,
    ):
        if max_rows < 2 or max_rows > EXCEL_MAX_ROWS:
            raise ValueError(f"max_rows must be between 2 and {EXCEL_MAX_ROWS}, got {max_rows}")
        if not isinstance(target, (str, os.PathLike)) and not (target.readable() and target.seekable()):
            raise ValueError("The workbook target must be a path or a file opened 'w+b' (readable and seekable): "
                             "its zip dates are pinned after XlsxWriter has written it.")
        self.target = target
        self.book = xlsxwriter.Workbook(
            os.fspath(target) if isinstance(target, os.PathLike) else target,
            {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False},
        )
        created = properties.created
        if created.tzinfo is not None:
            created = created.astimezone(dt.timezone.utc).replace(tzinfo=None)
        self.book.set_properties({
            "title": clean_text(properties.title), "subject": clean_text(properties.subject),
            "author": clean_text(properties.creator), "keywords": clean_text(properties.keywords),
            "comments": clean_text(properties.description), "created": created,
        })
        self.book.use_zip64()  # zip64 records only for parts past 4 GiB
        self.formats = look.Formats(self.book)
        self.tz = display_tz
        self.max_rows = max_rows
        self.sheet_names: set[str] = set()
        self.table_names: set[str] = set()
        self.closed = False

    def __enter__(self) -> "XlsxWriter":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        elif not self.closed:
            self.closed = True
            try:  # removes XlsxWriter's temporary files; the half-written target is the caller's to discard
                self.book.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass

    # -- sheets

    def _new_worksheet(self, name: str, streamed: bool = False) -> Worksheet:
        check_sheet_name(name)
        if name.lower() in self.sheet_names:
            raise ValueError(f"Sheet name {name!r} is used twice.")
        self.sheet_names.add(name.lower())
        return self.book.add_worksheet(name, worksheet_class=_StreamedWorksheet if streamed else None)

    def _table_name(self, wanted: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", wanted) or "Table"
        if not base[0].isalpha() or _CELL_LIKE.match(base):
            base = "T_" + base
        name, n = base, 1
        while name.lower() in self.table_names:
            n += 1
            name = f"{base}{n}"
        self.table_names.add(name.lower())
        return name

    def _cell_writer(self, ws, kind: str, style: Optional[str] = None, tone: Optional[str] = None,
                     measure: Optional[look.ColumnMeasure] = None, noted: Optional[set] = None):
        """A function (row, col, value), 0-based, writing cells of a column of `kind` shown in `style`.

        Text is always text, and so is anything in a text column; a string in a number column
        stays text too. NaN and infinities are left blank. An `Unknown` is a grey blank with its
        note as a comment (once per column when `noted` collects the columns already noted).
        """
        shown_as = style or kind
        fmt = self.formats.get(shown_as, tone)
        date_fmt = {dt.datetime: self.formats.get("datetime", tone), dt.date: self.formats.get("date", tone)}
        unknown_fmt = self.formats.get("unknown", tone)
        half = 0.5 * 10.0 ** -look.DECIMALS[shown_as] if shown_as in look.DECIMALS else 0.0
        m = measure or look.ColumnMeasure()
        tz = self.tz
        # XlsxWriter's undecorated writers: 0-based row and column only, a tenth faster per cell.
        write_string, write_number, write_blank = ws._write_string, ws._write_number, ws._write_blank
        as_text = kind == "text"

        def text(r, c, v: str):
            v = clean_text(v)
            if len(v) > len(m.longest_text):
                m.longest_text = v
            write_string(r, c, v, fmt)

        def number(r, c, v):
            if v == 0 or -half < v < 0:
                v = 0  # no "-0", "-0.0%": what the format would show as a negative zero is zero
            if v < m.low:
                m.low = v
            elif v > m.high:
                m.high = v
            write_number(r, c, v, fmt)

        def put(r, c, v):
            t = type(v)
            if t is str:
                if v:
                    text(r, c, v)
                elif tone:
                    write_blank(r, c, None, fmt)
            elif v is None:
                if tone:
                    write_blank(r, c, None, fmt)
            elif t is Unknown:
                write_blank(r, c, None, unknown_fmt)
                if noted is None or c not in noted:
                    ws.write_comment(r, c, clean_text(v.note), _COMMENT)
                    if noted is not None:
                        noted.add(c)
            elif as_text:
                text(r, c, str(v))
            elif t is int:
                number(r, c, v)
            elif t is float or t is Decimal or (isinstance(v, numbers.Real) and not isinstance(v, bool)):
                v = float(v)
                if math.isfinite(v):
                    number(r, c, v)
                elif tone:
                    write_blank(r, c, None, fmt)
            elif t is bool:
                ws._write_boolean(r, c, v, fmt)
            elif isinstance(v, dt.date):
                f = fmt if shown_as in ("datetime", "date") else date_fmt[dt.datetime if isinstance(v, dt.datetime) else dt.date]
                write_number(r, c, excel_serial(v, tz), f)
            else:
                text(r, c, str(v))

        return put

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
        table header. `large` is kept for callers; every workbook may hold parts past 4 GiB
        (zip64 records appear only where needed). Returns the sheets written and their data row counts.
        """
        columns = list(columns)
        names = [c.name for c in columns]
        for h in highlights:
            if h.column not in names:
                raise ValueError(f"Highlight on {h.column!r}, which is not a column of sheet {name!r}.")
        per_sheet = self.max_rows - 1
        pending = iter(rows)
        written: list[SheetInfo] = []
        index = 1
        while True:
            sheet_name = name if index == 1 else _continued(name, index)
            count = self._stream_sheet(sheet_name, columns, pending, per_sheet, table_name or name, highlights, back_link)
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

    def _stream_sheet(self, name, columns, rows, limit, table_name, highlights, back_link) -> int:
        ws = self._new_worksheet(name, streamed=True)
        ncols = len(columns)
        header = self.formats.get("header")
        for c, column in enumerate(columns):
            ws.write_string(0, c, clean_text(column.name), header)
            if column.note:
                ws.write_comment(0, c, clean_text(column.note), _COMMENT)
        if back_link:
            ws.write_url(0, ncols + 1, "internal:" + sheet_ref(back_link[1]), self.formats.get("link"),
                         string=clean_text(back_link[0]))
            ws.set_column(ncols + 1, ncols + 1, look.fit(look.text_width(back_link[0])))
        ws.freeze_panes(1, 0)
        measures = [look.ColumnMeasure() for _ in columns]
        noted: set[int] = set()
        cells = list(enumerate(self._cell_writer(ws, c.kind, measure=m, noted=noted) for c, m in zip(columns, measures)))
        count = 0
        for count, row in enumerate(rows, start=1):
            for (c, put), value in zip(cells, row):
                if value is not None:
                    put(count, c, value)
            if count >= limit:
                break
        last_row = max(count, 1)
        ws.add_table_over_rows(last_row, ncols - 1, {
            "name": self._table_name(table_name), "style": look.TABLE_STYLE,
            "columns": [{"header": clean_text(c.name)} for c in columns],
        })
        self._highlight(ws, columns, highlights, 1, 0, last_row)
        for c, (column, m) in enumerate(zip(columns, measures)):
            heading = look.text_width(column.name, "header") + look.FILTER_BUTTON
            ws.set_column(c, c, look.fit(max(m.needed(column.kind), heading), column.width))
        look.page_setup(ws, header_rows=1)
        ws.fit_to_pages(1, 0)
        return count

    def _highlight(self, ws, columns, highlights, first_row: int, first_col: int, last_row: int) -> None:
        """Conditional formatting of data rows first_row..last_row (0-based): it follows sorting and filtering."""
        names = [c.name for c in columns]
        last_col = first_col + len(columns) - 1
        for h in highlights:
            letter = xl_col_to_name(first_col + names.index(h.column))
            ws.conditional_format(first_row, first_col, last_row, last_col, {
                "type": "formula",
                "criteria": f'=${letter}{first_row + 1}="' + h.value.replace('"', '""') + '"',
                "format": self.formats.highlight(h.tone),
            })

    # -- small sheets

    def reserve(self, name: str) -> Worksheet:
        """Keep a place in the sheet order for a sheet written later with `add_sheet(sheet, part=...)`."""
        return self._new_worksheet(name)

    def add_sheet(self, sheet: Sheet, part: Optional[Worksheet] = None) -> None:
        """Write a sheet kept in memory (into its reserved place, if given)."""
        if part is None:
            ws = self._new_worksheet(sheet.name)
        elif part.name != sheet.name:
            raise ValueError(f"Sheet {sheet.name!r} was reserved as {part.name!r}.")
        else:
            ws = part
        in_table = {(r, c) for t in sheet.tables for r in range(t.row, t.row + t.rows + 1)
                    for c in range(t.col, t.col + len(t.columns))}
        headers = {(t.row, c) for t in sheet.tables for c in range(t.col, t.col + len(t.columns))}
        widths = _fit_widths(sheet, in_table, headers)
        for col, width in widths.items():
            ws.set_column(col - 1, col - 1, width)
        if sheet.freeze_row:
            ws.freeze_panes(sheet.freeze_row, 0)

        writers: dict[tuple, object] = {}
        for r in sorted(set(sheet.cells) | set(sheet.tones)):
            row = sheet.cells.get(r, {})
            tone, first, last = sheet.tones.get(r, (None, 0, 0))
            cols = sorted(set(row) | (set(range(first, (last or max(row, default=first)) + 1)) if tone else set()))
            for c in cols:
                value, kind, style = row.get(c, (None, "text", None))
                cell_tone = tone if tone and first <= c <= (last or c) else None
                key = (kind, style, cell_tone)
                if key not in writers:
                    writers[key] = self._cell_writer(ws, kind, style, cell_tone)
                writers[key](r - 1, c - 1, value)
        for r, c, kind, target in sheet.links:
            text = clean_text(str(sheet.cells[r][c][0]))
            if kind == "internal":
                ws.write_url(r - 1, c - 1, "internal:" + target, self.formats.get("link"), string=text)
            elif target.startswith("file://"):
                url = _FileUrl(target)
                url.text = text
                ws.write_url(r - 1, c - 1, url, self.formats.get("link"))
            else:
                ws.write_url(r - 1, c - 1, target, self.formats.get("link"), string=text)
        header = self.formats.get("header")
        for t in sheet.tables:
            status = ws.add_table(t.row - 1, t.col - 1, t.row - 1 + t.rows, t.col - 2 + len(t.columns), {
                "name": self._table_name(t.name), "style": look.TABLE_STYLE,
                "columns": [{"header": clean_text(c.name), "header_format": header} for c in t.columns],
            })
            if status != 0:
                raise ValueError(f"XlsxWriter refused table {t.name!r} on sheet {sheet.name!r} ({status}); "
                                 "are two of its column names the same?")
            self._highlight(ws, t.columns, t.highlights, t.row, t.col - 1, t.row - 1 + t.rows)
        for chart in sheet.charts:
            self._insert_chart(ws, sheet.name, chart, widths)
        self._print_small_sheet(ws, sheet, widths)

    def _insert_chart(self, ws, sheet_name: str, chart: Chart, widths: dict[int, float]) -> None:
        bar = chart.kind == "bar"
        obj = self.book.add_chart({"type": "column", "subtype": "stacked"} if bar and chart.stacked else
                                  {"type": "column" if bar else "line"})
        colours = look.series_colours([n for n, _ in chart.series], chart.colours)
        categories = "=" + sheet_ref(sheet_name, chart.cat_ref)
        for (name, _), (name_ref, values_ref) in zip(chart.series, chart.series_refs):
            colour = colours[name]
            series = {"name": "=" + sheet_ref(sheet_name, name_ref), "categories": categories,
                      "values": "=" + sheet_ref(sheet_name, values_ref)}
            if bar:
                series.update(fill={"color": colour}, border={"none": True}, gap=80)
            else:
                series.update(line={"color": colour, "width": 2.25},
                              marker={"type": "circle", "size": 5, "fill": {"color": colour}, "border": {"color": colour}})
            obj.add_series(series)
        title = clean_text(chart.title)
        obj.set_title({"name": " " + title if title.startswith("=") else title})
        obj.set_legend({"position": "right"})
        obj.show_blanks_as("gap")
        c1, r1, c2, r2 = chart.anchor
        width = sum(look.column_px(widths.get(c + 1, 8.43)) for c in range(c1, c2))
        obj.set_size({"width": width, "height": (r2 - r1) * look.ROW_PX})
        ws.insert_chart(r1, c1, obj, {"object_position": 1})

    def _print_small_sheet(self, ws, sheet: Sheet, widths: dict[int, float]) -> None:
        look.page_setup(ws, header_rows=sheet.freeze_row)
        if not sheet.charts:
            ws.fit_to_pages(1, 0)
            return
        last_col = max([max(row, default=1) for row in sheet.cells.values()] + [c.anchor[2] for c in sheet.charts])
        width_px = sum(look.column_px(widths.get(c, 8.43)) for c in range(1, last_col + 1))
        last_row = max([max(sheet.cells, default=1) - 1] + [c.anchor[3] - 1 for c in sheet.charts])  # 0-based
        blocks: list[list[int]] = []
        for top, bottom in sorted((c.anchor[1], c.anchor[3] - 1) for c in sheet.charts):
            if blocks and top <= blocks[-1][1] + 2:  # charts one empty row apart print together
                blocks[-1][1] = max(blocks[-1][1], bottom)
            else:
                blocks.append([top, bottom])
        plan = look.plan_pages(width_px, last_row, [tuple(b) for b in blocks])
        ws.set_print_scale(plan.scale)
        if plan.breaks:
            ws.set_h_pagebreaks(plan.breaks)

    # -- package

    def close(self) -> None:
        """Write the package, then date every zip entry 1980-01-01 00:00."""
        if self.closed:
            return
        if not self.sheet_names:
            raise ValueError("A workbook needs at least one sheet.")
        self.closed = True
        self.book.close()
        _pin_zip_dates(self.target)


def _fit_widths(sheet: Sheet, in_table: set, headers: set) -> dict[int, float]:
    """Widths (1-based column -> width) that show every number, date, heading and table cell whole, and every
    text whose right neighbour is filled (text with an empty neighbour runs over it, as in Excel); set widths
    are minimums."""
    needed: dict[int, float] = {}
    for r, row in sheet.cells.items():
        for c, (value, kind, style) in row.items():
            if value is None or value == "" or isinstance(value, Unknown):
                continue
            shown_as = style or kind
            if isinstance(value, str) or kind == "text" or not isinstance(value, (numbers.Real, dt.date)):
                neighbour = row.get(c + 1, (None,))[0]
                if shown_as != "header" and (r, c) not in in_table and (neighbour is None or neighbour == ""):
                    continue
                need = look.text_width(clean_text(str(value)), shown_as)
                if (r, c) in headers:
                    need += look.FILTER_BUTTON
            else:
                need = look.text_width(look.shown(value, shown_as), shown_as)
            needed[c] = max(needed.get(c, 0.0), need)
    return {c: look.fit(needed.get(c, 0.0), sheet.widths.get(c)) if c in needed else sheet.widths[c]
            for c in sorted(set(needed) | set(sheet.widths))}


def _pin_zip_dates(target) -> None:
    """Date every entry of the zip at `target` 1980-01-01 00:00, in place (4 bytes per header).

    XlsxWriter dates entries 1980-01-31 in local time when it assembles the package on disk,
    and 1980-01-01 only when it holds the whole package in memory, which large sheets cannot.
    """
    handle = open(target, "r+b") if isinstance(target, (str, os.PathLike)) else target
    try:
        handle.seek(0)
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
        for info in infos:
            if info.flag_bits & 0x08:
                raise ValueError(f"Zip entry {info.filename} has a data descriptor; cannot pin its date.")
            handle.seek(info.header_offset)
            if handle.read(4) != b"PK\x03\x04":
                raise ValueError(f"No local zip header for {info.filename} at {info.header_offset}.")
            handle.seek(info.header_offset + 10)
            handle.write(_ZIP_1980)
        last = max(infos, key=lambda i: i.header_offset)
        handle.seek(last.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", handle.read(4))
        position = last.header_offset + 30 + name_len + extra_len + last.compress_size
        for _ in infos:
            handle.seek(position)
            head = handle.read(46)
            if head[:4] != b"PK\x01\x02":
                raise ValueError(f"No central directory entry at {position}.")
            handle.seek(position + 12)
            handle.write(_ZIP_1980)
            name_len, extra_len, comment_len = struct.unpack("<HHH", head[28:34])
            position += 46 + name_len + extra_len + comment_len
        handle.flush()
    finally:
        if handle is not target:
            handle.close()


def _chain(first: list, rest):
    yield from first
    yield from rest


def _continued(name: str, index: int) -> str:
    suffix = f" ({index})"
    return name[: 31 - len(suffix)] + suffix

"""The streaming xlsx writer: text stays text, sheets split without loss, bytes are reproducible."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import zipfile
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from ows_pipeline.reports.workbook import (
    EXCEL_MAX_ROWS,
    Chart,
    Column,
    DocProperties,
    Highlight,
    Sheet,
    XlsxWriter,
    clean_text,
)

PROPS = DocProperties("Test", created=dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc))
HOSTILE = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2+3", "@SUM(A1:A2)", "=1+1", "#N/A", "#DIV/0!",
           "TRUE", "0012", "1e5", " padded ", "a&b<c>\"d'"]


def write(columns, rows, **kwargs) -> bytes:
    out = io.BytesIO()
    with XlsxWriter(out, PROPS, **kwargs) as book:
        book.add_table_sheet("Data", columns, rows)
    return out.getvalue()


def sheet_xml(data: bytes, n: int = 1) -> str:
    return zipfile.ZipFile(io.BytesIO(data)).read(f"xl/worksheets/sheet{n}.xml").decode()


def test_source_text_is_written_as_text_never_a_formula():
    data = write([Column("Name"), Column("N", "int")], [[value, i] for i, value in enumerate(HOSTILE)])
    xml = sheet_xml(data)
    assert "<f>" not in xml and "<f " not in xml
    assert 't="e"' not in xml and 't="str"' not in xml  # no error cells, no formula strings
    for value in HOSTILE:
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert re.search(r't="inlineStr"><is><t( xml:space="preserve")?>' + re.escape(escaped) + "</t>", xml), value
    sheet = openpyxl.load_workbook(io.BytesIO(data))["Data"]
    assert [sheet.cell(row=i + 2, column=1).value for i in range(len(HOSTILE))] == HOSTILE
    assert all(sheet.cell(row=i + 2, column=1).data_type == "s" for i in range(len(HOSTILE)))


def test_numbers_in_a_text_column_stay_text_and_text_in_a_number_column_is_not_lost():
    data = write([Column("Code"), Column("N", "int")], [[12, "=3"], [None, 7]])
    sheet = openpyxl.load_workbook(io.BytesIO(data))["Data"]
    assert sheet["A2"].value == "12" and sheet["B2"].value == "=3" and sheet["B2"].data_type == "s"
    assert sheet["A3"].value is None and sheet["B3"].value == 7


def test_illegal_control_characters_are_removed():
    data = write([Column("Name")], [["bad\x00na\x01me\x1f\x0b"], ["tab\tand\nnewline"], ["_x0041_ literal"]])
    sheet = openpyxl.load_workbook(io.BytesIO(data))["Data"]  # would fail to parse with illegal characters
    assert sheet["A2"].value == "badname"
    assert sheet["A3"].value == "tab\tand\nnewline"
    # Excel reads `_xHHHH_` as an escaped character; the literal text is kept by escaping its underscore.
    assert "<t>_x005F_x0041_ literal</t>" in sheet_xml(data)
    assert clean_text("x" * 40_000).__len__() == 32_767


def test_timezone_aware_datetimes_are_shown_in_the_display_zone():
    summer = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.timezone.utc)
    winter = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.timezone.utc)
    data = write(
        [Column("When", "datetime"), Column("Day", "date")],
        [[summer, dt.date(2026, 7, 1)], [winter, None], [dt.datetime(2026, 1, 15, 9, 30), None]],
        display_tz=ZoneInfo("Europe/London"),
    )
    sheet = openpyxl.load_workbook(io.BytesIO(data))["Data"]
    assert sheet["A2"].value == dt.datetime(2026, 7, 1, 13, 0)  # BST
    assert sheet["A3"].value == dt.datetime(2026, 1, 15, 12, 0)  # GMT
    assert sheet["A4"].value == dt.datetime(2026, 1, 15, 9, 30)  # naive: as given
    assert sheet["B2"].value == dt.datetime(2026, 7, 1)
    assert sheet["A2"].number_format == "yyyy-mm-dd hh:mm"


def test_a_sheet_past_the_row_limit_continues_on_another_sheet_with_nothing_lost():
    rows = [[f"r{i}", i] for i in range(25)]
    out = io.BytesIO()
    with XlsxWriter(out, PROPS, max_rows=10) as book:
        written = book.add_table_sheet("Latest snapshot", [Column("Key"), Column("N", "int")], rows,
                                       highlights=[Highlight("Key", "r3")])
    assert [(s.name, s.rows) for s in written] == [
        ("Latest snapshot", 9), ("Latest snapshot (2)", 9), ("Latest snapshot (3)", 7)
    ]
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    seen = []
    for info in written:
        sheet = book[info.name]
        assert sheet.max_row <= 10
        assert [c.value for c in sheet[1]] == ["Key", "N"]  # every part has its header
        assert len(sheet.tables) == 1 and sheet.freeze_panes == "A2"
        seen += [r[1] for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert seen == list(range(25))


def test_exactly_full_sheet_makes_no_empty_continuation():
    out = io.BytesIO()
    with XlsxWriter(out, PROPS, max_rows=10) as book:
        written = book.add_table_sheet("Data", [Column("N", "int")], ([i] for i in range(9)))
    assert [(s.name, s.rows) for s in written] == [("Data", 9)]


def test_tables_filters_frozen_header_widths_and_highlighting():
    data = write([Column("Key"), Column("Flag")], [["a", "FAILED"], ["b", ""]])
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["Data"]
    table = sheet.tables["Data"]
    assert table.ref == "A1:B3" and table.autoFilter.ref == "A1:B3"
    assert [c.name for c in table.tableColumns] == ["Key", "Flag"]
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["A"].width >= 6
    assert "<conditionalFormatting" not in sheet_xml(data)  # none requested
    highlighted = write([Column("Key"), Column("Flag")], [["a", "FAILED"]], )
    out = io.BytesIO()
    with XlsxWriter(out, PROPS) as writer:
        writer.add_table_sheet("Data", [Column("Key"), Column("Flag")], [["a", "FAILED"]],
                               highlights=[Highlight("Flag", "FAILED", "bad"), Highlight("Flag", "BREAK", "warn")])
    rules = openpyxl.load_workbook(io.BytesIO(out.getvalue()))["Data"].conditional_formatting
    formulas = sorted(rule.formula[0] for cf in rules for rule in cf.rules)
    assert formulas == ['$B2="BREAK"', '$B2="FAILED"']
    assert highlighted


def test_same_input_gives_the_same_bytes_and_fixed_zip_dates():
    rows = [[name, i, dt.datetime(2026, 11, 16, 8, i % 60, tzinfo=dt.timezone.utc)] for i, name in enumerate(HOSTILE * 50)]
    columns = [Column("Name"), Column("N", "int"), Column("When", "datetime")]

    def build() -> bytes:
        out = io.BytesIO()
        with XlsxWriter(out, PROPS, display_tz=ZoneInfo("Europe/London")) as book:
            summary = Sheet("Summary")
            summary.write(1, 1, "Title", style="title")
            summary.link_to_sheet(2, 1, "Data", "Data")
            summary.write_row(4, 1, ["P", "A"], style="header")
            summary.write_row(5, 1, ["p1", 3], ["text", "int"])
            summary.add_chart(Chart("bar", "States", ["p1"], [("A", [3])], "$A$5:$A$5", [("$B$4", "$B$5:$B$5")],
                                    (4, 1, 10, 15)))
            book.add_sheet(summary)
            book.add_table_sheet("Data", columns, rows)
        return out.getvalue()

    first, second = build(), build()
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    archive = zipfile.ZipFile(io.BytesIO(first))
    assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    core = archive.read("docProps/core.xml").decode()
    assert "2026-11-22T00:00:00Z" in core
    book = openpyxl.load_workbook(io.BytesIO(first))
    assert book.sheetnames == ["Summary", "Data"]
    assert book.properties.title == "Test"
    assert len(book["Summary"]._charts) == 1
    assert book["Summary"]["A2"].hyperlink.location == "'Data'!A1"


def test_bad_sheet_names_and_limits_are_refused():
    with pytest.raises(ValueError, match="not valid"):
        Sheet("a/b")
    with pytest.raises(ValueError, match="max_rows"):
        XlsxWriter(io.BytesIO(), PROPS, max_rows=EXCEL_MAX_ROWS + 1)


@pytest.mark.slow
def test_real_excel_limit_1_048_577_rows_split_across_two_sheets():
    """A 1,048,577-row table at Excel's real limit: 1,048,575 rows under the header, then 2 on the next sheet."""
    total = EXCEL_MAX_ROWS + 1
    out = io.BytesIO()
    with XlsxWriter(out, PROPS) as book:
        written = book.add_table_sheet("Snapshot", [Column("N", "int")], ([i] for i in range(total)), large=True)
    assert [(s.name, s.rows) for s in written] == [("Snapshot", EXCEL_MAX_ROWS - 1), ("Snapshot (2)", 2)]
    archive = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    counts = []
    for n in (1, 2):
        rows, tail = 0, b""
        with archive.open(f"xl/worksheets/sheet{n}.xml") as part:
            for block in iter(lambda: part.read(1 << 20), b""):
                chunk = tail + block
                rows += chunk.count(b"<row ")
                tail = chunk[-4:]  # shorter than b"<row ": never counted twice
        counts.append(rows - 1)  # minus the header row
    assert counts == [EXCEL_MAX_ROWS - 1, 2]
    tables = [archive.read(f"xl/tables/table{n}.xml").decode() for n in (1, 2)]
    assert f'ref="A1:A{EXCEL_MAX_ROWS}"' in tables[0] and 'ref="A1:A3"' in tables[1]
    second = archive.read("xl/worksheets/sheet2.xml").decode()
    assert re.findall(r"<v>(\d+)</v>", second) == [str(total - 2), str(total - 1)]

"""How the workbook reads and prints: widths that fit, print setup, stable chart colours, no "-0", marked rows, unknowns.

Each test reads the produced file back (openpyxl, the zip's XML, or LibreOffice as an independent renderer).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import openpyxl
import pytest

from ows_pipeline.reports.workbook import Chart, Column, DocProperties, Sheet, Unknown, XlsxWriter, column_letter

PROPS = DocProperties("Layout", created=dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc))
STATES = ["MATCHED", "BREAKS", "PARTIAL", "#EXCEPTION", "#TIMEOUT", "OPEN (ACTIVE)"]
NS = {"c": "http://schemas.openxmlformats.org/drawingml/2006/chart",
      "a": "http://schemas.openxmlformats.org/drawingml/2006/main"}


def summary_like(states: list[str], trend_rows: int = 12) -> Sheet:
    """A sheet shaped like the weekly Summary: a KPI block, charts at the right, their data far below."""
    sheet = Sheet("Summary")
    sheet.set_width(5, 3)  # a spacer column that later holds numbers: it must still widen
    sheet.write(1, 1, "A title much longer than its column, running over the empty cells to its right", style="title")
    sheet.write_row(4, 1, ["KPI", "This week", "Last week", "Change"], style="header")
    sheet.write(5, 1, "Runs", style="bold")
    sheet.write(5, 2, 1_234_567, "int")
    sheet.write(5, 4, -0.0004, "pct", style="delta_pct")
    top = 41
    sheet.write(top - 1, 1, "Chart data", style="bold")
    sheet.write_row(top, 1, ["Week", "Runs", "Completed", "Failed", "Breaks"], style="header")
    for i in range(trend_rows):
        sheet.write_row(top + 1 + i, 1, [f"2026-09-{i + 1:02d}", 2341 * i, 2000 * i, 270 * i, 12_345 * i],
                        ["text", "int", "int", "int", "int"])
    sheet.add_chart(Chart("line", "Trend", [], [(n, []) for n in ("Runs", "Completed", "Failed", "Breaks")],
                          f"$A${top + 1}:$A${top + trend_rows}",
                          [(f"${column_letter(c)}${top}", f"${column_letter(c)}${top + 1}:${column_letter(c)}${top + trend_rows}")
                           for c in range(2, 6)], anchor=(6, 20, 16, 38)))
    row = top + trend_rows + 2
    sheet.write_row(row, 1, ["Project"] + states, style="header")
    for p in range(3):
        sheet.write_row(row + 1 + p, 1, [f"PRJ{p}"] + [7 * p + i for i in range(len(states))], ["text"] + ["int"] * len(states))
    sheet.add_chart(Chart("bar", "End states", [], [(s, []) for s in states], f"$A${row + 1}:$A${row + 3}",
                          [(f"${column_letter(c)}${row}", f"${column_letter(c)}${row + 1}:${column_letter(c)}${row + 3}")
                           for c in range(2, 2 + len(states))], anchor=(6, 1, 16, 19), stacked=True))
    return sheet


def build(path: Path, states: list[str] = STATES) -> Path:
    with XlsxWriter(path, PROPS) as book:
        part = book.reserve("Summary")
        book.add_table_sheet("Snapshot", [Column("Run key"), Column("#EXCEPTION", "int"), Column("Begin", "datetime"),
                                          Column("Name"), Column("N", "int")],
                             [[f"R{i}", 10 ** (i % 8), dt.datetime(2026, 11, 16, 8, 0), "x" * (5 + i % 40), i]
                              for i in range(300)])
        book.add_sheet(summary_like(states), part=part)
    return path


def shown(value, number_format: str) -> str:
    """What the formats this writer uses display for `value` (written here, apart from the writer)."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    sections = number_format.split(";")
    if len(sections) == 3:
        body = sections[0] if value > 0 else sections[1] if value < 0 else sections[2]
        text = shown(abs(value), body.lstrip("+-"))
        return ("+" if body.startswith("+") else "-" if body.startswith("-") else "") + text
    if number_format.endswith("%"):
        return f"{value * 100:.{len(number_format.split('.')[1]) - 1 if '.' in number_format else 0}f}%"
    if number_format == "#,##0":
        return f"{value:,.0f}"
    if number_format == "#,##0.00":
        return f"{value:,.2f}"
    return str(value)


def test_columns_are_wide_enough_for_numbers_headers_and_text_beside_filled_cells(tmp_path):
    book = openpyxl.load_workbook(build(tmp_path / "w.xlsx"))
    for sheet in book:
        for row in sheet.iter_rows():
            for cell in row:
                if cell.value is None:
                    continue
                width = sheet.column_dimensions[cell.column_letter].width
                if isinstance(cell.value, (int, float, dt.datetime)):
                    text = shown(cell.value, cell.number_format)
                    assert width >= len(text) + 1, (sheet.title, cell.coordinate, text, width)  # else Excel shows ###
                elif cell.row > 1 or sheet.title != "Summary":
                    right = sheet.cell(row=cell.row, column=cell.column + 1).value
                    in_table_header = cell.font.b and cell.fill.fgColor.rgb not in (None, "00000000")
                    if right is not None or in_table_header:
                        need = len(cell.value) + (2 if in_table_header else 0)
                        assert width >= need, (sheet.title, cell.coordinate, cell.value, width)
    summary = book["Summary"]
    assert summary.column_dimensions["E"].width >= len("123,450") + 1  # the 3-wide spacer holds Breaks
    assert summary.column_dimensions["A"].width < 30  # the title runs over its neighbours instead
    snapshot = book["Snapshot"]
    assert snapshot.column_dimensions["B"].width >= len("#EXCEPTION") + 2  # header and its filter button
    assert snapshot.column_dimensions["D"].width >= 44  # the longest name is on row 36, past any sample


def test_every_sheet_prints_landscape_fitted_to_width_with_its_header_and_charts_uncut(tmp_path):
    book = openpyxl.load_workbook(build(tmp_path / "w.xlsx"))
    for sheet in book:
        assert sheet.page_setup.orientation == "landscape" and sheet.page_setup.paperSize == 9, sheet.title
    snapshot = book["Snapshot"]
    assert snapshot.sheet_properties.pageSetUpPr.fitToPage
    assert (snapshot.page_setup.fitToWidth or 1, snapshot.page_setup.fitToHeight) == (1, 0)  # 1 is the default
    assert snapshot.print_title_rows == "$1:$1"
    summary = book["Summary"]
    assert not summary.sheet_properties.pageSetUpPr or not summary.sheet_properties.pageSetUpPr.fitToPage
    assert 10 <= summary.page_setup.scale <= 100
    breaks = [b.id for b in summary.row_breaks.brk]  # a break after row id (1-based)
    charts = [(c.anchor._from.row, c.anchor.to.row) for c in summary._charts]  # 0-based, "to" row exclusive
    assert len(charts) == 2 and breaks
    for first, to in charts:
        assert not any(first < b < to for b in breaks), (charts, breaks)  # no page ends inside a chart
    assert breaks[0] == max(to for _, to in charts)  # both charts on the first page, their data after it


def chart_colours(path: Path) -> list[dict[str, str]]:
    """Series name -> colour, per chart, read from the chart parts."""
    found = []
    with zipfile.ZipFile(path) as archive:
        for name in sorted(n for n in archive.namelist() if n.startswith("xl/charts/chart")):
            root = ElementTree.fromstring(archive.read(name))
            colours = {}
            for ser in root.iter(f"{{{NS['c']}}}ser"):
                label = ser.find("c:tx//c:v", NS).text
                fill = ser.find("c:spPr/a:solidFill/a:srgbClr", NS)
                line = ser.find("c:spPr/a:ln/a:solidFill/a:srgbClr", NS)
                colours[label] = (fill if fill is not None else line).get("val")
            found.append(colours)
    return found


def test_a_series_keeps_its_colour_from_week_to_week(tmp_path):
    week1 = chart_colours(build(tmp_path / "w1.xlsx", STATES))
    week2 = chart_colours(build(tmp_path / "w2.xlsx", ["#TIMEOUT", "NO_DATA", "MATCHED", "OPEN (SUSPEND)", "BREAKS"]))
    bars1, bars2 = (next(c for c in week if "MATCHED" in c) for week in (week1, week2))
    for state in set(bars1) & set(bars2):
        assert bars1[state] == bars2[state], state
    for week in (week1, week2):
        for colours in week:
            assert len(set(colours.values())) == len(colours), colours  # told apart within a chart
    lines1, lines2 = (next(c for c in week if "Runs" in c) for week in (week1, week2))
    assert lines1 == lines2 and len(lines1) == 4


def test_no_number_shows_a_negative_zero(tmp_path):
    sheet = Sheet("Numbers")
    values = [(-0.0, "int", None), (-0.3, "int", None), (-1e-9, "pct", None), (-0.0004, "pct", "delta_pct"),
              (-0.004, "float", None), (-0.0, "int", "delta_int"), (-0.0006, "pct", "delta_pct"), (-2, "int", "delta_int")]
    for row, (value, kind, style) in enumerate(values, start=1):
        sheet.write(row, 1, value, kind, style=style)
    path = tmp_path / "n.xlsx"
    with XlsxWriter(path, PROPS) as book:
        book.add_table_sheet("Streamed", [Column("Rate", "pct"), Column("N", "float")], [[-0.0001, -0.001], [-0.2, -1.5]])
        book.add_sheet(sheet)
    read = openpyxl.load_workbook(path)
    texts = [shown(c.value, c.number_format) for s in read for r in s.iter_rows() for c in r
             if isinstance(c.value, (int, float))]
    assert texts and not [t for t in texts if re.fullmatch(r"-0[.,0]*%?", t)], texts
    assert "-0.1%" in texts and "-2" in texts and "-20.0%" in texts and "-1.50" in texts  # real negatives stay
    rendered = libreoffice_csv(path, tmp_path)  # the same, as an independent program draws it
    if rendered is not None:
        cells = [v for rows in rendered.values() for r in rows for v in r]
        assert "-0.1%" in cells and not [v for v in cells if re.fullmatch(r"-0[.,0]*%?", v)], rendered


def test_marked_rows_are_filled_and_unknown_values_are_blank_with_a_note(tmp_path):
    sheet = Sheet("Checks")
    sheet.add_table("Checks", 1, 1, [Column("Check"), Column("Result"), Column("Rows", "int")],
                    [["not_null", "passed", 3], ["unique", "failed", None], ["sla", "passed", Unknown("No SLA list loaded")]])
    sheet.mark_row(3, "bad", 1, 3)
    path = tmp_path / "c.xlsx"
    with XlsxWriter(path, PROPS) as book:
        book.add_table_sheet("Runs", [Column("Run"), Column("SLA breached", "bool", note="Blank: no SLA list")],
                             [["r1", Unknown("No SLA list loaded")], ["r2", Unknown("No SLA list loaded")], ["r3", True]])
        book.add_sheet(sheet)
    read = openpyxl.load_workbook(path)
    checks = read["Checks"]
    assert [checks.cell(row=3, column=c).fill.fgColor.rgb for c in (1, 2, 3)] == ["FFFFC7CE"] * 3  # the empty cell too
    assert checks["A2"].fill.fgColor.rgb in (None, "00000000")
    assert checks["C4"].value is None and checks["C4"].comment.text.startswith("No SLA list loaded")
    assert checks["C4"].fill.fgColor.rgb == "FFEDEDED"
    runs = read["Runs"]
    assert runs["B2"].value is None and runs["B3"].value is None and runs["B4"].value is True
    assert runs["B2"].comment.text.startswith("No SLA list loaded") and runs["B3"].comment is None  # noted once
    assert runs["B1"].comment.text.startswith("Blank: no SLA list")


def libreoffice_csv(path: Path, folder: Path) -> dict[str, list[list[str]]] | None:
    """Every sheet as LibreOffice shows it (formatted text), or None when LibreOffice is not installed."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        return None
    out = folder / "csv"
    out.mkdir(exist_ok=True)
    subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{folder / 'lo_profile'}", "--convert-to",
                    "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false,-1",
                    "--outdir", str(out), str(path)], check=True, capture_output=True, timeout=180)
    return {p.stem: list(csv.reader(io.StringIO(p.read_text(encoding="utf-8")))) for p in sorted(out.glob("*.csv"))}


@pytest.mark.skipif(not (shutil.which("soffice") and shutil.which("pdftotext")), reason="needs LibreOffice and poppler")
def test_printed_by_libreoffice_no_cell_shows_hashes_and_charts_share_the_first_page(tmp_path):
    path = build(tmp_path / "w.xlsx")
    subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{tmp_path / 'lo_profile'}",
                    "--convert-to", "pdf", "--outdir", str(tmp_path), str(path)], check=True, capture_output=True,
                   timeout=180)
    pdf = tmp_path / "w.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    assert "###" not in text
    pages = [page for page in text.split("\f") if page.strip()]
    summary = [page for page in pages if re.search(r"^\s*Summary\s+Page \d+ of", page, re.M)]
    # Summary: the KPIs and both charts on one page, the chart data on the next.
    assert len(summary) == 2, len(summary)
    assert "Trend" in summary[0] and "End states" in summary[0] and "Chart data" not in summary[0]
    assert "Chart data" in summary[1]
    # 300 snapshot rows of 5 columns fitted to the width: about 35 rows a page, the header on each.
    snapshot = [page for page in pages if page not in summary]
    assert len(snapshot) <= 10 and all("Run key" in page for page in snapshot), len(snapshot)

"""The upload parsers and schemas on their own: formats, encodings, limits and types."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile

import pytest

from ows_pipeline.uploads.formats import parse_file
from ows_pipeline.uploads.schema import FEED_SLA, validate
from ows_pipeline.uploads.names import name_problem, safe_name
from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.problems import FileRejected
from ows_pipeline_tests.upload_corpus import GOOD_ROWS, workbook_bytes

LIMITS = UploadLimits()


def _rules(name: str, data: bytes, limits: UploadLimits = LIMITS) -> set[str]:
    with pytest.raises(FileRejected) as caught:
        table = parse_file(name, data, limits)
        _rows, problems = validate(FEED_SLA, table)
        if problems:
            raise FileRejected(problems)
    return {p.rule for p in caught.value.problems}


def test_csv_with_and_without_bom_reads_the_same():
    text = "feed_code,sla_minutes\nA,30\n"
    plain = parse_file("a.csv", text.encode(), LIMITS)
    bom = parse_file("a.csv", b"\xef\xbb\xbf" + text.encode(), LIMITS)
    assert plain.columns == bom.columns == ["feed_code", "sla_minutes"]
    assert plain.rows == bom.rows == [("A", "30")] and plain.row_numbers == [2]


def test_csv_row_numbers_follow_the_file_lines():
    table = parse_file("a.csv", b'a,b\n1,"two\nlines"\n\n3,4\n', LIMITS)
    assert table.rows == [("1", "two\nlines"), ("3", "4")]
    assert table.row_numbers == [2, 5]


def test_encoding_error_names_the_line():
    with pytest.raises(FileRejected) as caught:
        parse_file("a.csv", "a,b\n1,2\n3,caf\u00e9\n".encode("latin-1"), LIMITS)
    problem = caught.value.problems[0]
    assert problem.rule == "encoding" and problem.row == 3 and "UTF-8" in problem.fix


def test_header_and_type_matching_is_forgiving_on_names_not_on_values():
    table = parse_file("a.csv", b"Feed Code,Expected-Arrival-Time,SLA Minutes,Owner Team\n a ,7:05,\"1,200\",Ops\n", LIMITS)
    rows, problems = validate(FEED_SLA, table)
    assert problems == []
    assert rows.records() == [
        {"feed_code": "A", "expected_arrival_time": "07:05", "sla_minutes": 1200, "owner_team": "Ops",
         "escalation_contact": None}
    ]


def test_xlsx_reads_typed_cells_and_skips_leading_blank_rows():
    data = workbook_bytes([[None], GOOD_ROWS[0], ["A", dt.time(6, 30), 45.0, "Ops", None], [None, None]])
    table = parse_file("a.xlsx", data, LIMITS)
    assert table.row_numbers == [3]
    rows, problems = validate(FEED_SLA, table)
    assert problems == [] and rows.columns["expected_arrival_time"] == ["06:30"] and rows.columns["sla_minutes"] == [45]


def test_xlsx_formula_is_kept_as_text_never_evaluated():
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.append(GOOD_ROWS[0])
    workbook.active.append(["A", "07:00", 30, "=1+1", None])
    buffer = io.BytesIO()
    workbook.save(buffer)
    rows, problems = validate(FEED_SLA, parse_file("a.xlsx", buffer.getvalue(), LIMITS))
    assert problems == [] and rows.columns["owner_team"] == ["=1+1"]
    assert [w.rule for w in rows.warnings] == ["formula_like"]


def test_zip_bomb_is_refused_from_the_compression_ratio():
    data = workbook_bytes(GOOD_ROWS)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        target.writestr("xl/media/zeros.bin", b"\0" * (4 * 1024 * 1024))
    assert _rules("bomb.xlsx", out.getvalue(), UploadLimits(max_zip_ratio=100)) == {"zip_bomb"}


def test_json_and_yaml_records():
    json_table = parse_file("a.json", b'[{"feed_code": "A", "sla_minutes": 30}, {"feed_code": "B"}]', LIMITS)
    # numbers are kept as written, and typed by the schema afterwards
    assert json_table.columns == ["feed_code", "sla_minutes"] and json_table.rows == [("A", "30"), ("B", None)]
    yaml_table = parse_file("a.yaml", b"- feed_code: A\n  sla_minutes: 30\n- feed_code: B\n", LIMITS)
    assert yaml_table.rows == [("A", "30"), ("B", None)] and yaml_table.row_unit == "item"


def test_yaml_tags_are_refused_and_duplicate_keys_named():
    assert _rules("a.yaml", b"- !!python/object/apply:os.system ['echo hi']\n") == {"yaml_tag"}
    assert _rules("a.yaml", b"- feed_code: A\n  feed_code: B\n") == {"duplicate_field"}


def test_a_few_yaml_aliases_are_fine():
    data = b"- &base\n  feed_code: A\n  expected_arrival_time: '07:00'\n  sla_minutes: 30\n  owner_team: Ops\n- <<: *base\n  feed_code: B\n"
    rows, problems = validate(FEED_SLA, parse_file("a.yaml", data, LIMITS))
    assert problems == [] and rows.columns["feed_code"] == ["A", "B"]


def test_every_problem_of_a_file_is_listed():
    data = b"feed_code,expected_arrival_time,sla_minutes,owner_team\nA,7,x,\nB,07:00,-1,Ops\n"
    problems = validate(FEED_SLA, parse_file("a.csv", data, LIMITS))[1]
    assert [(p.row, p.field, p.rule) for p in problems] == [
        (2, "expected_arrival_time", "wrong_type"),
        (2, "sla_minutes", "wrong_type"),
        (2, "owner_team", "required"),
        (3, "sla_minutes", "out_of_range"),
    ]


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("OWS_UPLOAD_MAX_BYTES", "1_000")
    monkeypatch.setenv("OWS_UPLOAD_MAX_ROWS", "10")
    monkeypatch.setenv("OWS_UPLOAD_MAX_COLUMNS", "5")
    limits = UploadLimits.from_env()
    assert (limits.max_bytes, limits.max_rows, limits.max_columns) == (1000, 10, 5)
    monkeypatch.setenv("OWS_UPLOAD_MAX_ROWS", "lots")
    with pytest.raises(ValueError, match="OWS_UPLOAD_MAX_ROWS"):
        UploadLimits.from_env()


@pytest.mark.parametrize("name", ["..x.csv", "x..csv", "feed sla.csv", "caf\u00e9.csv", ".hidden.csv", "Feed SLA (copy).csv",
                                  "a\\b.csv", "\u00dcbersicht M\u00e4rz 2026.xlsx", "x" * 240 + ".json"])
def test_names_people_use_are_accepted_and_archived_under_a_safe_name_keeping_the_extension(name):
    assert name_problem(name) is None
    safe = safe_name(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", safe) and ".." not in safe and len(safe) <= 200
    assert safe.endswith(name[name.rindex("."):].lower())


@pytest.mark.parametrize("name", ["a\nb.csv", "a\x00.csv", "x\x1b[31m.csv", "evil\u202ecsv.exe.csv", "bad\udcff.csv"])
def test_names_with_invisible_characters_are_refused_and_shown_escaped(name):
    problem = name_problem(name)
    assert problem is not None and problem.rule == "file_name"
    assert safe_name(name).endswith(".csv") and name_problem(safe_name(name)) is None
    assert all(c.isprintable() for c in problem.message + problem.fix + problem.value)


def test_xlsx_with_formatting_far_away_still_loads():
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in GOOD_ROWS:
        sheet.append(row)
    sheet.cell(row=200_000, column=300).number_format = "0.00"  # declares A1:KN200000
    buffer = io.BytesIO()
    workbook.save(buffer)
    table = parse_file("a.xlsx", buffer.getvalue(), UploadLimits(max_rows=1000, max_columns=20))
    rows, problems = validate(FEED_SLA, table)
    assert problems == [] and rows.columns["feed_code"] == ["FEED_A"]

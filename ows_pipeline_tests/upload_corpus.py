"""A corpus of bad uploads, built at test time (no binary bombs are stored in the repository).

Each `BadFile` knows its landing sub-folder, its name, how to write itself into a folder and
the rule its rejection must name. `ACCEPTED_WITH_WARNINGS` are files that load, with a warning.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ows_pipeline.uploads.limits import UploadLimits

HEADER = "feed_code,expected_arrival_time,sla_minutes,owner_team,escalation_contact\n"
GOOD_ROW = "FEED_A,07:30,30,Payments Ops,ops@example.com\n"
GOOD_CSV = HEADER + GOOD_ROW + "FEED_B,18:00,120,Cards Ops,\n"

# Limits small enough for the corpus to stay fast; large enough for every good file.
CORPUS_LIMITS = UploadLimits(
    max_bytes=256 * 1024,
    max_rows=1000,
    max_columns=20,
    max_unzipped_bytes=8 * 1024 * 1024,
    max_zip_ratio=100,
    max_yaml_aliases=50,
    max_values=100_000,
    max_parse_seconds=30,
    max_problems=1000,
    settle_seconds=0,
)


@dataclass(frozen=True)
class BadFile:
    """One bad upload and the rule its rejection must name."""

    case: str
    kind: str
    name: str
    write: Callable[[Path], None]
    rule: str


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _text(text: str) -> Callable[[Path], None]:
    return _bytes(text.encode("utf-8"))


def workbook_bytes(rows: list[list], sheet_title: str = "Sheet1") -> bytes:
    """A plain .xlsx holding `rows` on its first sheet."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = sheet_title
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _rezip(data: bytes, replace: dict[str, bytes] = None, add: dict[str, bytes] = None) -> bytes:
    """The workbook `data` with some parts replaced or added."""
    replace, add = replace or {}, add or {}
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.get(info.filename, source.read(info.filename)))
        for name, content in add.items():
            target.writestr(name, content)
    return out.getvalue()


GOOD_ROWS = [
    ["feed_code", "expected_arrival_time", "sla_minutes", "owner_team", "escalation_contact"],
    ["FEED_A", "07:30", 30, "Payments Ops", "ops@example.com"],
]


def _xlsx_with_macros(path: Path) -> None:
    path.write_bytes(_rezip(workbook_bytes(GOOD_ROWS), add={"xl/vbaProject.bin": b"\x00VBA" * 64}))


def _encrypted_workbook(path: Path) -> None:
    # What Excel writes for a password-protected workbook: an OLE compound file (EncryptedPackage).
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + b"EncryptionInfo" + os.urandom(2048))


def _truncated_workbook(path: Path) -> None:
    data = workbook_bytes(GOOD_ROWS)
    path.write_bytes(data[: len(data) // 2])


def _zip_bomb(path: Path) -> None:
    # 16 MiB of one byte compresses to ~16 KiB: rejected from the declared sizes, never inflated.
    data = workbook_bytes(GOOD_ROWS)
    path.write_bytes(_rezip(data, add={"xl/media/padding.bin": b"\x00" * (16 * 1024 * 1024)}))


def _entity_bomb(path: Path) -> None:
    data = workbook_bytes(GOOD_ROWS)
    source = zipfile.ZipFile(io.BytesIO(data))
    sheet = source.read("xl/worksheets/sheet1.xml").decode()
    entities = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    if sheet.startswith("<?xml"):
        declaration, _, sheet = sheet.partition("?>")
        declaration += "?>"
    else:
        declaration = '<?xml version="1.0" encoding="UTF-8"?>'
    bomb = declaration + f"<!DOCTYPE worksheet [{entities}]>" + sheet.replace("Payments Ops", "&a9;")
    assert "<!DOCTYPE" in bomb and "&a9;" in bomb
    path.write_bytes(_rezip(data, replace={"xl/worksheets/sheet1.xml": bomb.encode()}))


def _excel_error(path: Path) -> None:
    path.write_bytes(workbook_bytes([GOOD_ROWS[0], ["FEED_A", "07:30", "#N/A", "Ops", None]]))


def _xlsx_date_in_text(path: Path) -> None:
    import datetime as dt

    path.write_bytes(workbook_bytes([GOOD_ROWS[0], ["FEED_A", "07:30", 30, dt.datetime(2026, 1, 2, 3, 4), None]]))


def _yaml_alias_bomb(path: Path) -> None:
    # more aliases than the limit (50 in the corpus), each repeating a single value
    path.write_text("- feed_code: &a FEED_A\n" + "".join("- feed_code: *a\n" for _ in range(60)), encoding="utf-8")


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """An expansion bomb: each level is `width` aliases of the one below (width**levels values)."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + f"\nall: [*a{levels - 1}]\n"


def _records_bomb(path: Path) -> None:
    # 45 aliases in records that look like data; 200 x 20 x 25 values once expanded
    text = "- feed_code: X\n  notes: &z [" + ", ".join(["boom"] * 200) + "]\n"
    text += "- feed_code: Y\n  notes: &y [" + ", ".join(["*z"] * 20) + "]\n"
    text += "".join(f"- feed_code: Z{i}\n  notes: [{', '.join(['*y'] * 5)}]\n" for i in range(5))
    path.write_text(text, encoding="utf-8")


def issue_bomb() -> bytes:
    """The 619-byte YAML file with 73 aliases (under the default limit of 100) that expands to 9**9 values."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        previous, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    lines.append("j: [*i]")
    data = ("\n".join(lines) + "\n").encode()
    padding = 619 - len(data) - 3
    data = b"# " + b"x" * padding + b"\n" + data
    assert len(data) == 619 and data.count(b"*") == 73
    return data


def _merge_bomb(path: Path) -> None:
    lines = ["# merge keys (<<) repeating mappings", "base0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for i in range(1, 6):
        lines.append(f"base{i}: &m{i} [{', '.join([f'*m{i - 1}'] * 8)}]")
    lines.append("top: {<<: *m0, x: [*m5, *m5, *m5, *m5, *m5, *m5]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _wide_anchor(path: Path) -> None:
    values = ", ".join(f"v{i}" for i in range(4000))
    path.write_text(f"- feed_code: A\n  x: &w [{values}]\n" + "".join("- y: *w\n" for i in range(40)))


def _hidden_data_sheet(path: Path) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Cover"
    data = workbook.create_sheet("Feeds")
    for row in GOOD_ROWS:
        data.append(row)
    data.sheet_state = "hidden"
    buffer = io.BytesIO()
    workbook.save(buffer)
    path.write_bytes(buffer.getvalue())


def _data_on_second_sheet(path: Path) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Notes"
    data = workbook.create_sheet("SLA list")
    for row in GOOD_ROWS:
        data.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    path.write_bytes(buffer.getvalue())


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "inside.csv").write_text(GOOD_CSV)


FEED_HEADER = "feed_id,project_id,feed_code,feed_name,source_system,side,expected_schedule,active_flag,created_at,updated_at\n"


def _symlink(path: Path) -> None:
    outside = path.parent.parent.parent / "outside_secret.csv"
    outside.write_text(GOOD_CSV, encoding="utf-8")
    os.symlink(outside, path)


def _too_big(path: Path) -> None:
    row = "FEED_{:06d},07:30,30,Payments Ops,ops@example.com\n"
    path.write_text(HEADER + "".join(row.format(i) for i in range(6000)), encoding="utf-8")


def _too_many_rows(path: Path) -> None:
    path.write_text(HEADER + "".join(f"F{i},07:30,30,Ops,\n" for i in range(1001)), encoding="utf-8")


def _too_many_columns(path: Path) -> None:
    extra = [f"x{i}" for i in range(21)]
    path.write_text(HEADER.strip() + "," + ",".join(extra) + "\n" + GOOD_ROW.strip() + "," * 21 + "\n")


BAD_FILES: list[BadFile] = [
    BadFile("empty", "feed_sla", "empty.csv", _bytes(b""), "empty_file"),
    BadFile("blank lines only", "feed_sla", "blank.csv", _text("\n \n\n"), "empty_file"),
    BadFile("header only", "feed_sla", "header_only.csv", _text(HEADER), "no_data_rows"),
    BadFile("semicolon delimiter", "feed_sla", "semicolons.csv", _text(HEADER.replace(",", ";") + GOOD_ROW.replace(",", ";")), "wrong_delimiter"),
    BadFile("tab delimiter", "feed_sla", "tabs.csv", _text(HEADER.replace(",", "\t") + GOOD_ROW.replace(",", "\t")), "wrong_delimiter"),
    BadFile("Windows-1252 text", "feed_sla", "latin1.csv", _bytes((HEADER + "FEED_A,07:30,30,Caf\u00e9 Ops,\n").encode("cp1252")), "encoding"),
    BadFile("UTF-16 text", "feed_sla", "utf16.csv", _bytes(GOOD_CSV.encode("utf-16")), "encoding"),
    BadFile("missing required column", "feed_sla", "no_sla.csv", _text("feed_code,expected_arrival_time,owner_team\nFEED_A,07:30,Ops\n"), "missing_column"),
    BadFile("duplicate column", "feed_sla", "dup_column.csv", _text(HEADER.strip() + ",Feed Code\n" + GOOD_ROW.strip() + ",X\n"), "duplicate_column"),
    BadFile("duplicate keys", "feed_sla", "dup_keys.csv", _text(HEADER + GOOD_ROW + "feed_a,09:00,10,Other,\n"), "duplicate_key"),
    BadFile("wrong type", "feed_sla", "wrong_type.csv", _text(HEADER + "FEED_A,07:30,thirty,Ops,\n"), "wrong_type"),
    BadFile("impossible time", "feed_sla", "bad_time.csv", _text(HEADER + "FEED_A,25:61,30,Ops,\n"), "impossible_time"),
    BadFile("value out of range", "feed_sla", "negative.csv", _text(HEADER + "FEED_A,07:30,-5,Ops,\n"), "out_of_range"),
    BadFile("value beyond column size", "feed_sla", "too_long.csv", _text(HEADER + f"FEED_A,07:30,30,{'X' * 101},\n"), "too_long"),
    BadFile("required value empty", "feed_sla", "no_owner.csv", _text(HEADER + "FEED_A,07:30,30,,\n"), "required"),
    BadFile("ragged row", "feed_sla", "ragged.csv", _text(HEADER + "FEED_A,07:30,30\n"), "row_width"),
    BadFile("unclosed quote", "feed_sla", "quote.csv", _text(HEADER + 'FEED_A,07:30,30,"Ops,\n'), "csv_syntax"),
    BadFile("control characters", "feed_sla", "control.csv", _text(HEADER + "FEED_A,07:30,30,Ops\x07Team,\n"), "control_character"),
    BadFile("impossible date", "ows_export", "ows_project_2026-11-01.csv", _text(
        "project_id,project_code,project_name,business_unit,owner,active_flag,created_at,updated_at\n"
        "1,P1,Project one,BU,Ann,Y,2026-02-30 10:00:00,2026-02-01 10:00:00\n"), "valid_type"),
    BadFile("export of an unknown table", "ows_export", "ows_unknown_2026-11-01.csv", _text(GOOD_CSV), "export_name"),
    BadFile("export without as-of date", "ows_export", "ows_project.csv", _text(GOOD_CSV), "export_name"),
    BadFile("macro-enabled extension", "feed_sla", "sla.xlsm", _bytes(workbook_bytes(GOOD_ROWS)), "refused_format"),
    BadFile("macros inside an .xlsx", "feed_sla", "macros.xlsx", _xlsx_with_macros, "macro_workbook"),
    BadFile("password-protected workbook", "feed_sla", "locked.xlsx", _encrypted_workbook, "encrypted_workbook"),
    BadFile("corrupt workbook", "feed_sla", "corrupt.xlsx", _bytes(b"PK\x03\x04 this is not really a zip" * 10), "corrupt_workbook"),
    BadFile("truncated workbook", "feed_sla", "truncated.xlsx", _truncated_workbook, "corrupt_workbook"),
    BadFile("XLSX zip bomb", "feed_sla", "bomb.xlsx", _zip_bomb, "zip_bomb"),
    BadFile("XML entity bomb", "feed_sla", "entities.xlsx", _entity_bomb, "xml_entities"),
    BadFile("Excel error value", "feed_sla", "na.xlsx", _excel_error, "excel_error"),
    BadFile("date in a text column", "feed_sla", "date_text.xlsx", _xlsx_date_in_text, "wrong_type"),
    BadFile("legacy .xls", "feed_sla", "old.xls", _bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600), "refused_format"),
    BadFile("unknown extension", "feed_sla", "sla.txt", _text(GOOD_CSV), "unknown_format"),
    BadFile("JSON object, not an array", "feed_sla", "object.json", _text(json.dumps({"feed_code": "FEED_A"})), "not_a_list"),
    BadFile("JSON syntax error", "feed_sla", "broken.json", _text('[{"feed_code": "FEED_A",}]'), "json_syntax"),
    BadFile("JSON nested value", "feed_sla", "nested.json", _text(json.dumps([{"feed_code": "FEED_A", "sla_minutes": [30]}])), "nested_value"),
    BadFile("JSON duplicate field", "feed_sla", "dup_field.json", _text('[{"feed_code": "A", "feed_code": "B"}]'), "duplicate_field"),
    BadFile("JSON NaN", "feed_sla", "nan.json", _text('[{"feed_code": "A", "sla_minutes": NaN}]'), "json_syntax"),
    BadFile("YAML alias bomb", "feed_sla", "bomb.yaml", _yaml_alias_bomb, "yaml_aliases"),
    BadFile("YAML mapping, not a list", "feed_sla", "mapping.yaml", _text("feed_code: FEED_A\nsla_minutes: 30\n"), "not_a_list"),
    BadFile("YAML syntax error", "feed_sla", "broken.yml", _text("- feed_code: [FEED_A\n  sla_minutes: 30\n"), "yaml_syntax"),
    BadFile("YAML expansion bomb under the alias limit", "feed_sla", "laughs.yaml", _text(alias_bomb(6, 9)), "too_many_values"),
    BadFile("YAML expansion bomb inside records", "feed_sla", "records_bomb.yaml", _records_bomb, "too_many_values"),
    BadFile("YAML merge-key bomb", "feed_sla", "merge_bomb.yaml", _merge_bomb, "too_many_values"),
    BadFile("YAML wide anchor repeated", "feed_sla", "wide_anchor.yaml", _wide_anchor, "too_many_values"),
    BadFile("YAML nested 5000 deep", "feed_sla", "deep.yaml", _text("[" * 5000 + "]" * 5000 + "\n"), "too_deeply_nested"),
    BadFile("YAML python tag", "feed_sla", "tag.yaml", _text("- !!python/object/apply:os.system ['echo owned']\n"), "yaml_tag"),
    BadFile("YAML binary tag", "feed_sla", "binary.yaml", _text("- feed_code: !!binary aGVsbG8=\n"), "yaml_tag"),
    BadFile("JSON nested 20000 deep", "feed_sla", "deep.json", _text("[" * 20_000 + "]" * 20_000), "too_deeply_nested"),
    BadFile("JSON with too many values", "feed_sla", "many.json", _text("[" + ",".join(["0"] * 110_000) + "]"), "too_many_values"),
    BadFile("JSON 5000-digit number", "feed_sla", "digits.json", _text(json.dumps([{
        "feed_code": "A", "expected_arrival_time": "07:30", "owner_team": "Ops"}])[:-2] + ', "sla_minutes": ' + "9" * 5000 + "}]"), "out_of_range"),
    BadFile("JSON number beyond float", "feed_sla", "float.json", _text('[{"feed_code": "A", "expected_arrival_time": "07:30", '
                                                                          '"owner_team": "Ops", "sla_minutes": 1e999}]'), "wrong_type"),
    BadFile("CSV value beyond the field limit", "feed_sla", "long_quote.csv", _text(HEADER + 'A,07:30,30,"Ops\n' + "x" * 140_000 + "\n"), "csv_value_too_long"),
    BadFile("workbook saved as .csv", "feed_sla", "actually_excel.csv", _bytes(workbook_bytes(GOOD_ROWS)), "workbook_named_as_text"),
    BadFile("CSV saved as .xlsx", "feed_sla", "actually_text.xlsx", _text(GOOD_CSV), "text_named_as_workbook"),
    BadFile("data on a hidden sheet", "feed_sla", "hidden.xlsx", _hidden_data_sheet, "hidden_sheet"),
    BadFile("data on the second sheet", "feed_sla", "second_sheet.xlsx", _data_on_second_sheet, "empty_file"),
    BadFile("feed code with a space", "feed_sla", "space_code.csv", _text(HEADER + "FEED A,07:30,30,Ops,\n"), "code_format"),
    BadFile("feed code in Greek letters", "feed_sla", "greek_code.csv", _text(HEADER + "\u0391\u0392\u0393_01,07:30,30,Ops,\n"), "code_format"),
    BadFile("feed code in full-width letters", "feed_sla", "fullwidth.csv", _text(HEADER + "\uff26\uff25\uff25\uff24,07:30,30,Ops,\n"), "code_format"),
    BadFile("project code too long for OWS", "project_metadata", "long_code.csv", _text("project_code\n" + "P" * 31 + "\n"), "too_long"),
    BadFile("time with seconds", "feed_sla", "seconds.csv", _text(HEADER + "FEED_A,08:30:45,30,Ops,\n"), "time_with_seconds"),
    BadFile("folder named like a data file", "feed_sla", "folder.csv", _folder, "folder"),
    BadFile("name with a line break", "feed_sla", "ok.csv\nERROR forged line.csv", _text(GOOD_CSV), "file_name"),
    BadFile("name with a terminal escape", "feed_sla", "x\x1b[31mred.csv", _text(GOOD_CSV), "file_name"),
    BadFile("name with a direction override", "feed_sla", "invoice\u202eslx.csv", _text(GOOD_CSV), "file_name"),
    BadFile("feed export before any project", "ows_export", "ows_feed_2026-11-01.csv", _text(
        FEED_HEADER + "10,1,SAP_GL_01,GL extract,SAP_GL,SOURCE,DAILY 06:00,Y,2025-01-01 00:00:00,2026-10-01 00:00:00\n"),
        "parents_not_loaded"),
    BadFile("file above the size limit", "feed_sla", "huge.csv", _too_big, "file_too_large"),
    BadFile("too many rows", "feed_sla", "many_rows.csv", _too_many_rows, "too_many_rows"),
    BadFile("too many columns", "feed_sla", "wide.csv", _too_many_columns, "too_many_columns"),
    BadFile("symlink", "feed_sla", "link.csv", _symlink, "symlink"),
]

# Names Windows, macOS and Excel produce: each loads, and is archived under a safe name keeping its extension.
PEOPLES_NAMES: list[tuple[str, str]] = [
    ("feed_sla", "Feed SLA (copy).csv"),
    ("feed_sla", "feed sla.csv"),
    ("feed_sla", "..sla.csv"),
    ("feed_sla", "\u00dcbersicht M\u00e4rz 2026.csv"),
    ("feed_sla", "SLA list - Copy (2).xlsx"),
    ("project_metadata", "proj\u00e9ts_\u2603.csv"),
    ("ows_export", "ows_project_2026-11-01 (1).csv"),
]

ACCEPTED_WITH_WARNINGS: list[BadFile] = [
    BadFile("unknown extra column", "feed_sla", "extra.csv", _text(HEADER.strip() + ",comment\n" + GOOD_ROW.strip() + ",hi\n"), "unknown_column"),
    BadFile("formula-like strings", "feed_sla", "formula.csv", _text(HEADER + 'FEED_A,07:30,30,"=HYPERLINK(""http://x"")",@SUM(A1)\n'), "formula_like"),
    BadFile("lower-case feed code", "feed_sla", "lower.csv", _text(HEADER + "feed_a,07:30,30,Ops,\n"), "normalised"),
    BadFile("code with a trailing line break", "feed_sla", "newline_code.csv", _text(HEADER + '"FEED_A\n",07:30,30,Ops,\n'), "normalised"),
    BadFile("time written 7:30", "feed_sla", "short_time.csv", _text(HEADER + "FEED_A,7:30,30,Ops,\n"), "normalised"),
    BadFile("time with zero seconds", "feed_sla", "zero_seconds.yaml", _text(
        "- feed_code: FEED_A\n  expected_arrival_time: 07:30:00\n  sla_minutes: 30\n  owner_team: Ops\n"), "normalised"),
]

"""Safe parsers for uploaded files: CSV, XLSX, JSON and YAML into one plain table shape.

Every parser works on the file's bytes (already size-checked), never evaluates anything
(no formulas, no macros, no YAML tags, no XML entities), keeps every value as written, and
refuses input that would cost far more to read than its size suggests (zip bombs, entity
bombs, expansion bombs) or longer than `max_parse_seconds`. A refusal raises `FileRejected`
with the row and the fix. CSV lives here; workbooks in `workbooks.py`, JSON and YAML in
`documents.py`.
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import PurePath

from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.parsed import UTF8_BOM, ParsedTable, decode_text, too_many_columns, too_many_rows
from ows_pipeline.uploads.problems import FileRejected, Problem, reject, shown

_BLANK = re.compile(rb"[ \t\r\n]*")
FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}

REFUSED_EXTENSIONS = {
    ".xlsm": "is a macro-enabled workbook (.xlsm); macros are never accepted",
    ".xltm": "is a macro-enabled template (.xltm); macros are never accepted",
    ".xlsb": "is a binary workbook (.xlsb), which cannot be checked safely",
    ".xls": "is a legacy Excel 97-2003 workbook (.xls)",
    ".xltx": "is an Excel template (.xltx)",
}


def file_format(name: str) -> str:
    """The format of a file from its extension, or a FileRejected naming the accepted ones."""
    from ows_pipeline.uploads.names import shown_name

    suffix = PurePath(name).suffix.lower()
    if suffix in REFUSED_EXTENSIONS:
        raise reject(
            "refused_format",
            f"'{shown_name(name)}' {REFUSED_EXTENSIONS[suffix]}",
            "save it as a plain .xlsx workbook (Excel: File > Save As > Excel Workbook), or as CSV UTF-8",
        )
    if suffix not in FORMATS:
        raise reject(
            "unknown_format",
            f"'{shown_name(name)}' has extension '{shown_name(suffix) or '(none)'}', which is not an accepted "
            "upload format",
            "upload a .csv (UTF-8), .xlsx, .json (array of objects) or .yaml/.yml (list of mappings) file",
        )
    return FORMATS[suffix]


def parse_file(name: str, data: bytes, limits: UploadLimits) -> ParsedTable:
    """Read an upload's bytes according to its extension."""
    from ows_pipeline.uploads.names import shown_name

    kind = file_format(name)
    if _BLANK.fullmatch(data, len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0):  # no copy of the file
        raise reject(
            "empty_file", f"'{shown_name(name)}' is empty", "upload a file with a header row and at least one data row"
        )
    if kind == "csv":
        table = parse_csv(data, limits)
    elif kind == "xlsx":
        from ows_pipeline.uploads.workbooks import parse_xlsx

        table = parse_xlsx(data, limits)
    else:
        from ows_pipeline.uploads import documents

        table = (documents.parse_json if kind == "json" else documents.parse_yaml)(data, limits)
    if len(table.columns) > limits.max_columns:
        raise too_many_columns(len(table.columns), limits, row=1)
    if not table.rows:
        unit = "data rows" if table.row_unit == "row" else "records"
        raise reject(
            "no_data_rows",
            f"the file has a header but no {unit}",
            "add the rows to load; to empty a reference list, contact the data team instead",
            row=1 if table.row_unit == "row" else None,
        )
    return table


# --- CSV ----------------------------------------------------------------------------------

_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}


def parse_csv(data: bytes, limits: UploadLimits) -> ParsedTable:
    """Comma-separated UTF-8 text, header on line 1. Values stay text (formula-like ones too)."""
    text = decode_text(data, "CSV file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple] = []
    numbers: list[int] = []
    start = 1
    try:
        header = next(reader, None)
        while header is not None and not any(c.strip() for c in header):
            header = next(reader, None)
        if header is None:
            raise reject("empty_file", "the CSV file has no header row", "put the column names on line 1")
        header_line = reader.line_num
        if len(header) == 1:
            for delimiter, name in _OTHER_DELIMITERS.items():
                if delimiter in header[0]:
                    raise reject(
                        "wrong_delimiter",
                        f"the header is a single column holding {name}: the file is separated by {name}, "
                        "not commas",
                        "save it as 'CSV UTF-8 (Comma delimited)'; in other tools choose ',' as the separator",
                        row=header_line,
                        value=shown(header[0]),
                    )
        width = len(header)
        if width > limits.max_columns:
            raise too_many_columns(width, limits, row=header_line)
        problems: list[Problem] = []
        start = reader.line_num + 1
        deadline = time.monotonic() + limits.max_parse_seconds
        for record in reader:
            line = start
            start = reader.line_num + 1
            if line % 4096 == 0 and time.monotonic() > deadline:
                raise reject(
                    "too_slow_to_read",
                    f"reading the CSV file took more than {limits.max_parse_seconds} seconds (at line {line:,})",
                    "split the file, or raise OWS_UPLOAD_MAX_PARSE_SECONDS",
                    row=line,
                )
            if len(record) != width:
                if not any(c.strip() for c in record):
                    continue  # a blank line
                problems.append(
                    Problem(
                        rule="row_width",
                        message=f"the row has {len(record)} values but the header has {width} columns",
                        fix="quote values that contain commas (\"a,b\") and check for missing or extra separators",
                        row=line,
                        value=shown(",".join(record)),
                    )
                )
                if len(problems) >= limits.max_problems:
                    break
                continue
            if len(rows) >= limits.max_rows:
                raise too_many_rows(limits, line)
            rows.append(tuple(record))
            numbers.append(line)
    except csv.Error as exc:
        raise _csv_error(exc, start, reader.line_num) from None
    if problems:
        raise FileRejected(problems)
    return ParsedTable(columns=[c.strip() for c in header], rows=rows, row_numbers=numbers)



def _csv_error(exc: csv.Error, start: int, line: int) -> FileRejected:
    """The CSV module's complaint in the user's words: where the record began, what went wrong."""
    text = str(exc)
    if "field larger than field limit" in text:
        limit = csv.field_size_limit()
        return reject(
            "csv_value_too_long",
            f"the record starting on line {start} holds a value of more than {limit:,} characters (read up to line "
            f"{line}): a double quote opened on line {start} is probably never closed, so the rest of the file "
            "reads as one value",
            f"check the double quotes on line {start}: close the quoted value, and write a quote inside a quoted "
            'value twice ("")',
            row=start,
        )
    if "unexpected end of data" in text or "EOF" in text:
        return reject(
            "csv_syntax",
            f"the file ends inside a quoted value that starts on line {start}",
            f"close the double quote opened on line {start}",
            row=start,
        )
    return reject(
        "csv_syntax",
        f"line {line} is not valid CSV ({shown(text)})",
        f"on line {line}, put quotes only around whole values (\"a,b\"), and write a quote inside a quoted "
        'value twice ("")',
        row=line,
    )

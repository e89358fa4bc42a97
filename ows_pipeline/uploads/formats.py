"""Safe parsers for uploaded files: CSV, XLSX, JSON and YAML into one plain table shape.

Every parser works on the file's bytes (already size-checked), never evaluates anything
(no formulas, no macros, no YAML tags, no XML entities) and refuses input that would
cost far more to read than its size suggests (zip bombs, entity bombs, alias bombs).
A refusal raises `FileRejected` with the row and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePath

from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.problems import FileRejected, Problem, reject, shown

FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}

_REFUSED_EXTENSIONS = {
    ".xlsm": "is a macro-enabled workbook (.xlsm); macros are never accepted",
    ".xltm": "is a macro-enabled template (.xltm); macros are never accepted",
    ".xlsb": "is a binary workbook (.xlsb), which cannot be checked safely",
    ".xls": "is a legacy Excel 97-2003 workbook (.xls)",
    ".xltx": "is an Excel template (.xltx)",
}

_CFB_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}
_UTF8_BOM = b"\xef\xbb\xbf"
_SAVE_AS_UTF8 = "save the file as 'CSV UTF-8 (Comma delimited)' (Excel) or re-encode it to UTF-8"
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass
class ParsedTable:
    """A file read as a header and rows of raw cell values, with each row's number in the file."""

    columns: list[str]
    rows: list[tuple] = field(default_factory=list)
    row_numbers: list[int] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # "row" for CSV/XLSX (header is row 1), "item" for JSON/YAML (first item is 1)
    row_unit: str = "row"


def file_format(name: str) -> str:
    """The format of a file from its extension, or a FileRejected naming the accepted ones."""
    suffix = PurePath(name).suffix.lower()
    if suffix in _REFUSED_EXTENSIONS:
        raise reject(
            "refused_format",
            f"'{name}' {_REFUSED_EXTENSIONS[suffix]}",
            "save it as a plain .xlsx workbook (Excel: File > Save As > Excel Workbook), or as CSV UTF-8",
        )
    if suffix not in FORMATS:
        raise reject(
            "unknown_format",
            f"'{name}' has extension '{suffix or '(none)'}', which is not an accepted upload format",
            "upload a .csv (UTF-8), .xlsx, .json (array of objects) or .yaml/.yml (list of mappings) file",
        )
    return FORMATS[suffix]


def parse_file(name: str, data: bytes, limits: UploadLimits) -> ParsedTable:
    """Read an upload's bytes according to its extension."""
    kind = file_format(name)
    if not data.strip(b" \t\r\n" + _UTF8_BOM):
        raise reject("empty_file", f"'{name}' is empty", "upload a file with a header row and at least one data row")
    parser = {"csv": parse_csv, "xlsx": parse_xlsx, "json": parse_json, "yaml": parse_yaml}[kind]
    table = parser(data, limits)
    if len(table.columns) > limits.max_columns:
        raise reject(
            "too_many_columns",
            f"the file has {len(table.columns)} columns, more than the limit of {limits.max_columns}",
            "remove unrelated columns, or raise OWS_UPLOAD_MAX_COLUMNS",
            row=1,
        )
    if not table.rows:
        unit = "data rows" if table.row_unit == "row" else "records"
        raise reject(
            "no_data_rows",
            f"the file has a header but no {unit}",
            "add the rows to load; to empty a reference list, contact the data team instead",
            row=1 if table.row_unit == "row" else None,
        )
    return table


def _too_many_rows(limits: UploadLimits, row: int) -> FileRejected:
    return reject(
        "too_many_rows",
        f"the file has more than {limits.max_rows:,} data rows",
        "split the file, or raise OWS_UPLOAD_MAX_ROWS",
        row=row,
    )


# --- text ---------------------------------------------------------------------------------


def decode_text(data: bytes, what: str = "text") -> str:
    """UTF-8 text, with or without a byte order mark; other encodings are refused with the line."""
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            raise reject("encoding", f"the {what} is encoded as {encoding}, not UTF-8", _SAVE_AS_UTF8, row=1)
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    if b"\x00" in data[:65536]:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise reject(
            "binary_content",
            f"the {what} contains NUL bytes at line {line}: it is binary or UTF-16 without a byte order mark",
            _SAVE_AS_UTF8,
            row=line,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1]
        raise reject(
            "encoding",
            f"the {what} is not valid UTF-8: byte 0x{bad.hex()} at line {line} "
            "(probably Windows-1252 or Latin-1 text)",
            _SAVE_AS_UTF8,
            row=line,
            value=shown(data[max(0, exc.start - 20) : exc.start + 20].decode("utf-8", "replace")),
        ) from None


# --- CSV ----------------------------------------------------------------------------------

_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}


def parse_csv(data: bytes, limits: UploadLimits) -> ParsedTable:
    """Comma-separated UTF-8 text, header on line 1. Values stay text (formula-like ones too)."""
    text = decode_text(data, "CSV file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple] = []
    numbers: list[int] = []
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
            raise reject(
                "too_many_columns",
                f"the file has {width} columns, more than the limit of {limits.max_columns}",
                "remove unrelated columns, or raise OWS_UPLOAD_MAX_COLUMNS",
                row=header_line,
            )
        problems: list[Problem] = []
        start = reader.line_num + 1
        for record in reader:
            line = start
            start = reader.line_num + 1
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
                raise _too_many_rows(limits, line)
            rows.append(tuple(record))
            numbers.append(line)
    except csv.Error as exc:
        raise reject(
            "csv_syntax",
            f"the CSV text cannot be read near line {reader.line_num}: {exc}",
            "close every opening double quote, and double the quotes inside quoted values (\"\")",
            row=reader.line_num,
        ) from None
    if problems:
        raise FileRejected(problems)
    return ParsedTable(columns=[c.strip() for c in header], rows=rows, row_numbers=numbers)


# --- XLSX ---------------------------------------------------------------------------------

_EXCEL_ERRORS = {"#N/A", "#REF!", "#VALUE!", "#DIV/0!", "#NAME?", "#NULL!", "#NUM!", "#SPILL!", "#CALC!"}
_BIG_ENTRY = 1024 * 1024


def check_workbook_container(data: bytes, limits: UploadLimits) -> None:
    """Refuse encrypted, macro-enabled, corrupt or bomb-like workbooks before any XML is parsed."""
    if data.startswith(_CFB_SIGNATURE):
        raise reject(
            "encrypted_workbook",
            "the workbook is password-protected (encrypted) or a legacy .xls file: it cannot be read safely",
            "remove the password (File > Info > Protect Workbook > Encrypt with Password: clear it) "
            "and save as .xlsx",
        )
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if data.startswith(b"PK\x03\x04") and len(data) > 1000:
            raise reject(
                "corrupt_workbook",
                f"the workbook is truncated or damaged: its zip directory is missing ({len(data):,} bytes; "
                "an interrupted copy or download?)",
                "copy or download the workbook again, completely",
            )
        raise reject(
            "corrupt_workbook",
            "the file is not a valid .xlsx workbook (not a zip container)",
            "open it in Excel and save it again as .xlsx, or export the data as CSV UTF-8",
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise reject("corrupt_workbook", f"the workbook cannot be opened: {exc}", "save it again as .xlsx") from None
    with archive:
        names = {e.filename.lower() for e in entries}
        if len(entries) > 10_000:
            raise reject("zip_bomb", f"the workbook holds {len(entries):,} parts", "save it again as a plain .xlsx")
        if any(n.endswith("vbaproject.bin") for n in names):
            raise reject(
                "macro_workbook",
                "the workbook contains macros (vbaProject.bin); macros are never accepted",
                "save it as a plain .xlsx workbook without macros",
            )
        if any(e.flag_bits & 0x1 for e in entries):
            raise reject("encrypted_workbook", "the workbook's parts are encrypted", "remove the password and save again")
        declared = sum(e.file_size for e in entries)
        if declared > limits.max_unzipped_bytes:
            raise reject(
                "zip_bomb",
                f"the workbook declares {declared:,} bytes of content, more than the limit of "
                f"{limits.max_unzipped_bytes:,} (OWS_UPLOAD_MAX_UNZIPPED_BYTES)",
                "split the data into smaller files, or export it as CSV",
            )
        for entry in entries:
            if entry.file_size > _BIG_ENTRY and entry.file_size > limits.max_zip_ratio * max(entry.compress_size, 1):
                raise reject(
                    "zip_bomb",
                    f"the workbook part '{entry.filename}' expands {entry.file_size // max(entry.compress_size, 1):,} "
                    f"times (limit {limits.max_zip_ratio}): a zip bomb or a corrupt file",
                    "export the data again from its source as .xlsx or CSV",
                )
        if "[content_types].xml" not in names or not any(n.startswith("xl/worksheets/") for n in names):
            raise reject(
                "corrupt_workbook",
                "the file is a zip archive but not an Excel workbook (no worksheet found)",
                "upload an .xlsx saved by Excel or another spreadsheet tool",
            )
        try:
            for entry in entries:
                if entry.filename.lower().endswith((".xml", ".rels", ".vml")):
                    _refuse_dtd(archive, entry)
        except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as exc:
            raise reject("corrupt_workbook", f"the workbook is damaged: {exc}", "save it again as .xlsx") from None
        content_types = archive.read("[Content_Types].xml") if "[Content_Types].xml" in archive.namelist() else b""
        if b"macroEnabled" in content_types:
            raise reject(
                "macro_workbook",
                "the workbook is macro-enabled (its content type says so)",
                "save it as a plain .xlsx workbook without macros",
            )


def _refuse_dtd(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> None:
    """Refuse XML parts declaring a DTD or entities: workbooks never need them; bombs do."""
    tail = b""
    with archive.open(entry) as stream:
        while chunk := stream.read(1 << 20):
            if _DTD.search(tail + chunk):
                raise reject(
                    "xml_entities",
                    f"the workbook part '{entry.filename}' declares a DTD or XML entities, "
                    "which workbooks never need (an XML entity bomb)",
                    "export the data again from its source as .xlsx or CSV",
                )
            tail = chunk[-16:]


def parse_xlsx(data: bytes, limits: UploadLimits) -> ParsedTable:
    """The first worksheet of a plain .xlsx; header on the first non-empty row. Formulas stay text."""
    check_workbook_container(data, limits)
    import openpyxl  # only when a workbook arrives

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False, keep_links=False)
    except Exception as exc:  # noqa: BLE001 - any failure to open means a corrupt workbook
        raise reject(
            "corrupt_workbook",
            f"the workbook cannot be opened: {type(exc).__name__}: {str(exc)[:200]}",
            "open it in Excel and save it again as .xlsx, or export the data as CSV UTF-8",
        ) from None
    try:
        return _read_first_sheet(workbook, limits)
    except FileRejected:
        raise
    except Exception as exc:  # noqa: BLE001
        raise reject(
            "corrupt_workbook",
            f"the worksheet cannot be read: {type(exc).__name__}: {str(exc)[:200]}",
            "open it in Excel and save it again as .xlsx, or export the data as CSV UTF-8",
        ) from None
    finally:
        workbook.close()


def _read_first_sheet(workbook, limits: UploadLimits) -> ParsedTable:
    if not workbook.worksheets:
        raise reject("corrupt_workbook", "the workbook has no worksheet", "put the data on the first sheet")
    sheet = workbook.worksheets[0]
    # Read cells as they are in the sheet, without padding to the declared dimension (formatting a
    # whole column declares 16,384 columns or 1,048,576 rows); limits are checked while reading.
    sheet.reset_dimensions()
    header: list[str] | None = None
    rows: list[tuple] = []
    numbers: list[int] = []
    problems: list[Problem] = []
    width = 0
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        if not any(v is not None and not (isinstance(v, str) and not v.strip()) for v in values):
            continue
        if header is None:
            header = [("" if v is None else str(v)).strip() for v in values]
            while header and not header[-1]:
                header.pop()
            width = len(header)
            if width > limits.max_columns:
                raise reject(
                    "too_many_columns",
                    f"the file has {width} columns, more than the limit of {limits.max_columns}",
                    "remove unrelated columns, or raise OWS_UPLOAD_MAX_COLUMNS",
                    row=number,
                )
            continue
        extra = [v for v in values[width:] if v is not None and not (isinstance(v, str) and not v.strip())]
        if extra:
            problems.append(
                Problem(
                    rule="row_width",
                    message=f"the row has values to the right of the last header column ({width} columns)",
                    fix="give every column a header, or delete the stray cells",
                    row=number,
                    value=shown(extra[0]),
                )
            )
        values = tuple(values[:width]) + (None,) * (width - len(values))
        for index, value in enumerate(values):
            if isinstance(value, str) and value in _EXCEL_ERRORS:
                problems.append(
                    Problem(
                        rule="excel_error",
                        message=f"the cell holds the Excel error {value}",
                        fix="fix the formula in Excel, or paste values only",
                        row=number,
                        field=header[index],
                        value=value,
                    )
                )
        if len(problems) >= limits.max_problems:
            break
        if len(rows) >= limits.max_rows:
            raise _too_many_rows(limits, number)
        rows.append(values)
        numbers.append(number)
    if header is None:
        raise reject("empty_file", "the first worksheet is empty", "put the column names on row 1 of the first sheet")
    if problems:
        raise FileRejected(problems)
    return ParsedTable(columns=header, rows=rows, row_numbers=numbers)


# --- JSON and YAML ------------------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))


def _records_table(records, what: str, limits: UploadLimits, scalar_types=_SCALARS) -> ParsedTable:
    """A list of flat mappings as a table: columns in order of first appearance; absent keys are null."""
    shape = "a JSON array of objects: [{...}, {...}]" if what == "JSON" else "a YAML list of mappings (- key: value)"
    if not isinstance(records, list):
        found = {"dict": "an object (mapping)", "str": "a text", "NoneType": "empty"}.get(
            type(records).__name__, f"a {type(records).__name__}"
        )
        raise reject(
            "not_a_list",
            f"the {what} document is {found}, not a list of records",
            f"write the file as {shape}",
        )
    if len(records) > limits.max_rows:
        raise _too_many_rows(limits, limits.max_rows + 1)
    columns: dict[str, int] = {}
    problems: list[Problem] = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            problems.append(
                Problem(
                    rule="not_a_record",
                    message=f"item {number} is a {type(record).__name__}, not a record",
                    fix=f"write the file as {shape}",
                    row=number,
                    value=shown(record),
                )
            )
            continue
        for key, value in record.items():
            if not isinstance(key, str):
                problems.append(
                    Problem(
                        rule="field_name",
                        message=f"field name {key!r} is not text",
                        fix="quote the field name",
                        row=number,
                        value=shown(key),
                    )
                )
                continue
            if not isinstance(value, scalar_types):
                problems.append(
                    Problem(
                        rule="nested_value",
                        message=f"the value is a {type(value).__name__}; only plain values are accepted",
                        fix="put one plain value (text, number, date, true/false or null) in each field",
                        row=number,
                        field=key,
                        value=shown(value),
                    )
                )
            if key not in columns:
                columns[key] = len(columns)
                if len(columns) > limits.max_columns:
                    raise reject(
                        "too_many_columns",
                        f"the records use more than {limits.max_columns} different fields",
                        "remove unrelated fields, or raise OWS_UPLOAD_MAX_COLUMNS",
                        row=number,
                    )
        if len(problems) >= limits.max_problems:
            break
    if problems:
        raise FileRejected(problems)
    names = list(columns)
    rows = [tuple(record.get(name) for name in names) for record in records]
    return ParsedTable(columns=names, rows=rows, row_numbers=list(range(1, len(rows) + 1)), row_unit="item")


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs):
    record = {}
    for key, value in pairs:
        if key in record:
            raise _DuplicateKey(key)
        record[key] = value
    return record


def _no_constant(name):
    raise ValueError(f"{name} is not a number")


def parse_json(data: bytes, limits: UploadLimits) -> ParsedTable:
    """A JSON array of flat objects; duplicate field names, NaN and Infinity are refused."""
    text = decode_text(data, "JSON file")
    try:
        records = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise reject(
            "duplicate_field",
            f"an object names the field '{exc}' twice",
            "keep one value per field in each object",
            field=str(exc),
        ) from None
    except json.JSONDecodeError as exc:
        raise reject(
            "json_syntax",
            f"the JSON text is invalid at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            "check the file with a JSON validator; it must be an array of objects",
            row=exc.lineno,
        ) from None
    except (ValueError, RecursionError) as exc:
        raise reject(
            "json_syntax",
            f"the JSON text cannot be read: {str(exc)[:200] or type(exc).__name__}",
            "write plain numbers (no NaN or Infinity) and flat objects",
        ) from None
    return _records_table(records, "JSON", limits)


def _yaml_loader(limits: UploadLimits):
    import yaml

    class LimitedSafeLoader(yaml.SafeLoader):
        """PyYAML's safe loader, counting aliases and refusing duplicate keys."""

        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.events.AliasEvent):
                self.aliases += 1
                if self.aliases > limits.max_yaml_aliases:
                    event = self.peek_event()
                    raise reject(
                        "yaml_aliases",
                        f"the YAML file uses more than {limits.max_yaml_aliases} aliases (*name): "
                        "an alias bomb, or a file that is not plain data",
                        "write the values out in full instead of using anchors (&) and aliases (*)",
                        row=event.start_mark.line + 1,
                    )
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _value in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key != "<<" and key in seen:
                    raise reject(
                        "duplicate_field",
                        f"a mapping names the field '{key}' twice (line {key_node.start_mark.line + 1})",
                        "keep one value per field in each record",
                        field=key,
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return LimitedSafeLoader


def parse_yaml(data: bytes, limits: UploadLimits) -> ParsedTable:
    """A YAML list of flat mappings, read with the safe loader (no tags) and an alias limit."""
    import datetime as dt

    import yaml

    text = decode_text(data, "YAML file")
    loader = _yaml_loader(limits)(text)
    try:
        records = loader.get_single_data()
    except FileRejected:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise reject(
            "yaml_syntax",
            f"the YAML text is invalid{f' at line {line}' if line else ''}: {exc.problem or exc.context}",
            "check the indentation and quote values containing ': ' or '#'; one document, a list of mappings",
            row=line,
        ) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise reject(
            "yaml_syntax", f"the YAML text cannot be read: {str(exc)[:200]}", "write a plain list of mappings"
        ) from None
    finally:
        loader.dispose()
    return _records_table(records, "YAML", limits, scalar_types=_SCALARS + (dt.date, dt.datetime))

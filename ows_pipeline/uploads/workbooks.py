"""Excel workbooks (.xlsx): the container checked before any XML is parsed, then the data sheet read.

Formulas are never evaluated (a formula cell is read as its text), macros, encryption, DTDs
and zip bombs are refused from the container, and the sheet is read row by row with the
row, column and time limits checked as it goes. The data sheet is the first visible one; a
workbook whose data sits on a hidden sheet is told so.
"""

from __future__ import annotations

import io
import re
import time
import zipfile

from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.parsed import CFB_SIGNATURE, ParsedTable, too_many_columns, too_many_rows
from ows_pipeline.uploads.problems import FileRejected, Problem, reject, shown

_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_EXCEL_ERRORS = {"#N/A", "#REF!", "#VALUE!", "#DIV/0!", "#NAME?", "#NULL!", "#NUM!", "#SPILL!", "#CALC!"}
_BIG_ENTRY = 1024 * 1024


def check_workbook_container(data: bytes, limits: UploadLimits) -> None:
    """Refuse encrypted, macro-enabled, corrupt or bomb-like workbooks before any XML is parsed."""
    if data.startswith(CFB_SIGNATURE):
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
        if _looks_like_text(data):
            raise reject(
                "text_named_as_workbook",
                "the file is text (a CSV or similar), not an Excel workbook, saved under an .xlsx name",
                "rename it to .csv (if it is comma separated UTF-8 text) and upload it again, or open it in Excel "
                "and save it as an Excel Workbook (.xlsx)",
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
                    f"the workbook part '{shown(entry.filename)}' expands {entry.file_size // max(entry.compress_size, 1):,} "
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


def _looks_like_text(data: bytes) -> bool:
    head = data[:4096]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a character cut at the end of the sample is fine
            return False
    return b"\x00" not in head and (b"," in head or b"\n" in head)


def _refuse_dtd(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> None:
    """Refuse XML parts declaring a DTD or entities: workbooks never need them; bombs do."""
    tail = b""
    with archive.open(entry) as stream:
        while chunk := stream.read(1 << 20):
            if _DTD.search(tail + chunk):
                raise reject(
                    "xml_entities",
                    f"the workbook part '{shown(entry.filename)}' declares a DTD or XML entities, "
                    "which workbooks never need (an XML entity bomb)",
                    "export the data again from its source as .xlsx or CSV",
                )
            tail = chunk[-16:]


def parse_xlsx(data: bytes, limits: UploadLimits) -> ParsedTable:
    """The first visible worksheet of a plain .xlsx; header on its first non-empty row. Formulas stay text."""
    check_workbook_container(data, limits)
    import openpyxl  # only when a workbook arrives

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False, keep_links=False)
    except Exception as exc:  # noqa: BLE001 - any failure to open means a corrupt workbook
        raise reject(
            "corrupt_workbook",
            f"the workbook cannot be opened ({shown(type(exc).__name__ + ': ' + str(exc)[:200])})",
            "open it in Excel and save it again as .xlsx, or export the data as CSV UTF-8",
        ) from None
    try:
        return _read_data_sheet(workbook, limits)
    except FileRejected:
        raise
    except Exception as exc:  # noqa: BLE001
        raise reject(
            "corrupt_workbook",
            f"the worksheet cannot be read ({shown(type(exc).__name__ + ': ' + str(exc)[:200])})",
            "open it in Excel and save it again as .xlsx, or export the data as CSV UTF-8",
        ) from None
    finally:
        workbook.close()


def _has_data(sheet) -> bool:
    sheet.reset_dimensions()
    for values in sheet.iter_rows(values_only=True):
        if _non_empty(values):
            return True
    return False


def _non_empty(values) -> bool:
    return any(v is not None and not (isinstance(v, str) and not v.strip()) for v in values)


def _read_data_sheet(workbook, limits: UploadLimits) -> ParsedTable:
    sheets = workbook.worksheets
    if not sheets:
        raise reject("corrupt_workbook", "the workbook has no worksheet", "put the data on the first sheet")
    visible = [s for s in sheets if getattr(s, "sheet_state", "visible") == "visible"] or sheets[:1]
    first = visible[0]
    table = _read_sheet(first, limits, time.monotonic() + limits.max_parse_seconds)
    if table is not None:
        return table
    others = [s for s in sheets if s is not first]
    with_data = next((s for s in others if _has_data(s)), None)
    if with_data is None:
        raise reject(
            "empty_file",
            f"the worksheet '{shown(first.title)}' is empty",
            f"put the column names on row 1 of the sheet '{shown(first.title)}' and the rows below",
        )
    if getattr(with_data, "sheet_state", "visible") != "visible":
        raise reject(
            "hidden_sheet",
            f"the visible worksheet '{shown(first.title)}' is empty; the data is on the hidden sheet "
            f"'{shown(with_data.title)}'",
            f"unhide it (right-click a sheet tab > Unhide > '{shown(with_data.title)}'), move it to the first "
            "position and delete the empty sheet, then save and upload again",
        )
    raise reject(
        "empty_file",
        f"the first worksheet '{shown(first.title)}' is empty; the data is on the sheet '{shown(with_data.title)}'",
        f"move the sheet '{shown(with_data.title)}' to the first position (drag its tab to the left), or delete "
        "the empty sheet, then save and upload again",
    )


def _read_sheet(sheet, limits: UploadLimits, deadline: float) -> ParsedTable | None:
    """The sheet as a table, or None when it holds no value at all."""
    # Read cells as they are in the sheet, without padding to the declared dimension (formatting a
    # whole column declares 16,384 columns or 1,048,576 rows); limits are checked while reading.
    sheet.reset_dimensions()
    header: list[str] | None = None
    rows: list[tuple] = []
    numbers: list[int] = []
    problems: list[Problem] = []
    width = 0
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        if number % 1000 == 0 and time.monotonic() > deadline:
            raise reject(
                "too_slow_to_read",
                f"reading the workbook took more than {limits.max_parse_seconds} seconds (at row {number:,})",
                "save the sheet as 'CSV UTF-8 (Comma delimited)' and upload that (read many times faster), "
                "or raise OWS_UPLOAD_MAX_PARSE_SECONDS",
                row=number,
            )
        if not _non_empty(values):
            continue
        if header is None:
            header = [("" if v is None else str(v)).strip() for v in values]
            while header and not header[-1]:
                header.pop()
            width = len(header)
            if width > limits.max_columns:
                raise too_many_columns(width, limits, row=number)
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
            raise too_many_rows(limits, number)
        rows.append(values)
        numbers.append(number)
    if header is None:
        return None
    if problems:
        raise FileRejected(problems)
    return ParsedTable(columns=header, rows=rows, row_numbers=numbers)

"""The one shape every parser returns, and what the text formats share: decoding and limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.problems import FileRejected, Problem, reject, shown

ZIP_SIGNATURE = b"PK\x03\x04"
CFB_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE compound file: .xls, encrypted .xlsx
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}
UTF8_BOM = b"\xef\xbb\xbf"
SAVE_AS_UTF8 = "save the file as 'CSV UTF-8 (Comma delimited)' (Excel) or re-encode it to UTF-8"


@dataclass
class ParsedTable:
    """A file read as a header and rows of raw cell values, with each row's number in the file."""

    columns: list[str]
    rows: list[tuple] = field(default_factory=list)
    row_numbers: list[int] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # "row" for CSV/XLSX (header is row 1), "item" for JSON/YAML (first item is 1)
    row_unit: str = "row"


def too_many_rows(limits: UploadLimits, row: int) -> FileRejected:
    return reject(
        "too_many_rows",
        f"the file has more than {limits.max_rows:,} data rows",
        "split the file, or raise OWS_UPLOAD_MAX_ROWS",
        row=row,
    )


def too_many_columns(count: int, limits: UploadLimits, row=None) -> FileRejected:
    return reject(
        "too_many_columns",
        f"the file has {count} columns, more than the limit of {limits.max_columns}",
        "remove unrelated columns, or raise OWS_UPLOAD_MAX_COLUMNS",
        row=row,
    )


def refuse_binary(data: bytes, what: str) -> None:
    """A workbook (or other binary file) under a text format's name, said as such."""
    if data.startswith(ZIP_SIGNATURE) or data.startswith(CFB_SIGNATURE):
        workbook = "an Excel workbook (.xlsx)" if data.startswith(ZIP_SIGNATURE) else "a legacy or encrypted Excel workbook"
        raise reject(
            "workbook_named_as_text",
            f"the {what} is really {workbook} saved under a .{what.split()[0].lower()} name",
            "rename it to .xlsx and upload it again, or open it in Excel and use File > Save As > "
            "'CSV UTF-8 (Comma delimited)'",
        )


def decode_text(data: bytes, what: str = "text") -> str:
    """UTF-8 text, with or without a byte order mark; other encodings are refused with the line."""
    refuse_binary(data, what)
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            raise reject("encoding", f"the {what} is encoded as {encoding}, not UTF-8", SAVE_AS_UTF8, row=1)
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    if b"\x00" in data[:65536]:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise reject(
            "binary_content",
            f"the {what} contains NUL bytes at line {line}: it is binary or UTF-16 without a byte order mark",
            SAVE_AS_UTF8,
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
            SAVE_AS_UTF8,
            row=line,
            value=shown(data[max(0, exc.start - 20) : exc.start + 20].decode("utf-8", "replace")),
        ) from None

"""Problems found in an uploaded file: each names the row, the field, the value, the rule and the fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

ERROR = "ERROR"
WARNING = "WARNING"

_VALUE_SHOWN = 200


@dataclass(frozen=True)
class Problem:
    """One problem in one file. `row` is the file's row (CSV/XLSX: header = 1; JSON/YAML: 1st item = 1)."""

    rule: str
    message: str
    fix: str = ""
    row: Optional[int] = None
    field: Optional[str] = None
    value: Optional[str] = None
    severity: str = ERROR

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field:
            where.append(f"field '{shown(self.field)}'")
        place = (", ".join(where) + ": ") if where else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{place}{self.message}.{fix}"


def shown(value) -> Optional[str]:
    """The value as text for an error report, cut to a readable length.

    Never renders a whole container (a YAML alias bomb expands to billions of values when
    printed): lists and mappings are described by their size; long text is cut before escaping.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict, set)):
        what = "a mapping" if isinstance(value, dict) else "a list"
        return f"({what} of {len(value):,} items)"
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: _VALUE_SHOWN * 4]).decode("utf-8", "replace")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 600:
        return f"(a whole number of about {int(value.bit_length() * 0.30103):,} digits)"
    if not isinstance(value, str):
        value = str(value)
    cut = len(value) > _VALUE_SHOWN
    text = "".join(_visible(c) for c in value[:_VALUE_SHOWN])
    return text + f"... ({len(value):,} characters)" if cut else text


def _visible(char: str) -> str:
    """Line breaks and control characters written as escapes, so a value never forges a line."""
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or 0x2028 <= ord(char) <= 0x202E or 0xD800 <= ord(char) <= 0xDFFF:
        return f"\\u{ord(char):04x}"
    return char


class FileRejected(Exception):
    """The whole file is refused; `problems` say why (at least one ERROR)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(p.describe() for p in self.problems[:3]))


def reject(rule: str, message: str, fix: str = "", **where) -> FileRejected:
    """A FileRejected carrying a single problem."""
    return FileRejected([Problem(rule=rule, message=message, fix=fix, **where)])

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
            where.append(f"field '{self.field}'")
        place = (", ".join(where) + ": ") if where else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{place}{self.message}.{fix}"


def shown(value) -> Optional[str]:
    """The value as text for an error report, cut to a readable length."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _VALUE_SHOWN else text[:_VALUE_SHOWN] + "..."


class FileRejected(Exception):
    """The whole file is refused; `problems` say why (at least one ERROR)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(p.describe() for p in self.problems[:3]))


def reject(rule: str, message: str, fix: str = "", **where) -> FileRejected:
    """A FileRejected carrying a single problem."""
    return FileRejected([Problem(rule=rule, message=message, fix=fix, **where)])

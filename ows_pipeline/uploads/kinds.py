"""Declared schemas of the upload kinds: columns, types, required fields and keys.

`validate(kind, table)` turns a parsed file into typed columns, or lists every problem.
Column names match case-insensitively, spaces and hyphens read as underscores.
Unknown extra columns are a warning and are ignored.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.uploads.formats import ParsedTable
from ows_pipeline.uploads.problems import WARNING, Problem, shown

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FORMULA_START = ("=", "+", "-", "@")
_INT = re.compile(r"[+-]?\d+")
_HHMM = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


class CellError(ValueError):
    """A value that does not fit its column: `rule`, a message and the fix."""

    def __init__(self, rule: str, message: str, fix: str):
        super().__init__(message)
        self.rule, self.message, self.fix = rule, message, fix


# --- column types ---------------------------------------------------------------------------


def _text(value, max_length: Optional[int], upper: bool) -> Optional[str]:
    if isinstance(value, bool):
        raise CellError("wrong_type", "a true/false value where text is expected", "write the text, in quotes in YAML")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (dt.date, dt.time)):
        raise CellError(
            "wrong_type", "a date or time where text is expected", "format the column as Text in Excel, or quote it"
        )
    text = str(value).strip()
    if not text:
        return None
    if _CONTROL.search(text):
        raise CellError("control_character", "the text holds control characters", "remove invisible characters")
    if upper:
        text = text.upper()
    if max_length is not None and len(text) > max_length:
        raise CellError(
            "too_long",
            f"the text has {len(text)} characters, more than the column's {max_length}",
            f"shorten it to at most {max_length} characters",
        )
    return text


def _integer(value, minimum: Optional[int], maximum: Optional[int]) -> Optional[int]:
    if isinstance(value, bool):
        raise CellError("wrong_type", "a true/false value where a whole number is expected", "write a number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise CellError("wrong_type", "a decimal where a whole number is expected", "write a whole number")
        number = int(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "") if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", value.strip()) else value.strip()
        if not text:
            return None
        if text.endswith(".0") and _INT.fullmatch(text[:-2]):
            text = text[:-2]
        if not _INT.fullmatch(text):
            raise CellError("wrong_type", "not a whole number", "write digits only, e.g. 30")
        number = int(text)
    else:
        raise CellError("wrong_type", f"a {type(value).__name__} where a whole number is expected", "write a number")
    if minimum is not None and number < minimum:
        raise CellError("out_of_range", f"{number} is below the minimum {minimum}", f"use a value >= {minimum}")
    if maximum is not None and number > maximum:
        raise CellError("out_of_range", f"{number} is above the maximum {maximum}", f"use a value <= {maximum}")
    return number


def _clock_time(value) -> Optional[str]:
    if isinstance(value, dt.datetime):
        value = value.time()
    if isinstance(value, dt.time):
        return f"{value.hour:02d}:{value.minute:02d}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise CellError(
            "wrong_type", "a number where a time of day is expected", "write the time as HH:MM, e.g. 07:30"
        )
    text = str(value).strip()
    if not text:
        return None
    match = _HHMM.fullmatch(text)
    if not match:
        raise CellError("wrong_type", "not a time of day", "write the time as HH:MM (24-hour clock), e.g. 07:30")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise CellError("impossible_time", f"{text} is not a time of day", "use 00:00 to 23:59")
    return f"{hour:02d}:{minute:02d}"


def _date(value) -> Optional[dt.date]:
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise CellError("wrong_type", "a date with a time of day where a date is expected", "write YYYY-MM-DD")
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise CellError("wrong_type", "not a date", "write the date as YYYY-MM-DD, e.g. 2026-11-01")
    text = value.strip()
    if not text:
        return None
    if not _DATE.fullmatch(text):
        raise CellError("wrong_type", "not a date in YYYY-MM-DD form", "write the date as YYYY-MM-DD, e.g. 2026-11-01")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CellError("impossible_date", f"{text} is not a calendar date", "check the day and month") from None


def _timestamp(value) -> Optional[dt.datetime]:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if not isinstance(value, str):
        raise CellError("wrong_type", "not a date and time", "write it as YYYY-MM-DD HH:MM:SS (UTC)")
    text = value.strip()
    if not text:
        return None
    match = _TIMESTAMP.fullmatch(text)
    if not match:
        raise CellError(
            "wrong_type", "not a date and time", "write it as YYYY-MM-DD HH:MM:SS, in UTC or with an offset (+01:00)"
        )
    year, month, day, hour, minute, second = (int(match[i] or 0) for i in range(1, 7))
    micro = int((match[7] or "0").ljust(6, "0"))
    zone = match[8]
    tz = dt.timezone.utc
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        stamp = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        raise CellError("impossible_date", f"{text} is not a real date and time", "check the day, month and hour") from None
    return stamp.astimezone(dt.timezone.utc)


def _flag(value) -> Optional[str]:
    if isinstance(value, bool):
        return "Y" if value else "N"
    text = str(value).strip().upper() if value is not None else ""
    if not text:
        return None
    if text in ("Y", "N"):
        return text
    raise CellError("wrong_value", "not a Y/N flag", "write Y or N")


@dataclass(frozen=True)
class Column:
    """One declared column: its type, whether its value is required, and whether it is part of the key."""

    name: str
    type: str  # text, code (upper-cased text), integer, clock_time, date, timestamp, flag
    required: bool = False
    key: bool = False
    max_length: Optional[int] = None
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    description: str = ""

    def convert(self, value):
        if value is None:
            return None
        if self.type in ("text", "code"):
            return _text(value, self.max_length, upper=self.type == "code")
        if self.type == "integer":
            return _integer(value, self.minimum, self.maximum)
        if self.type == "clock_time":
            return _clock_time(value)
        if self.type == "date":
            return _date(value)
        if self.type == "timestamp":
            return _timestamp(value)
        if self.type == "flag":
            return _flag(value)
        raise AssertionError(self.type)


@dataclass(frozen=True)
class Kind:
    """An upload kind: its landing sub-folder, its columns and the asset it loads."""

    name: str
    columns: tuple[Column, ...]
    asset_key: str
    description: str = ""
    # Reference lists may leave out optional columns; exports must carry every column of their table.
    all_columns_present: bool = False

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


FEED_SLA = Kind(
    name="feed_sla",
    asset_key="ref_feed_sla",
    description="When each feed is expected, how late it may be, and who to call.",
    columns=(
        Column("feed_code", "code", required=True, key=True, max_length=30, description="OWS feed code"),
        Column(
            "expected_arrival_time", "clock_time", required=True, description="HH:MM local time (OWS_TIMEZONE)"
        ),
        Column("sla_minutes", "integer", required=True, minimum=0, maximum=7 * 24 * 60, description="minutes of grace"),
        Column("owner_team", "text", required=True, max_length=100),
        Column("escalation_contact", "text", max_length=200, description="e-mail or phone"),
    ),
)

PROJECT_METADATA = Kind(
    name="project_metadata",
    asset_key="ref_project_metadata",
    description="Business unit, cost centre and owner of each OWS project.",
    columns=(
        Column("project_code", "code", required=True, key=True, max_length=30, description="OWS project code"),
        Column("business_unit", "text", max_length=50),
        Column("cost_centre", "code", max_length=30),
        Column("owner", "text", max_length=100),
    ),
)

REFERENCE_KINDS: dict[str, Kind] = {k.name: k for k in (FEED_SLA, PROJECT_METADATA)}
KIND_NAMES: tuple[str, ...] = ("feed_sla", "project_metadata", "ows_export")


def _column_from_source(column: sa.Column) -> Column:
    type_ = column.type
    if isinstance(type_, sa.Integer):
        kind = "integer"
    elif isinstance(type_, sa.TIMESTAMP) or isinstance(type_, sa.DateTime):
        kind = "timestamp"
    elif isinstance(type_, sa.Date):
        kind = "date"
    elif column.name == "active_flag":
        kind = "flag"
    else:
        kind = "text"
    return Column(
        column.name,
        kind,
        required=not column.nullable,
        key=column.primary_key,
        max_length=getattr(type_, "length", None) if kind == "text" else None,
    )


def export_kind(table: sa.Table) -> Kind:
    """The schema of a manual export of one OWS table: its source columns and types."""
    return Kind(
        name="ows_export",
        asset_key=f"stg_{table.name}",
        description=f"Manual export of {table.name}.",
        columns=tuple(_column_from_source(c) for c in table.columns),
        all_columns_present=True,
    )


# --- validation -----------------------------------------------------------------------------


def normalise_name(name: str) -> str:
    """`Feed Code` and `feed-code` read as `feed_code`."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


@dataclass
class ValidatedRows:
    """Typed columns of a valid file, in file order, with each row's number."""

    columns: dict[str, list]
    row_numbers: list[int]
    warnings: list[Problem]

    def __len__(self) -> int:
        return len(self.row_numbers)

    def records(self) -> list[dict]:
        names = list(self.columns)
        return [dict(zip(names, values)) for values in zip(*(self.columns[n] for n in names))]


def match_header(kind: Kind, table: ParsedTable) -> tuple[dict[str, int], list[Problem], list[Problem]]:
    """Positions of the declared columns in the file, header problems, and warnings (unknown columns)."""
    problems: list[Problem] = []
    warnings: list[Problem] = list(table.warnings)
    header_row = 1 if table.row_unit == "row" else None
    positions: dict[str, int] = {}
    for index, raw in enumerate(table.columns):
        name = normalise_name(raw)
        if not name:
            if any(row[index] not in (None, "") for row in table.rows):
                problems.append(
                    Problem(
                        "missing_header",
                        f"column {index + 1} has values but no name",
                        "name the column in the header row, or delete it",
                        row=header_row,
                    )
                )
            continue
        if name in positions:
            problems.append(
                Problem(
                    "duplicate_column",
                    f"the column '{raw}' appears twice",
                    "keep one column of each name",
                    row=header_row,
                    field=raw,
                )
            )
            continue
        positions[name] = index
    declared = {c.name for c in kind.columns}
    for name in positions:
        if name not in declared:
            warnings.append(
                Problem(
                    "unknown_column",
                    f"the column '{table.columns[positions[name]]}' is not part of the {kind.name} schema and is ignored",
                    f"expected columns: {', '.join(kind.column_names)}",
                    row=header_row,
                    field=table.columns[positions[name]],
                    severity=WARNING,
                )
            )
    for column in kind.columns:
        needed = kind.all_columns_present or column.required or column.key
        if column.name not in positions and needed:
            problems.append(
                Problem(
                    "missing_column",
                    f"the required column '{column.name}' is missing",
                    f"add a '{column.name}' column; expected columns: {', '.join(kind.column_names)}",
                    row=header_row,
                    field=column.name,
                )
            )
    return {n: i for n, i in positions.items() if n in declared}, problems, warnings


def validate(kind: Kind, table: ParsedTable, max_problems: int = 10_000) -> tuple[Optional[ValidatedRows], list[Problem]]:
    """Typed rows and warnings, or None and every problem (capped at `max_problems`, the rest counted)."""
    positions, problems, warnings = match_header(kind, table)
    if problems:
        return None, problems

    present = [c for c in kind.columns if c.name in positions]
    columns: dict[str, list] = {c.name: [] for c in kind.columns}
    total_errors = 0
    formula_warnings = 0
    for values, number in zip(table.rows, table.row_numbers):
        for column in present:
            raw = values[positions[column.name]]
            try:
                value = column.convert(raw)
            except CellError as exc:
                total_errors += 1
                if len(problems) < max_problems:
                    problems.append(
                        Problem(exc.rule, exc.message, exc.fix, row=number, field=column.name, value=shown(raw))
                    )
                continue
            if value is None and column.required:
                total_errors += 1
                if len(problems) < max_problems:
                    problems.append(
                        Problem(
                            "required",
                            "the value is required but empty",
                            f"fill in '{column.name}' on every row",
                            row=number,
                            field=column.name,
                        )
                    )
            elif isinstance(value, str) and value.startswith(_FORMULA_START) and column.type == "text":
                formula_warnings += 1
                if formula_warnings <= 100:
                    warnings.append(
                        Problem(
                            "formula_like",
                            "the text starts like a spreadsheet formula; it is kept as text and never evaluated",
                            "nothing to do if the text is meant; otherwise correct the value",
                            row=number,
                            field=column.name,
                            value=shown(value),
                            severity=WARNING,
                        )
                    )
            columns[column.name].append(value)
        for column in kind.columns:
            if column.name not in positions:
                columns[column.name].append(None)
    if not problems:
        problems.extend(_duplicate_keys(kind, columns, table.row_numbers, max_problems))
        total_errors = len(problems)
    if problems:
        if total_errors > len(problems):
            problems.append(
                Problem(
                    "more_problems",
                    f"{total_errors - len(problems):,} more problems are not listed (limit {max_problems:,})",
                    "fix the problems above and upload again, or raise OWS_UPLOAD_MAX_PROBLEMS",
                )
            )
        return None, problems
    return ValidatedRows(columns=columns, row_numbers=list(table.row_numbers), warnings=warnings), []


def _duplicate_keys(kind: Kind, columns: dict[str, list], numbers: list[int], max_problems: int) -> list[Problem]:
    key = kind.key
    if not key:
        return []
    first_seen: dict[tuple, int] = {}
    problems: list[Problem] = []
    for values, number in zip(zip(*(columns[k] for k in key)), numbers):
        if values in first_seen:
            if len(problems) < max_problems:
                problems.append(
                    Problem(
                        "duplicate_key",
                        f"the key {', '.join(key)} = {', '.join(map(str, values))} already appears on row "
                        f"{first_seen[values]}",
                        "keep one row per key",
                        row=number,
                        field=",".join(key),
                        value=shown(", ".join(map(str, values))),
                    )
                )
        else:
            first_seen[values] = number
    return problems

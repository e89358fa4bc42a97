"""Declared schemas of the upload kinds, read from the warehouse tables they load.

A reference kind's columns, types, lengths, required fields and key come from its table
(`ref_feed_sla`, `ref_project_metadata`); an OWS code column also takes the staging rules of
the OWS column it must match (`feed_code` against `ows_feed.feed_code`: the same code format
and length), so a code that can never join is refused with the reason. Only what a table
cannot say is declared here: which text columns are codes or clock times, and number ranges.
`validate(kind, table)` types a parsed file (see `values.py`), or lists every problem; a value
normalised on the way is kept with a warning naming the change.
Column names match case-insensitively, spaces and hyphens read as underscores.
Unknown extra columns are a warning and are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.uploads import values as typing
from ows_pipeline.uploads.parsed import ParsedTable
from ows_pipeline.uploads.problems import WARNING, Problem, shown

_FORMULA_START = ("=", "+", "-", "@")
MAX_LISTED_WARNINGS = 1000


@dataclass(frozen=True)
class Column:
    """One declared column: its type, whether its value is required, and whether it is part of the key."""

    name: str
    type: str  # text, code (upper-cased text), integer, clock_time; exports: their source types
    required: bool = False
    key: bool = False
    max_length: Optional[int] = None
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    pattern: Optional[str] = None  # codes: the staging code format they must match
    matches: str = "code"  # what a code names, in messages: "OWS feed code"

    def convert(self, value) -> typing.Typed:
        if self.type == "text":
            return typing.text(value, self.max_length)
        if self.type == "code":
            return typing.code(value, self.max_length, self.pattern, self.matches)
        if self.type == "integer":
            return typing.integer(value, self.minimum, self.maximum)
        if self.type == "clock_time":
            return typing.clock_time(value)
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


def reference_kind(
    name: str,
    table: sa.Table,
    *,
    codes: dict[str, Optional[sa.Column]],
    clock_times: tuple[str, ...] = (),
    ranges: Optional[dict[str, tuple[int, int]]] = None,
    description: str = "",
) -> Kind:
    """The kind loading `table`; `codes` maps each code column to the OWS column it must match (or None)."""
    from ows_pipeline.staging.suites import CODE_FORMAT

    ranges = ranges or {}
    columns = []
    for column in table.columns:
        if column.name.startswith("_"):
            continue  # bookkeeping, written by the load
        length = getattr(column.type, "length", None)
        extra: dict = {}
        if column.name in codes:
            kind = "code"
            source = codes[column.name]
            if source is not None:
                length = min(length, source.type.length)
                extra = {"pattern": CODE_FORMAT.strip("^$"), "matches": f"OWS {source.name.replace('_', ' ')}"}
        elif column.name in clock_times:
            kind, length = "clock_time", None
        elif isinstance(column.type, sa.Integer):
            kind, length = "integer", None
            extra = dict(zip(("minimum", "maximum"), ranges.get(column.name, (None, None))))
        else:
            kind = "text"
        columns.append(
            Column(column.name, kind, required=not column.nullable, key=column.primary_key, max_length=length, **extra)
        )
    return Kind(name=name, asset_key=table.name, description=description, columns=tuple(columns))


def _reference_kinds() -> dict[str, Kind]:
    from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
    from ows_pipeline.warehouse.schema.uploads import ref_feed_sla, ref_project_metadata

    feed = SOURCE_TABLES_BY_NAME["ows_feed"].table
    project = SOURCE_TABLES_BY_NAME["ows_project"].table
    return {
        "feed_sla": reference_kind(
            "feed_sla", ref_feed_sla,
            codes={"feed_code": feed.c.feed_code},
            clock_times=("expected_arrival_time",),
            ranges={"sla_minutes": (0, 7 * 24 * 60)},
            description="When each feed is expected, how late it may be, and who to call.",
        ),
        "project_metadata": reference_kind(
            "project_metadata", ref_project_metadata,
            codes={"project_code": project.c.project_code, "cost_centre": None},
            description="Business unit, cost centre and owner of each OWS project.",
        ),
    }


REFERENCE_KINDS: dict[str, Kind] = _reference_kinds()
FEED_SLA = REFERENCE_KINDS["feed_sla"]
PROJECT_METADATA = REFERENCE_KINDS["project_metadata"]
KIND_NAMES: tuple[str, ...] = ("feed_sla", "project_metadata", "ows_export")


def export_kind(table: sa.Table) -> Kind:
    """The header of a manual export of one OWS table: every source column (typed later by staging)."""
    return Kind(
        name="ows_export",
        asset_key=f"stg_{table.name}",
        description=f"Manual export of {table.name}.",
        columns=tuple(Column(c.name, "text", required=not c.nullable, key=c.primary_key) for c in table.columns),
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
                    f"the column '{shown(raw)}' appears twice",
                    "keep one column of each name",
                    row=header_row,
                    field=shown(raw),
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
                    f"the column '{shown(table.columns[positions[name]])}' is not part of the {kind.name} schema and is ignored",
                    f"expected columns: {', '.join(kind.column_names)}",
                    row=header_row,
                    field=shown(table.columns[positions[name]]),
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
    noted = 0

    def warn(rule: str, message: str, fix: str, **where) -> None:
        nonlocal noted
        noted += 1
        if noted <= MAX_LISTED_WARNINGS:
            warnings.append(Problem(rule, message, fix, severity=WARNING, **where))

    for values, number in zip(table.rows, table.row_numbers):
        for column in present:
            raw = values[positions[column.name]]
            try:
                typed = column.convert(raw)
            except typing.CellError as exc:
                total_errors += 1
                if len(problems) < max_problems:
                    problems.append(
                        Problem(exc.rule, exc.message, exc.fix, row=number, field=column.name, value=shown(raw))
                    )
                continue
            value = typed.value
            if typed.note:
                warn("normalised", f"the value was changed on loading: {typed.note}",
                     "nothing to do if that is meant; otherwise write the value as it should be stored",
                     row=number, field=column.name, value=shown(raw))
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
                warn("formula_like", "the text starts like a spreadsheet formula; it is kept as text and never evaluated",
                     "nothing to do if the text is meant; otherwise correct the value",
                     row=number, field=column.name, value=shown(value))
            columns[column.name].append(value)
        for column in kind.columns:
            if column.name not in positions:
                columns[column.name].append(None)
    if not problems:
        problems.extend(_duplicate_keys(kind, columns, table.row_numbers, max_problems))
        total_errors = len(problems)
    if noted > MAX_LISTED_WARNINGS:
        warnings.append(Problem("more_warnings", f"{noted - MAX_LISTED_WARNINGS:,} more warnings are not listed",
                                "see the warnings above: the others are of the same kinds", severity=WARNING))
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

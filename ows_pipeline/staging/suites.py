"""Expectation suites in code: one per staging table, reviewed like code.

A suite is a tuple of `Rule`s. Each rule names the columns it looks at, its kind (how it is
evaluated, see `ows_pipeline.staging.rules`), its parameters and its severity: ERROR
quarantines the failing row, WARN only reports it. Every rule becomes one Dagster asset
check on its staging asset and one or more Great Expectations expectations
(`ows_pipeline.staging.gx_runner`).

Generic rules come from the source schema (not-null columns, string lengths, key
uniqueness, value types); the rest is written out per table below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME

ERROR = "ERROR"
WARN = "WARN"

# Code columns are trimmed and upper-cased by the cleaning step.
CODE_COLUMNS = frozenset(
    {
        "project_code", "feed_code", "process_code", "workflow_code", "side", "step_type", "status",
        "result_code", "activity_status", "from_status", "to_status",
    }
)
FLAG_COLUMNS = frozenset({"active_flag"})
# Names and free text shown to people: longer than the column is a WARN, cut to the limit and kept.
# Identifiers and codes (run keys, codes, user ids, versions) longer than the column are an ERROR.
DISPLAY_COLUMNS = frozenset(
    {
        "project_name", "business_unit", "owner", "feed_name", "source_system", "expected_schedule",
        "process_name", "workflow_name", "step_label", "error_message",
    }
)

CODE_FORMAT = r"^[A-Z0-9][A-Z0-9_.\-]*$"
RESULT_CODE_FORMAT = r"^#?[A-Z][A-Z0-9_]*$"

RUN_STATUSES = ("ACTIVE", "COMPLETE", "ERROR", "SUSPEND")
ACTIVITY_STATUSES = ("COMPLETE", "ACTIVE", "WAITING", "NOTIFIED", "SUSPEND", "DEFERRED", "ERROR")
# End states of runs and steps: matching outcomes, forced or failed ends, step outcomes.
KNOWN_RESULT_CODES = ("MATCHED", "BREAKS", "PARTIAL", "NO_DATA", "#FORCE", "#EXCEPTION", "#TIMEOUT",
                      "LOADED", "DONE", "APPROVED")
STEP_TYPES = ("LOAD", "MATCH", "NOTICE", "FUNCTION")
FEED_SIDES = ("SOURCE", "TARGET")


@dataclass(frozen=True)
class Rule:
    """One validation rule of a staging table.

    kind: not_null, valid_type, max_length, unique, allowed_values, code_format, min_value,
    not_before (column >= other column), not_in_future, references, one_open_per_key,
    display_length (a name or free text longer than its column: cut and kept, always WARN).
    """

    name: str
    kind: str
    columns: tuple[str, ...]
    description: str
    severity: str = ERROR
    params: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _source(table_name: str) -> sa.Table:
    return SOURCE_TABLES_BY_NAME[table_name].table


def key_columns(table_name: str) -> tuple[str, ...]:
    return SOURCE_TABLES_BY_NAME[table_name].key


def _generic_rules(table_name: str) -> list[Rule]:
    table = _source(table_name)
    key = key_columns(table_name)
    required = tuple(c.name for c in table.columns if not c.nullable or c.primary_key)
    lengths = {c.name: c.type.length for c in table.columns if isinstance(c.type, sa.String) and c.type.length and c.name not in FLAG_COLUMNS}
    display = {name: length for name, length in lengths.items() if name in DISPLAY_COLUMNS}
    lengths = {name: length for name, length in lengths.items() if name not in DISPLAY_COLUMNS}
    typed = tuple(c.name for c in table.columns if not isinstance(c.type, sa.String) or c.name in FLAG_COLUMNS)
    display_rules = [Rule(
        "display_length", "display_length", tuple(display),
        "Names and free texts fit their column; a longer one is cut to the column size and the row kept.",
        WARN, params={"lengths": display},
    )] if display else []
    return [
        Rule(
            "valid_type", "valid_type", typed,
            "Numbers, timestamps, dates and Y/N flags parse to their type.",
        ),
        Rule(
            "not_null", "not_null", required,
            f"Required columns are present: {', '.join(required)}.",
        ),
        Rule(
            "max_length", "max_length", tuple(lengths),
            "Identifiers and codes fit the source column sizes.", params={"lengths": lengths},
        ),
        *display_rules,
        Rule(
            "unique_key", "unique", key,
            f"The key ({', '.join(key)}) is unique in the batch; every row sharing a duplicated key is rejected.",
        ),
    ]


def _allowed(name: str, column: str, values: tuple[str, ...], severity: str = ERROR) -> Rule:
    return Rule(
        name, "allowed_values", (column,), f"{column} is one of {', '.join(values)}.", severity,
        params={"values": values},
    )


def _code(name: str, column: str, regex: str = CODE_FORMAT) -> Rule:
    return Rule(name, "code_format", (column,), f"{column} matches {regex}.", params={"regex": regex})


def _min(name: str, columns: tuple[str, ...], minimum: int) -> Rule:
    return Rule(name, "min_value", columns, f"{', '.join(columns)} >= {minimum}.", params={"min": minimum})


def _not_before(name: str, column: str, other: str) -> Rule:
    return Rule(name, "not_before", (column, other), f"{column} >= {other} when both are set.")


def _references(name: str, column: str, parent: str, parent_column: str, severity: str = ERROR) -> Rule:
    return Rule(
        name, "references", (column,),
        f"{column} exists in stg_{parent}.{parent_column} (when set).", severity,
        params={"table": f"stg_{parent}", "column": parent_column},
    )


def _unique(name: str, columns: tuple[str, ...]) -> Rule:
    return Rule(name, "unique", columns, f"({', '.join(columns)}) is unique in the batch.")


FUTURE_TOLERANCE_DAYS = 1
"""Business dates may be at most this many days after the batch's as-of time (time zones)."""

_SPECIFIC: dict[str, list[Rule]] = {
    "ows_project": [
        _unique("unique_project_code", ("project_code",)),
        _code("project_code_format", "project_code"),
    ],
    "ows_feed": [
        _unique("unique_feed_code", ("project_id", "feed_code")),
        _code("feed_code_format", "feed_code"),
        _allowed("allowed_side", "side", FEED_SIDES),
        _references("feed_project_exists", "project_id", "ows_project", "project_id"),
    ],
    "ows_match_process": [
        _code("process_code_format", "process_code"),
        _min("position_not_negative", ("position",), 0),
        _references("match_process_project_exists", "project_id", "ows_project", "project_id"),
        _references("from_feed_exists", "from_feed_id", "ows_feed", "feed_id"),
        _references("to_feed_exists", "to_feed_id", "ows_feed", "feed_id"),
    ],
    "ows_workflow": [
        _unique("unique_workflow_version", ("workflow_code", "version")),
        _code("workflow_code_format", "workflow_code"),
        _min("version_positive", ("version",), 1),
        _not_before("end_date_after_begin_date", "end_date", "begin_date"),
        _references("workflow_project_exists", "project_id", "ows_project", "project_id"),
    ],
    "ows_workflow_step": [
        _allowed("allowed_step_type", "step_type", STEP_TYPES),
        _min("seq_not_negative", ("seq",), 0),
        _references("step_workflow_exists", "workflow_id", "ows_workflow", "workflow_id"),
        _references("step_feed_exists", "feed_id", "ows_feed", "feed_id"),
        _references("step_match_process_exists", "match_process_id", "ows_match_process", "match_process_id"),
    ],
    "ows_workflow_run": [
        _allowed("allowed_status", "status", RUN_STATUSES),
        _code("result_code_format", "result_code", RESULT_CODE_FORMAT),
        _allowed("known_result_code", "result_code", KNOWN_RESULT_CODES, WARN),
        _min("counts_not_negative", ("records_loaded", "matched_cnt", "suggested_cnt", "unmatched_cnt"), 0),
        _not_before("end_date_after_begin_date", "end_date", "begin_date"),
        Rule(
            "business_date_not_in_future", "not_in_future", ("business_date",),
            f"business_date is at most {FUTURE_TOLERANCE_DAYS} day after the batch's as-of date.",
            params={"tolerance_days": FUTURE_TOLERANCE_DAYS},
        ),
        _references("run_workflow_exists", "workflow_id", "ows_workflow", "workflow_id"),
        Rule(
            "one_open_run_per_key", "one_open_per_key", ("run_key",),
            "At most one open run (end_date null) per run_key, counting staged runs; "
            "every open run of a run_key with several is rejected.",
            params={"open_column": "end_date", "id_column": "run_id", "table": "stg_ows_workflow_run"},
        ),
    ],
    "ows_run_step_status": [
        _allowed("allowed_activity_status", "activity_status", ACTIVITY_STATUSES),
        _code("result_code_format", "result_code", RESULT_CODE_FORMAT),
        _not_before("end_date_after_begin_date", "end_date", "begin_date"),
        _references("status_run_exists", "run_id", "ows_workflow_run", "run_id"),
        _references("status_step_exists", "step_id", "ows_workflow_step", "step_id"),
    ],
    "ows_run_step_history": [
        _allowed("allowed_to_status", "to_status", ACTIVITY_STATUSES),
        _allowed("allowed_from_status", "from_status", ACTIVITY_STATUSES),
        _code("result_code_format", "result_code", RESULT_CODE_FORMAT),
        _references("history_run_exists", "run_id", "ows_workflow_run", "run_id"),
        _references("history_step_exists", "step_id", "ows_workflow_step", "step_id"),
    ],
}


def suite_for(table_name: str) -> tuple[Rule, ...]:
    """The rules of `stg_<table_name>` (`table_name` is the OWS name, e.g. `ows_feed`)."""
    rules = _generic_rules(table_name) + _SPECIFIC[table_name]
    names = [r.name for r in rules]
    assert len(names) == len(set(names)), f"duplicate rule names in {table_name}: {names}"
    return tuple(rules)


def referenced_tables(table_name: str) -> tuple[str, ...]:
    """The staging tables whose keys `table_name`'s rules look up (its staging dependencies)."""
    seen: list[str] = []
    for rule in suite_for(table_name):
        if rule.kind == "references" and rule.params["table"] != f"stg_{table_name}":
            if rule.params["table"] not in seen:
                seen.append(rule.params["table"])
    return tuple(seen)


SUITES: dict[str, tuple[Rule, ...]] = {name: suite_for(name) for name in SOURCE_TABLES_BY_NAME}

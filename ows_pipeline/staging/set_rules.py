"""The set-based rules of a staging batch, run in the warehouse over the batch's work table.

Uniqueness, references and one open run per key look at other rows: the whole batch (every
chunk), the staged tables, the staged rows the batch keeps. Each rule is one
`INSERT INTO <errors work table> SELECT ...`, so a batch of any size is checked completely
without holding it in Python. Values are written as text as the pandas path writes them
(these rules only compare whole numbers and texts).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.staging.suites import Rule
from ows_pipeline.warehouse.schema.raw import RAW_TABLES
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES

PARENT_REJECTED = "rejected because its {parent} was"
"""Marks the reference failures whose parent is in the raw table but was rejected by its own rules."""

NOUNS = {
    "ows_project": ("project", "projects"), "ows_feed": ("feed", "feeds"),
    "ows_match_process": ("match process", "match processes"), "ows_workflow": ("workflow", "workflows"),
    "ows_workflow_step": ("workflow step", "workflow steps"), "ows_workflow_run": ("run", "runs"),
    "ows_run_step_status": ("step status", "step statuses"), "ows_run_step_history": ("step history row", "step history rows"),
}


@dataclass(frozen=True)
class Where:
    """What every `data_errors` row of the batch carries."""

    table_name: str
    batch_id: str
    source_file: Optional[str]
    created_at: dt.datetime
    mode: str

    @property
    def asset_key(self) -> str:
        return f"stg_{self.table_name}"


def _text(column) -> sa.ColumnElement:
    return sa.cast(column, sa.String)


def _insert(conn, errs: sa.Table, work: sa.Table, where: Where, rule: Rule, field: str, value, message,
            condition, joined=None) -> None:
    c = errs.c
    source = work if joined is None else joined
    select = sa.select(
        sa.literal(where.batch_id, c.batch_id.type), sa.literal(where.asset_key, c.asset_key.type),
        sa.literal(where.source_file, c.source_file.type), work.c._row_number, work.c._record_key,
        sa.literal(field, c.field.type), value, sa.literal(rule.name, c.rule.type),
        sa.literal(rule.severity, c.severity.type),
        message if isinstance(message, sa.ColumnElement) else sa.literal(message, c.message.type),
        sa.literal(where.created_at, c.created_at.type), work.c._pos,
    ).select_from(source).where(condition)
    names = ["batch_id", "asset_key", "source_file", "row_number", "record_key", "field", "value", "rule",
             "severity", "message", "created_at", "_pos"]
    conn.execute(sa.insert(errs).from_select(names, select))


def _unique(conn, rule: Rule, work: sa.Table, errs: sa.Table, where: Where) -> None:
    cols = list(rule.columns)
    key = list(SOURCE_TABLES_BY_NAME[where.table_name].key)
    keys = sa.select(*(work.c[c] for c in cols)).where(*(work.c[c].is_not(None) for c in cols))
    message = f"({', '.join(cols)}) appears more than once in the batch"
    if where.mode != "full" and set(cols) != set(key):
        staged = STAGING_TABLES[where.table_name]
        in_batch = sa.tuple_(*(staged.c[k] for k in key)).in_(sa.select(*(work.c[k] for k in key)))
        kept = sa.select(*(staged.c[c] for c in cols)).where(*(staged.c[c].is_not(None) for c in cols), ~in_batch)
        keys = sa.union_all(keys, kept)
        message += " and the staged rows it keeps"
    keys = keys.subquery("keys")
    dup = (sa.select(*(keys.c[c] for c in cols)).group_by(*(keys.c[c] for c in cols))
           .having(sa.func.count() > 1).subquery("dup"))
    joined = work.join(dup, sa.and_(*(work.c[c] == dup.c[c] for c in cols)))
    value = _text(work.c[cols[0]])
    for c in cols[1:]:
        value = value + "," + _text(work.c[c])
    _insert(conn, errs, work, where, rule, ",".join(cols), value, message, sa.true(), joined)


def _references(conn, rule: Rule, work: sa.Table, errs: sa.Table, where: Where) -> None:
    (column,) = rule.columns
    parent_name = rule.params["table"].removeprefix("stg_")
    parent, parent_column = STAGING_TABLES[parent_name], rule.params["column"]
    raw_parent = RAW_TABLES[parent_name]
    child = work.c[column]
    missing = sa.and_(child.is_not(None), ~sa.exists().where(parent.c[parent_column] == child))
    plain = f"{column} has no match in {rule.params['table']}.{parent_column}"
    noun = NOUNS[parent_name][0]
    rejected = (f"{plain}: {PARENT_REJECTED.format(parent=noun)} "
                f"(it is in raw_{parent_name}; see the data_errors of {rule.params['table']})")
    message = sa.case(
        (sa.exists().where(raw_parent.c[parent_column] == child), sa.literal(rejected, errs.c.message.type)),
        else_=sa.literal(plain, errs.c.message.type),
    )
    _insert(conn, errs, work, where, rule, column, _text(child), message, missing)


def _one_open_per_key(conn, rule: Rule, work: sa.Table, errs: sa.Table, where: Where) -> None:
    (key,) = rule.columns
    id_column, open_column = rule.params["id_column"], rule.params["open_column"]
    staged = STAGING_TABLES[rule.params["table"].removeprefix("stg_")]
    is_open = sa.and_(work.c[open_column].is_(None), work.c[key].is_not(None))
    staged_open = sa.select(staged.c[key]).where(
        staged.c[open_column].is_(None), staged.c[key].is_not(None),
        ~sa.exists().where(work.c[id_column] == staged.c[id_column]),
    )
    opened = sa.union_all(sa.select(work.c[key]).where(is_open), staged_open).subquery("opened")
    crowded = sa.select(opened.c[key]).group_by(opened.c[key]).having(sa.func.count() > 1)
    _insert(conn, errs, work, where, rule, key, _text(work.c[key]), f"another run with this {key} is open too",
            sa.and_(is_open, work.c[key].in_(crowded)))


_SQL = {"unique": _unique, "references": _references, "one_open_per_key": _one_open_per_key}


def run_set_rule(conn: sa.Connection, rule: Rule, work: sa.Table, errs: sa.Table, where: Where) -> None:
    """Insert every failing row of `rule` (a rule of `rules.SET_KINDS`) into `errs`."""
    _SQL[rule.kind](conn, rule, work, errs, where)

"""The week's loads and rejected values, for the Data quality sheet.

A load (`etl_batches` row) belongs to a week by what it is about, never by when it was written:

- every load of a run that built the week's snapshot (the weekly run, a re-run, a backfill)
  belongs to that week; the snapshot's own loads are told apart by their `as_of`, the week's end;
- a load of any other run (an upload, a manual refresh) belongs to the week its business time
  `as_of` falls in, Sunday 00:00 to Sunday 00:00 local time.

Rejected and warned values (`data_errors`) belong to the week of their load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.ledger import data_errors, etl_batches
from ows_pipeline.weeks import Week

SNAPSHOT_ASSET = "fct_workflow_run_weekly"


def bind_ts(conn: sa.Connection, value: dt.datetime) -> dt.datetime:
    """A UTC instant as the warehouse stores it: aware on PostgreSQL, naive UTC on SQLite."""
    value = as_utc(value)
    return value.replace(tzinfo=None) if conn.dialect.name == "sqlite" else value


def builder_runs(conn: sa.Connection, week: Week) -> sa.Select:
    """Run ids that built `week`'s snapshot successfully (the snapshot's batch has as_of = the week's end)."""
    b = etl_batches
    end = bind_ts(conn, week.end_utc)
    return sa.select(b.c.run_id).where(
        b.c.asset_key == SNAPSHOT_ASSET, b.c.status == "SUCCESS", b.c.run_id.is_not(None),
        b.c.as_of >= end, b.c.as_of <= end,
    ).distinct()


def week_batches(conn: sa.Connection, week: Week) -> sa.Select:
    """The batch ids that belong to `week` (see the module docstring)."""
    b = etl_batches
    start, end = bind_ts(conn, week.start_utc), bind_ts(conn, week.end_utc)
    any_builder = sa.select(b.c.run_id).where(
        b.c.asset_key == SNAPSHOT_ASSET, b.c.status == "SUCCESS", b.c.run_id.is_not(None)
    ).distinct()
    by_run = sa.and_(
        b.c.run_id.in_(builder_runs(conn, week)),
        sa.or_(b.c.asset_key != SNAPSHOT_ASSET, sa.and_(b.c.as_of >= end, b.c.as_of <= end)),
    )
    by_business_time = sa.and_(
        sa.or_(b.c.run_id.is_(None), b.c.run_id.not_in(any_builder)),
        b.c.asset_key != SNAPSHOT_ASSET,
        b.c.as_of >= start, b.c.as_of < end,
    )
    return sa.select(b.c.batch_id).where(sa.or_(by_run, by_business_time))


@dataclass
class DataQuality:
    """Loads per table, rejected values per table and severity, and the top rules of the week."""

    loads: list[list] = field(default_factory=list)
    rejects: list[list] = field(default_factory=list)
    top_rules: list[list] = field(default_factory=list)
    builder_runs: list[str] = field(default_factory=list)


def has_ledger(conn: sa.Connection) -> bool:
    """Whether the warehouse has its load ledger (a warehouse built by the pipeline always has)."""
    return sa.inspect(conn).has_table(etl_batches.name)


def data_quality(conn: sa.Connection, week: Week, top: int = 20) -> DataQuality:
    quality = DataQuality()
    if not has_ledger(conn):
        return quality
    quality.builder_runs = sorted(r for (r,) in conn.execute(builder_runs(conn, week)))
    batches = week_batches(conn, week)
    b = etl_batches
    failed = sa.func.sum(sa.case((b.c.status == "SUCCESS", 0), else_=1))
    query = (
        sa.select(
            b.c.asset_key, sa.func.count(), failed,
            sa.func.sum(b.c.rows_in), sa.func.sum(b.c.rows_loaded), sa.func.sum(b.c.rows_rejected),
            sa.func.max(b.c.as_of),
        )
        .where(b.c.batch_id.in_(batches))
        .group_by(b.c.asset_key)
        .order_by(b.c.asset_key)
    )
    quality.loads = [
        [a, int(n), int(f or 0), _int(i), _int(ld), _int(r), as_utc(last) if last is not None else None]
        for a, n, f, i, ld, r, last in conn.execute(query)
    ]
    e = data_errors
    in_week = e.c.batch_id.in_(batches)
    query = (
        sa.select(e.c.asset_key, e.c.severity, sa.func.count(), sa.func.count(sa.distinct(e.c.record_key)))
        .where(in_week)
        .group_by(e.c.asset_key, e.c.severity)
        .order_by(e.c.asset_key, e.c.severity)
    )
    if not sa.inspect(conn).has_table(e.name):
        return quality
    quality.rejects = [[a, s, int(n), int(k)] for a, s, n, k in conn.execute(query)]
    n = sa.func.count().label("n")
    query = (
        sa.select(e.c.asset_key, e.c.field, e.c.rule, e.c.severity, n)
        .where(in_week)
        .group_by(e.c.asset_key, e.c.field, e.c.rule, e.c.severity)
        .order_by(n.desc(), e.c.asset_key, e.c.field, e.c.rule)
        .limit(top)
    )
    quality.top_rules = [[a, f, r, s, int(c)] for a, f, r, s, c in conn.execute(query)]
    return quality


def _int(value):
    return None if value is None else int(value)

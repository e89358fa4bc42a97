"""What the weekly report reads from the warehouse.

Tables are reflected at run time, so the report works with whatever columns the fact and
dimension tables have, and a dimension not built yet is simply reported as missing.
Timestamps come back as aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.weeks import Week

FACT_TABLE = "fct_workflow_run_weekly"
TREND_WEEKS = 12

# The Latest snapshot sheet: (header, fact column, kind).
SNAPSHOT_COLUMNS = (
    ("Project", "project_code", "text"),
    ("Project name", "project_name", "text"),
    ("Feed", "feed_code", "text"),
    ("Match process", "process_code", "text"),
    ("Workflow", "workflow_code", "text"),
    ("Version", "workflow_version", "int"),
    ("Workflow name", "workflow_name", "text"),
    ("Run key", "run_key", "text"),
    ("Run id", "run_id", "int"),
    ("Business date", "business_date", "date"),
    ("Status", "status", "text"),
    ("End state", "result_code", "text"),
    ("Begin", "begin_date", "datetime"),
    ("End", "end_date", "datetime"),
    ("Duration (min)", "duration_minutes", "float"),
    ("SLA (min)", "sla_minutes", "int"),
    ("SLA breached", "sla_breached", "bool"),
    ("Loaded", "records_loaded", "int"),
    ("Matched", "matched_cnt", "int"),
    ("Suggested", "suggested_cnt", "int"),
    ("Unmatched", "unmatched_cnt", "int"),
    ("Failed step", "failed_step", "text"),
    ("Error", "error_name", "text"),
    ("Error message", "error_message", "text"),
    ("Assigned user", "assigned_user", "text"),
)
FLAG_COLUMN = "Flag"  # FAILED / BREAK / OPEN, derived; drives the highlighting

def reflect(conn: sa.Connection, name: str) -> Optional[sa.Table]:
    """The table `name` as it is in the warehouse, or None when it does not exist yet."""
    if not sa.inspect(conn).has_table(name):
        return None
    return sa.Table(name, sa.MetaData(), autoload_with=conn)


def _col(table: sa.Table, name: str):
    return table.c[name] if name in table.c else sa.null()


def fact_table(conn: sa.Connection) -> sa.Table:
    table = reflect(conn, FACT_TABLE)
    if table is None:
        raise LookupError(
            f"Table {FACT_TABLE} does not exist in the warehouse: materialize the asset {FACT_TABLE} "
            "for this week before ows_weekly_report."
        )
    return table


def week_row_count(conn: sa.Connection, fct: sa.Table, week: dt.date) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(fct).where(fct.c.week_start == week)).scalar_one()


# --------------------------------------------------------------------------- latest snapshot


def _flag(is_failed, is_break, reached_end) -> str:
    if is_failed:
        return "FAILED"
    if is_break:
        return "BREAK"
    if not reached_end:
        return "OPEN"
    return ""


def latest_snapshot(conn: sa.Connection, fct: sa.Table, week: dt.date, chunk: int = 5000) -> Iterator[list]:
    """The latest run of every workflow by project / feed / match process / workflow, in a stable order.

    Yields rows in SNAPSHOT_COLUMNS order plus the Flag column.
    """
    latest = sa.func.row_number().over(
        partition_by=[_col(fct, "project_id"), _col(fct, "feed_id"), _col(fct, "match_process_id"),
                      _col(fct, "workflow_code")],
        order_by=[_col(fct, "begin_date").desc(), fct.c.run_id.desc()],
    ).label("_latest")
    wanted = [_col(fct, c).label(c) for _, c, _ in SNAPSHOT_COLUMNS]
    flags = [_col(fct, c).label(c) for c in ("is_failed", "is_break", "reached_end_state")]
    inner = sa.select(*wanted, *flags, latest).where(fct.c.week_start == week).subquery()
    order = [sa.func.coalesce(inner.c[c], "") for c in ("project_code", "feed_code", "process_code", "workflow_code")]
    query = sa.select(inner).where(inner.c._latest == 1).order_by(*order, inner.c.run_id)
    n = len(SNAPSHOT_COLUMNS)
    times = [i for i, (_, _, kind) in enumerate(SNAPSHOT_COLUMNS) if kind == "datetime"]
    result = conn.execution_options(stream_results=True, yield_per=chunk).execute(query)
    for row in result:
        values = list(row[:n])
        for i in times:
            if values[i] is not None:
                values[i] = as_utc(values[i])
        values.append(_flag(row[n], row[n + 1], row[n + 2]))
        yield values


# --------------------------------------------------------------------------- KPIs


@dataclass(frozen=True)
class WeekKpis:
    """The headline figures of one week. Completed: reached an end state without failing.

    A week that was never built has `built` False and every figure None (unknown, not zero);
    `sla_breaches` is None when no run of the week had a known SLA (no SLA list loaded).
    """

    week: dt.date
    built: bool = False
    runs: Optional[int] = None
    completed: Optional[int] = None
    failed: Optional[int] = None
    open: Optional[int] = None
    breaks: Optional[int] = None
    matched: Optional[int] = None
    suggested: Optional[int] = None
    unmatched: Optional[int] = None
    sla_breaches: Optional[int] = None
    sla_runs: Optional[int] = None  # runs whose SLA is known

    @property
    def match_rate(self) -> Optional[float]:
        if not self.built:
            return None
        total = self.matched + self.suggested + self.unmatched
        return self.matched / total if total else None


def built_weeks(conn: sa.Connection, fct: sa.Table, weeks: list[Week]) -> set[dt.date]:
    """Which of `weeks` have been built: a successful snapshot load of the week, or rows in the snapshot."""
    from ows_pipeline.warehouse.schema.ledger import etl_batches as b

    starts = [w.start for w in weeks]
    built = {_as_date(d) for (d,) in conn.execute(sa.select(fct.c.week_start).where(fct.c.week_start.in_(starts))
                                                  .distinct())}
    if sa.inspect(conn).has_table(b.name):
        by_start = {w.start_utc.isoformat(): w.start for w in weeks}
        query = sa.select(b.c.watermark_from).where(
            b.c.asset_key == FACT_TABLE, b.c.status == "SUCCESS", b.c.watermark_from.in_(list(by_start))
        )
        built |= {by_start[text] for (text,) in conn.execute(query)}
    return built


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def weekly_kpis(conn: sa.Connection, fct: sa.Table, week: Week, weeks: int = TREND_WEEKS) -> list[WeekKpis]:
    """KPIs of `week` and the `weeks - 1` weeks before it, oldest first, starting at the first week built;
    weeks never built in between are `WeekKpis(built=False)` (blank, not zero). `week` itself is always last."""
    span = [week.previous(weeks - 1 - i) for i in range(weeks)]
    first, last = span[0].start, week.start

    def flag(name):
        return sa.func.sum(sa.case((_col(fct, name) == sa.true(), 1), else_=0))

    def total(name):
        return sa.func.coalesce(sa.func.sum(_col(fct, name)), 0)

    query = (
        sa.select(
            fct.c.week_start,
            sa.func.count(),
            sa.func.sum(sa.case((sa.and_(_col(fct, "reached_end_state") == sa.true(),
                                         _col(fct, "is_failed") == sa.false()), 1), else_=0)),
            flag("is_failed"),
            sa.func.sum(sa.case((_col(fct, "reached_end_state") == sa.true(), 0), else_=1)),
            flag("is_break"),
            total("matched_cnt"),
            total("suggested_cnt"),
            total("unmatched_cnt"),
            flag("sla_breached"),
            sa.func.count(_col(fct, "sla_breached")),
        )
        .where(fct.c.week_start >= first, fct.c.week_start <= last)
        .group_by(fct.c.week_start)
    )
    found = {}
    for row in conn.execute(query):
        values = [int(v or 0) for v in row[1:]]
        sla_runs = values[-1]
        found[_as_date(row[0])] = WeekKpis(_as_date(row[0]), True, *values[:-2],
                                           sla_breaches=values[-2] if sla_runs else None, sla_runs=sla_runs)
    built = built_weeks(conn, fct, span) | set(found)
    days = [w.start for w in span]
    trend = [found.get(d) or (WeekKpis(d, True, 0, 0, 0, 0, 0, 0, 0, 0, None, 0) if d in built else WeekKpis(d))
             for d in days]
    while len(trend) > 1 and not trend[0].built:
        trend.pop(0)
    return trend


# --------------------------------------------------------------------------- end states


def end_state_label(status, result_code, reached_end) -> str:
    if not reached_end:
        return f"OPEN ({status})" if status else "OPEN"
    return result_code or status or "UNKNOWN"


def end_states(conn: sa.Connection, fct: sa.Table, week: dt.date) -> list[tuple[str, str, str, int]]:
    """(project, match process, end state, runs) for every run of the week, sorted."""
    keys = [_col(fct, c) for c in ("project_code", "process_code", "status", "result_code", "reached_end_state")]
    query = sa.select(*keys, sa.func.count()).where(fct.c.week_start == week).group_by(*keys)
    counts: Counter = Counter()
    for project, process, status, result, reached, n in conn.execute(query):
        counts[(project or "", process or "", end_state_label(status, result, reached))] += int(n)
    return sorted((p, m, s, n) for (p, m, s), n in counts.items())

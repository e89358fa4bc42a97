"""What the weekly report reads from the warehouse.

Tables are reflected at run time, so the report works with whatever columns the fact and
dimension tables have, and a dimension not built yet is simply reported as missing.
Timestamps come back as aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.warehouse.bulk import as_utc

FACT_TABLE = "fct_workflow_run_weekly"
TREND_WEEKS = 12

# (dimension table, natural key, code column, name column, label)
DIMENSIONS = (
    ("dim_project", "project_id", "project_code", "project_name", "Project"),
    ("dim_feed", "feed_id", "feed_code", "feed_name", "Feed"),
    ("dim_match_process", "match_process_id", "process_code", "process_name", "Match process"),
    ("dim_workflow", "workflow_id", "workflow_code", "workflow_name", "Workflow"),
)
_DIM_BOOKKEEPING = {"row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id", "_batch_id",
                    "created_at", "updated_at"}

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
)
FLAG_COLUMN = "Flag"  # FAILED / BREAK / OPEN, derived; drives the highlighting

CHANGE_COLUMNS = (
    ("Entity", "text"),
    ("Project", "text"),
    ("Code", "text"),
    ("Name", "text"),
    ("Change", "text"),
    ("Field", "text"),
    ("Old value", "text"),
    ("New value", "text"),
    ("When", "datetime"),
)


def reflect(conn: sa.Connection, name: str) -> Optional[sa.Table]:
    """The table `name` as it is in the warehouse, or None when it does not exist yet."""
    if not sa.inspect(conn).has_table(name):
        return None
    return sa.Table(name, sa.MetaData(), autoload_with=conn)


def _bind_ts(conn: sa.Connection, value: dt.datetime) -> dt.datetime:
    """UTC instant as the warehouse stores it: aware on PostgreSQL, naive UTC on SQLite."""
    value = as_utc(value)
    return value.replace(tzinfo=None) if conn.dialect.name == "sqlite" else value


def _utc(value):
    return as_utc(value) if isinstance(value, dt.datetime) else value


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
    """The headline figures of one week. Completed: reached an end state without failing."""

    week: dt.date
    runs: int = 0
    completed: int = 0
    failed: int = 0
    open: int = 0
    breaks: int = 0
    matched: int = 0
    suggested: int = 0
    unmatched: int = 0
    sla_breaches: int = 0

    @property
    def match_rate(self) -> Optional[float]:
        total = self.matched + self.suggested + self.unmatched
        return self.matched / total if total else None


def weekly_kpis(conn: sa.Connection, fct: sa.Table, week: dt.date, weeks: int = TREND_WEEKS) -> list[WeekKpis]:
    """KPIs of `week` and the `weeks - 1` weeks before it, oldest first (weeks without rows are zeros)."""
    first = week - dt.timedelta(days=7 * (weeks - 1))

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
        )
        .where(fct.c.week_start >= first, fct.c.week_start <= week)
        .group_by(fct.c.week_start)
    )
    found = {}
    for row in conn.execute(query):
        start = row[0] if isinstance(row[0], dt.date) else dt.date.fromisoformat(str(row[0])[:10])
        found[start] = WeekKpis(start, *(int(v or 0) for v in row[1:]))
    days = [first + dt.timedelta(days=7 * i) for i in range(weeks)]
    return [found.get(d, WeekKpis(d)) for d in days]


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


# --------------------------------------------------------------------------- changes


@dataclass
class Changes:
    """What changed in the week: one row per change in CHANGE_COLUMNS order, plus counts and notes."""

    rows: list[list] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (entity, change) -> n
    missing: list[str] = field(default_factory=list)  # dimension tables not built yet


def _show(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _is_active(version: dict) -> bool:
    if version.get("is_deleted"):
        return False
    flag = version.get("active_flag", True)
    if isinstance(flag, str):
        return flag.strip().upper() not in ("N", "0", "FALSE", "F")
    return flag is None or bool(flag)


def dimension_changes(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> Changes:
    """Projects, feeds, match processes and workflows added, changed (old -> new), retired or reactivated.

    A version opened in [start, end) is compared with the version before it of the same key.
    """
    changes = Changes()
    project_codes: dict = {}
    lo, hi = _bind_ts(conn, start), _bind_ts(conn, end)
    for table_name, key, code_col, name_col, label in DIMENSIONS:
        dim = reflect(conn, table_name)
        if dim is None:
            changes.missing.append(table_name)
            continue
        if table_name == "dim_project":
            current = sa.select(dim.c.project_id, dim.c.project_code).where(dim.c.is_current == sa.true())
            project_codes = {pid: code for pid, code in conn.execute(current)}
        sk = f"{table_name[4:]}_sk"
        attributes = [c.name for c in dim.columns if c.name not in _DIM_BOOKKEEPING and c.name not in (sk, key)]
        moved = sa.select(dim.c[key]).where(dim.c.valid_from >= lo, dim.c.valid_from < hi)
        query = sa.select(dim).where(dim.c[key].in_(moved)).order_by(dim.c[key], dim.c.valid_from)
        history: dict = defaultdict(list)
        for row in conn.execute(query):
            history[row._mapping[key]].append(dict(row._mapping))
        for natural_key in sorted(history, key=lambda k: (str(type(k)), k)):
            versions = history[natural_key]
            for i, version in enumerate(versions):
                when = _utc(version["valid_from"])
                if not (as_utc(start) <= when < as_utc(end)):
                    continue
                before = versions[i - 1] if i else None
                current, previous = version, before or {}
                project = project_codes.get(current.get("project_id")) or current.get("project_code") or ""
                base = [label, _show(project), _show(current.get(code_col) or previous.get(code_col)),
                        _show(current.get(name_col) or previous.get(name_col))]
                if before is None:
                    kind = "added" if _is_active(current) else "retired"
                    changes.rows.append(base + [kind, "", "", "", when])
                elif _is_active(before) and not _is_active(current):
                    kind = "retired"
                    changes.rows.append(base + [kind, "", "", "", when])
                elif not _is_active(before) and _is_active(current):
                    kind = "reactivated"
                    changes.rows.append(base + [kind, "", "", "", when])
                else:
                    kind = "changed"
                    diffs = [a for a in attributes if a != "active_flag" and current.get(a) != before.get(a)]
                    for attribute in diffs or [""]:
                        changes.rows.append(
                            base + [kind, attribute, _show(before.get(attribute)) if attribute else "",
                                    _show(current.get(attribute)) if attribute else "", when]
                        )
                changes.counts[(label, kind)] += 1
    return changes


def run_state_changes(conn: sa.Connection, fct: sa.Table, week: dt.date) -> Iterator[list]:
    """Runs carried over from the week before whose status or end state changed by this week's end."""
    prev = fct.alias("prev")
    cur = fct.alias("cur")
    query = (
        sa.select(
            _col(cur, "project_code"), _col(cur, "workflow_code"), _col(cur, "run_key"), cur.c.run_id,
            _col(prev, "status"), _col(prev, "result_code"), _col(cur, "status"), _col(cur, "result_code"),
            _col(cur, "end_date"),
        )
        .join(prev, sa.and_(prev.c.run_id == cur.c.run_id, prev.c.week_start == week - dt.timedelta(days=7)))
        .where(cur.c.week_start == week)
        .where(
            sa.or_(
                sa.func.coalesce(_col(cur, "status"), "") != sa.func.coalesce(_col(prev, "status"), ""),
                sa.func.coalesce(_col(cur, "result_code"), "") != sa.func.coalesce(_col(prev, "result_code"), ""),
            )
        )
        .order_by(sa.func.coalesce(_col(cur, "project_code"), ""), sa.func.coalesce(_col(cur, "workflow_code"), ""),
                  cur.c.run_id)
    )
    for project, workflow, run_key, run_id, old_status, old_result, status, result, ended in conn.execution_options(
        stream_results=True, yield_per=5000
    ).execute(query):
        old = " / ".join(v for v in (old_status, old_result) if v)
        new = " / ".join(v for v in (status, result) if v)
        yield ["Run", project or "", workflow or "", run_key or str(run_id), "state changed", "status / end state",
               old, new, _utc(ended)]


# --------------------------------------------------------------------------- data quality


@dataclass
class DataQuality:
    """Loads and checks per table, rejected values per table and severity, and the top rules of the week."""

    loads: list[list] = field(default_factory=list)
    rejects: list[list] = field(default_factory=list)
    top_rules: list[list] = field(default_factory=list)


def data_quality(conn: sa.Connection, start: dt.datetime, end: dt.datetime, top: int = 20) -> DataQuality:
    quality = DataQuality()
    lo, hi = _bind_ts(conn, start), _bind_ts(conn, end)
    batches = reflect(conn, "etl_batches")
    if batches is not None:
        failed = sa.func.sum(sa.case((batches.c.status == "SUCCESS", 0), else_=1))
        query = (
            sa.select(
                batches.c.asset_key, sa.func.count(), failed,
                sa.func.coalesce(sa.func.sum(batches.c.rows_in), 0),
                sa.func.coalesce(sa.func.sum(batches.c.rows_loaded), 0),
                sa.func.coalesce(sa.func.sum(batches.c.rows_rejected), 0),
                sa.func.max(batches.c.finished_at),
            )
            .where(batches.c.started_at >= lo, batches.c.started_at < hi)
            .group_by(batches.c.asset_key)
            .order_by(batches.c.asset_key)
        )
        quality.loads = [[a, int(n), int(f or 0), int(i), int(ld), int(r), _utc(last)]
                         for a, n, f, i, ld, r, last in conn.execute(query)]
    errors = reflect(conn, "data_errors")
    if errors is not None:
        window = [errors.c.created_at >= lo, errors.c.created_at < hi]
        query = (
            sa.select(errors.c.asset_key, errors.c.severity, sa.func.count(),
                      sa.func.count(sa.distinct(errors.c.record_key)))
            .where(*window)
            .group_by(errors.c.asset_key, errors.c.severity)
            .order_by(errors.c.asset_key, errors.c.severity)
        )
        quality.rejects = [[a, s, int(n), int(k)] for a, s, n, k in conn.execute(query)]
        n = sa.func.count().label("n")
        query = (
            sa.select(errors.c.asset_key, errors.c.field, errors.c.rule, errors.c.severity, n)
            .where(*window)
            .group_by(errors.c.asset_key, errors.c.field, errors.c.rule, errors.c.severity)
            .order_by(n.desc(), errors.c.asset_key, errors.c.field, errors.c.rule)
            .limit(top)
        )
        quality.top_rules = [[a, f, r, s, int(c)] for a, f, r, s, c in conn.execute(query)]
    return quality

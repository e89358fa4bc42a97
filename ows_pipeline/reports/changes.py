"""What changed in the week, for the Changes sheet: one row per event, in time order.

Dimension changes come from the SCD2 history. A version belongs to the week by its business
time `valid_from`, except a version dated by a load's as-of time (a key that left or came back
to a full extract, which only a run can notice): it belongs to the week that had just ended when
that run looked (the Sunday 02:00 run finds what vanished during the week it closes).
A new workflow version (a new workflow id replacing the code's previous version) is one event,
"new version", with the old and new version numbers. Runs carried over from the week before
whose status or end state changed are dated by their end, else their last step transition.
Every timestamp, in "When" and in old/new values, is shown in the display time zone.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterator, Optional
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ows_pipeline.reports.quality import bind_ts, has_ledger
from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.ledger import etl_batches
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.weeks import Week, week_ended_by

# (dimension table, natural key, code column, name column, label)
DIMENSIONS = (
    ("dim_project", "project_id", "project_code", "project_name", "Project"),
    ("dim_feed", "feed_id", "feed_code", "feed_name", "Feed"),
    ("dim_match_process", "match_process_id", "process_code", "process_name", "Match process"),
    ("dim_workflow", "workflow_id", "workflow_code", "workflow_name", "Workflow"),
)
_DIM_BOOKKEEPING = {"row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id", "_batch_id",
                    "created_at", "updated_at"}

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
    ("Version", "int"),
)
_FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


@dataclass
class Changes:
    """The week's dimension changes (rows in CHANGE_COLUMNS order, time order), counts per event and notes."""

    rows: list[list] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (entity, change) -> events
    missing: list[str] = field(default_factory=list)  # dimension tables not built yet


def _reflect(conn: sa.Connection, name: str) -> Optional[sa.Table]:
    if not sa.inspect(conn).has_table(name):
        return None
    return sa.Table(name, sa.MetaData(), autoload_with=conn)


def show(value, tz: ZoneInfo) -> str:
    """A value as text in the Changes sheet; timestamps in the display time zone."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return as_utc(value).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
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


def _load_times(conn: sa.Connection) -> set:
    """As-of times of every extraction from OWS (the source's clock when a run looked): a dimension version
    dated by one was noticed by that run. An upload's as-of is the file's business time, not one of these."""
    if not has_ledger(conn):
        return set()
    b = etl_batches
    query = sa.select(b.c.as_of).where(b.c.asset_key.startswith("raw_ows_", autoescape=True), b.c.as_of.is_not(None))
    return {as_utc(t) for (t,) in conn.execute(query.distinct())}


@dataclass
class _Event:
    when: dt.datetime
    entity: str
    key: object
    kind: str
    base: list  # entity, project, code, name
    fields: list  # (field, old, new)
    version: Optional[int]


def dimension_changes(conn: sa.Connection, week: Week, tz: Optional[ZoneInfo] = None) -> Changes:
    """Projects, feeds, match processes and workflows added, changed (old -> new), retired, reactivated
    and new workflow versions in `week`, one row per changed field, in time order."""
    tz = tz or week.tz
    changes = Changes()
    load_times = _load_times(conn)
    # A version dated by a load (a key that left or came back to a full extract) belongs to the week
    # that had just ended when the load ran; any other version to the week its valid_from falls in.
    ours = {t for t in load_times if week_ended_by(t, week.timezone) == week}

    def in_week(when: dt.datetime) -> bool:
        return when in ours if when in load_times else week.contains(when)

    project_codes: dict = {}
    events: list[_Event] = []
    for table_name, key, code_col, name_col, label in DIMENSIONS:
        dim = _reflect(conn, table_name)
        if dim is None:
            changes.missing.append(table_name)
            continue
        if table_name == "dim_project":
            current = sa.select(dim.c.project_id, dim.c.project_code).where(dim.c.is_current == sa.true())
            project_codes = {pid: code for pid, code in conn.execute(current)}
        sk = f"{table_name[4:]}_sk"
        attributes = [c.name for c in dim.columns if c.name not in _DIM_BOOKKEEPING and c.name not in (sk, key)]
        window = sa.and_(dim.c.valid_from >= bind_ts(conn, week.start_utc), dim.c.valid_from < bind_ts(conn, week.end_utc))
        if ours:
            window = sa.or_(window, dim.c.valid_from.in_([bind_ts(conn, t) for t in sorted(ours)]))
        moved = sa.select(dim.c[key]).where(window)
        query = sa.select(dim).where(dim.c[key].in_(moved)).order_by(dim.c[key], dim.c.valid_from)
        history: dict = defaultdict(list)
        for row in conn.execute(query):
            history[row._mapping[key]].append(dict(row._mapping))
        for natural_key, versions in history.items():
            for i, current in enumerate(versions):
                when = as_utc(current["valid_from"])
                if not in_week(when):
                    continue
                before = versions[i - 1] if i else None
                previous = before or {}
                project = project_codes.get(current.get("project_id")) or current.get("project_code") or ""
                base = [label, show(project, tz), show(current.get(code_col) or previous.get(code_col), tz),
                        show(current.get(name_col) or previous.get(name_col), tz)]
                version = current.get("version") if table_name == "dim_workflow" else None
                fields: list = []
                if before is None:
                    kind = "added" if _is_active(current) else "retired"
                elif _is_active(before) and not _is_active(current):
                    kind = "retired"
                elif not _is_active(before) and _is_active(current):
                    kind = "reactivated"
                else:
                    kind = "changed"
                    diffs = [a for a in attributes if a != "active_flag" and current.get(a) != before.get(a)]
                    fields = [(a, show(before.get(a), tz), show(current.get(a), tz)) for a in diffs]
                events.append(_Event(when, label, natural_key, kind, base, fields, version))
    events = _merge_new_versions(events)
    events.sort(key=lambda e: (e.when, e.entity, e.base[2], str(e.key)))
    for event in events:
        changes.counts[(event.entity, event.kind)] += 1
        for name, old, new in event.fields or [("", "", "")]:
            changes.rows.append(event.base + [event.kind, name, old, new, event.when, event.version])
    return changes


def _merge_new_versions(events: list[_Event]) -> list[_Event]:
    """A workflow code's new version (an added workflow id) and its previous version's end date are one event."""
    added = {e.base[2]: e for e in events if e.entity == "Workflow" and e.kind == "added"}
    kept = []
    for event in events:
        new = added.get(event.base[2])
        ended = event.entity == "Workflow" and event.kind == "changed" and any(f[0] == "end_date" for f in event.fields)
        if ended and new is not None and new.key != event.key:
            new.kind = "new version"
            new.fields = [("version", show(event.version, dt.timezone.utc), show(new.version, dt.timezone.utc))]
            event.fields = [f for f in event.fields if f[0] != "end_date"]
            if not event.fields:
                continue
        kept.append(event)
    return kept


def run_state_changes(conn: sa.Connection, fct: sa.Table, week: Week) -> Iterator[list]:
    """Runs carried over from the week before whose status or end state changed by this week's end, by time."""
    prev, cur = fct.alias("prev"), fct.alias("cur")
    hist = STAGING_TABLES["ows_run_step_history"]
    week_end = bind_ts(conn, week.end_utc)
    if sa.inspect(conn).has_table(hist.name):
        last_move = (
            sa.select(sa.func.max(hist.c.changed_at))
            .where(hist.c.run_id == cur.c.run_id, hist.c.changed_at < week_end)
            .scalar_subquery()
        )
        when = sa.func.coalesce(cur.c.end_date, last_move).label("when")
    else:
        when = cur.c.end_date.label("when")

    def col(table, name):
        return table.c[name] if name in table.c else sa.null()

    query = (
        sa.select(
            col(cur, "project_code"), col(cur, "workflow_code"), col(cur, "run_key"), cur.c.run_id,
            col(prev, "status"), col(prev, "result_code"), col(cur, "status"), col(cur, "result_code"), when,
            col(cur, "workflow_version"),
        )
        .join(prev, sa.and_(prev.c.run_id == cur.c.run_id, prev.c.week_start == week.previous().start))
        .where(cur.c.week_start == week.start)
        .where(
            sa.or_(
                sa.func.coalesce(col(cur, "status"), "") != sa.func.coalesce(col(prev, "status"), ""),
                sa.func.coalesce(col(cur, "result_code"), "") != sa.func.coalesce(col(prev, "result_code"), ""),
            )
        )
        .order_by(when, sa.func.coalesce(col(cur, "project_code"), ""), cur.c.run_id)
    )
    rows = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
    for project, workflow, run_key, run_id, old_status, old_result, status, result, at, version in rows:
        old = " / ".join(v for v in (old_status, old_result) if v)
        new = " / ".join(v for v in (status, result) if v)
        yield ["Run", project or "", workflow or "", run_key or str(run_id), "state changed", "status / end state",
               old, new, as_utc(at) if at is not None else None, version]


def in_time_order(dimension_rows: list[list], run_rows: Iterator[list]) -> Iterator[list]:
    """Both sorted lists merged by their "When" (rows without a time last)."""
    def key(row):
        return row[8] if row[8] is not None else _FAR_FUTURE

    return heapq.merge(dimension_rows, run_rows, key=key)

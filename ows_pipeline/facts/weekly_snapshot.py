"""The weekly snapshot `fct_workflow_run_weekly`: one week, built by set-based SQL.

A week holds every workflow run active or ended in it (begun before the week's end and not
ended before its start), with its state *as of the week's end*:

- a run that had ended by then (its `end_date` is before the week's end) shows its final
  status, result, counts and end date; OWS never reopens an ended run (a rerun is a new run
  with `parent_run_id`), so that row is its state at the week's end;
- a run still open then gets its status rebuilt from the step history before the week's end,
  as OWS shows an open run: `SUSPEND` when its latest step transition was a suspension, else
  `ACTIVE` (a step in error that an operator retries leaves the run open; a failure that ends
  the run sets its end date, status `ERROR` and an end state such as `#EXCEPTION`). Result,
  end date and counts stay empty (OWS keeps only the latest counts of a run, which a past
  week could not show exactly).

So building a past week today gives the same rows as building it live at that week's end.
Feed and match process of a run are its workflow's first LOAD and first MATCH steps'. The
dimension surrogate keys and names are those of the SCD2 versions valid at the week's end.
SLA minutes come from `ref_feed_sla` (by feed code) when a list is loaded; a run breaches
its SLA when it ran (or had been open at the week's end) longer than the SLA. With no list
loaded, SLA minutes and breaches stay empty (unknown), never "not breached". A failed run
carries its step in error: the step's label, error name, message and assigned user.

Rebuilding a week deletes that week's rows and inserts them again in one transaction, with
an `etl_batches` row: re-running a week is idempotent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from ows_pipeline.dimensions.point_in_time import join_valid_at
from ows_pipeline.warehouse.schema.dimensions import DIM_FEED, DIM_MATCH_PROCESS, DIM_PROJECT, DIM_WORKFLOW
from ows_pipeline.warehouse.schema.facts import fct_workflow_run_weekly as fct
from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.warehouse.batches import new_batch_id, record_batch, record_failed_batch, utc_now
from ows_pipeline.warehouse.schema.uploads import ref_feed_sla
from ows_pipeline.weeks import Week

ASSET_KEY = "fct_workflow_run_weekly"
FAILED_RESULTS = ("#EXCEPTION", "#TIMEOUT")
"""Result codes of a run that failed (besides status ERROR)."""
BREAK_RESULTS = ("BREAKS", "PARTIAL")
"""Result codes of a run that ended with unmatched items (breaks)."""
COUNT_COLUMNS = ("records_loaded", "matched_cnt", "suggested_cnt", "unmatched_cnt")


def week_for_key(key: str, timezone: str) -> Week:
    """The week of partition key `key` (a Sunday, `YYYY-MM-DD`) in time zone `timezone`."""
    return Week.from_key(key, timezone)


class minutes_between(FunctionElement):
    """Minutes from the first timestamp to the second, as a float (dialect-specific SQL)."""

    type = sa.Float()
    name = "minutes_between"
    inherit_cache = True


@compiles(minutes_between)
def _minutes_default(element, compiler, **kw):
    start, end = list(element.clauses)
    interval = f"{compiler.process(end, **kw)} - {compiler.process(start, **kw)}"
    return f"(CAST(EXTRACT(EPOCH FROM ({interval})) AS NUMERIC) / 60.0)"


@compiles(minutes_between, "sqlite")
def _minutes_sqlite(element, compiler, **kw):
    start, end = list(element.clauses)
    return f"((julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)})) * 1440.0)"


@compiles(minutes_between, "oracle")
def _minutes_oracle(element, compiler, **kw):
    start, end = list(element.clauses)
    return f"((CAST({compiler.process(end, **kw)} AS DATE) - CAST({compiler.process(start, **kw)} AS DATE)) * 1440)"


def _first_step_of_type(step_type: str, column: str, label: str) -> sa.Subquery:
    """Per workflow, `column` of its first step of `step_type` (lowest seq, then step id)."""
    step = STAGING_TABLES["ows_workflow_step"]
    ranked = (
        sa.select(
            step.c.workflow_id,
            step.c[column].label(label),
            sa.func.row_number()
            .over(partition_by=step.c.workflow_id, order_by=(step.c.seq, step.c.step_id))
            .label("rn"),
        )
        .where(step.c.step_type == step_type, step.c[column].is_not(None))
        .subquery(f"ranked_{step_type.lower()}")
    )
    first = sa.select(ranked.c.workflow_id, ranked.c[label]).where(ranked.c.rn == 1)
    return first.subquery(f"first_{step_type.lower()}")


def _step_in_error() -> sa.Subquery:
    """Per run, its step in error (the latest to end, then the highest step id): label, error, assigned user."""
    status = STAGING_TABLES["ows_run_step_status"]
    step = STAGING_TABLES["ows_workflow_step"]
    ranked = (
        sa.select(
            status.c.run_id,
            step.c.step_label,
            status.c.error_name,
            status.c.error_message,
            status.c.assigned_user,
            sa.func.row_number()
            .over(
                partition_by=status.c.run_id,
                order_by=(status.c.last_update_date.desc(), status.c.step_id.desc()),
            )
            .label("rn"),
        )
        .select_from(status.outerjoin(step, step.c.step_id == status.c.step_id))
        .where(status.c.activity_status == "ERROR")
        .subquery("ranked_errors")
    )
    return sa.select(ranked).where(ranked.c.rn == 1).subquery("step_in_error")


def _typed(value, type_, cast: bool):
    """A bound value typed in the SELECT list (PostgreSQL needs the CAST; on SQLite a CAST to DATE would break it)."""
    param = sa.literal(value, type_)
    return sa.cast(param, type_) if cast else param


def snapshot_select(week: Week, batch_id: str, dialect: str, with_sla: bool = True) -> sa.Select:
    """The rows of `week` as one SELECT, columns in `fct_workflow_run_weekly` order."""
    cast = dialect != "sqlite"
    run = STAGING_TABLES["ows_workflow_run"]
    hist = STAGING_TABLES["ows_run_step_history"]
    workflow = STAGING_TABLES["ows_workflow"]
    week_end = sa.bindparam("week_end", week.end_utc, type_=TS)
    week_begin = sa.bindparam("week_begin", week.start_utc, type_=TS)

    ended = sa.and_(run.c.end_date.is_not(None), run.c.end_date < week_end)
    in_week = sa.and_(run.c.begin_date < week_end, sa.or_(run.c.end_date.is_(None), run.c.end_date >= week_begin))

    # Runs open at the week's end: their latest step transition before it.
    open_runs = sa.select(run.c.run_id).where(in_week, sa.not_(ended))
    ranked = (
        sa.select(
            hist.c.run_id,
            hist.c.to_status,
            sa.func.row_number().over(partition_by=hist.c.run_id, order_by=hist.c.hist_id.desc()).label("rn"),
        )
        .where(hist.c.changed_at < week_end, hist.c.run_id.in_(open_runs))
        .subquery("step_history_ranked")
    )
    last_step = sa.select(ranked.c.run_id, ranked.c.to_status).where(ranked.c.rn == 1).subquery("last_transition")

    # Each run in the week with its state at the week's end.
    end_date = sa.case((ended, run.c.end_date))
    as_of = (
        sa.select(
            run.c.run_id,
            run.c.run_key,
            run.c.parent_run_id,
            run.c.workflow_id,
            run.c.business_date,
            run.c.begin_date,
            sa.case(
                (ended, run.c.status), (last_step.c.to_status == "SUSPEND", "SUSPEND"), else_="ACTIVE"
            ).label("status"),
            sa.case((ended, run.c.result_code)).label("result_code"),
            sa.case((ended, sa.true()), else_=sa.false()).label("reached_end_state"),
            *(sa.case((ended, run.c[c])).label(c) for c in COUNT_COLUMNS),
            end_date.label("end_date"),
            minutes_between(run.c.begin_date, sa.func.coalesce(end_date, week_end)).label("duration_raw"),
        )
        .select_from(run.outerjoin(last_step, last_step.c.run_id == run.c.run_id))
        .where(in_week)
        .subquery("runs_at_week_end")
    )

    error = _step_in_error()
    first_load = _first_step_of_type("LOAD", "feed_id", "feed_id")
    first_match = _first_step_of_type("MATCH", "match_process_id", "match_process_id")
    wf = DIM_WORKFLOW.table.alias("wf")
    project_id = sa.func.coalesce(wf.c.project_id, workflow.c.project_id)
    prj = DIM_PROJECT.table.alias("prj")
    feed = DIM_FEED.table.alias("feed")
    mp = DIM_MATCH_PROCESS.table.alias("mp")

    # The dimension versions valid at the week's end.
    joined = (
        as_of.outerjoin(workflow, workflow.c.workflow_id == as_of.c.workflow_id)
        .outerjoin(wf, join_valid_at(wf, {"workflow_id": as_of.c.workflow_id}, week_end))
        .outerjoin(prj, join_valid_at(prj, {"project_id": project_id}, week_end))
        .outerjoin(first_load, first_load.c.workflow_id == as_of.c.workflow_id)
        .outerjoin(feed, join_valid_at(feed, {"feed_id": first_load.c.feed_id}, week_end))
        .outerjoin(first_match, first_match.c.workflow_id == as_of.c.workflow_id)
        .outerjoin(mp, join_valid_at(mp, {"match_process_id": first_match.c.match_process_id}, week_end))
        .outerjoin(error, error.c.run_id == as_of.c.run_id)
    )
    duration = sa.func.round(as_of.c.duration_raw, 2)
    if with_sla:
        sla = ref_feed_sla.alias("sla")
        joined = joined.outerjoin(sla, sla.c.feed_code == feed.c.feed_code)
        sla_minutes = sla.c.sla_minutes
        sla_breached = sa.case(
            (sla.c.sla_minutes.is_(None), sa.null()), (duration > sla.c.sla_minutes, sa.true()), else_=sa.false()
        )
    else:
        sla_minutes = sa.null()
        sla_breached = sa.null()

    status, result = as_of.c.status, as_of.c.result_code
    is_failed = sa.or_(status == "ERROR", result.in_(FAILED_RESULTS))
    columns = {
        "week_start": _typed(week.start, sa.Date, cast),
        "week_end": _typed(week.end_utc, TS, cast),
        "run_id": as_of.c.run_id,
        "run_key": as_of.c.run_key,
        "parent_run_id": as_of.c.parent_run_id,
        "workflow_id": as_of.c.workflow_id,
        "workflow_code": wf.c.workflow_code,
        "workflow_version": wf.c.version,
        "workflow_name": wf.c.workflow_name,
        "project_id": project_id,
        "project_code": prj.c.project_code,
        "project_name": prj.c.project_name,
        "feed_id": first_load.c.feed_id,
        "feed_code": feed.c.feed_code,
        "feed_name": feed.c.feed_name,
        "match_process_id": first_match.c.match_process_id,
        "process_code": mp.c.process_code,
        "process_name": mp.c.process_name,
        "business_date": as_of.c.business_date,
        "status": status,
        "result_code": result,
        "reached_end_state": as_of.c.reached_end_state,
        "is_failed": sa.case((is_failed, sa.true()), else_=sa.false()),
        "is_break": sa.case((result.in_(BREAK_RESULTS), sa.true()), else_=sa.false()),
        "records_loaded": as_of.c.records_loaded,
        "matched_cnt": as_of.c.matched_cnt,
        "suggested_cnt": as_of.c.suggested_cnt,
        "unmatched_cnt": as_of.c.unmatched_cnt,
        "begin_date": as_of.c.begin_date,
        "end_date": as_of.c.end_date,
        "duration_minutes": duration,
        "sla_minutes": sla_minutes,
        "sla_breached": sla_breached,
        "failed_step": sa.case((is_failed, error.c.step_label)),
        **{c: sa.case((is_failed, error.c[c])) for c in ("error_name", "error_message", "assigned_user")},
        "project_sk": prj.c.project_sk,
        "feed_sk": feed.c.feed_sk,
        "match_process_sk": mp.c.match_process_sk,
        "workflow_sk": wf.c.workflow_sk,
        "batch_id": _typed(batch_id, sa.String(40), cast),
    }
    assert list(columns) == [c.name for c in fct.columns], "snapshot columns out of step with the table"
    return sa.select(*(expr.label(name) for name, expr in columns.items())).select_from(joined)


def sla_list_loaded(conn: sa.Connection) -> bool:
    """Whether a feed SLA list is loaded: `ref_feed_sla` exists and holds rows (an empty list says nothing)."""
    if not sa.inspect(conn).has_table(ref_feed_sla.name):
        return False
    return conn.execute(sa.select(sa.literal(1)).select_from(ref_feed_sla).limit(1)).first() is not None


def replace_week(conn: sa.Connection, week: Week, batch_id: str) -> int:
    """Delete `week`'s rows and insert them again, inside the caller's transaction; returns the row count."""
    with_sla = sla_list_loaded(conn)
    conn.execute(sa.delete(fct).where(fct.c.week_start == week.start))
    select = snapshot_select(week, batch_id, conn.dialect.name, with_sla=with_sla)
    conn.execute(sa.insert(fct).from_select([c.name for c in fct.columns], select))
    return conn.execute(sa.select(sa.func.count()).select_from(fct).where(fct.c.week_start == week.start)).scalar_one()


@dataclass(frozen=True)
class WeekBuild:
    """What one build of a week did."""

    week: Week
    batch_id: str
    rows: int
    seconds: float
    with_sla: bool


def build_week(engine: sa.Engine, week: Week, run_id: str | None = None) -> WeekBuild:
    """Rebuild `week` in one transaction and record it in `etl_batches` (a failure is recorded too)."""
    batch_id = new_batch_id()
    started = utc_now()
    clock = time.perf_counter()
    batch = dict(
        batch_id=batch_id,
        asset_key=ASSET_KEY,
        run_id=run_id,
        source="stg_ows_workflow_run, stg_ows_run_step_history, stg_ows_workflow_step, dim_*, ref_feed_sla",
        mode="weekly",
        as_of=week.end_utc,
        watermark_from=week.start_utc.isoformat(),
        watermark_to=week.end_utc.isoformat(),
        started_at=started,
    )
    try:
        with engine.begin() as conn:
            with_sla = sla_list_loaded(conn)
            rows = replace_week(conn, week, batch_id)
            record_batch(conn, rows_in=rows, rows_loaded=rows, rows_rejected=0, status="SUCCESS", **batch)
    except Exception as exc:
        record_failed_batch(engine, message=f"{type(exc).__name__}: {exc}"[:2000], **batch)
        raise
    return WeekBuild(week=week, batch_id=batch_id, rows=rows, seconds=time.perf_counter() - clock, with_sla=with_sla)


def week_summary(conn: sa.Connection, week: Week, sla_known: bool = True) -> dict[str, int | None]:
    """Counts of the built week: runs, ended, failed, breaks, open, SLA breaches (None when unknown)."""
    def total(condition=None):
        query = sa.select(sa.func.count()).select_from(fct).where(fct.c.week_start == week.start)
        if condition is not None:
            query = query.where(condition)
        return conn.execute(query).scalar_one()

    return {
        "runs": total(),
        "ended": total(fct.c.reached_end_state.is_(True)),
        "open": total(fct.c.reached_end_state.is_(False)),
        "failed": total(fct.c.is_failed.is_(True)),
        "breaks": total(fct.c.is_break.is_(True)),
        "sla_breached": total(fct.c.sla_breached.is_(True)) if sla_known else None,
    }


def preview_rows(conn: sa.Connection, week: Week, limit: int = 20, sla_known: bool = True) -> str:
    """A small Markdown table of the built week by project (runs, ended, open, failed, breaks, SLA breaches)."""
    def flag_sum(column):
        return sa.func.sum(sa.case((column.is_(True), 1), else_=0))

    query = (
        sa.select(
            fct.c.project_code,
            sa.func.count().label("runs"),
            flag_sum(fct.c.reached_end_state).label("ended"),
            flag_sum(fct.c.is_failed).label("failed"),
            flag_sum(fct.c.is_break).label("breaks"),
            flag_sum(fct.c.sla_breached).label("sla_breached"),
        )
        .where(fct.c.week_start == week.start)
        .group_by(fct.c.project_code)
        .order_by(sa.func.count().desc(), fct.c.project_code)
        .limit(limit)
    )
    lines = [
        "| project | runs | ended | open | failed | breaks | SLA breached |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in conn.execute(query):
        lines.append(
            f"| {row.project_code or '(unknown)'} | {row.runs} | {row.ended} | {row.runs - row.ended} "
            f"| {row.failed} | {row.breaks} | {row.sla_breached if sla_known else 'unknown'} |"
        )
    return "\n".join(lines)


def unresolved_keys(conn: sa.Connection, weeks: list[Week]) -> dict[str, int]:
    """Rows of `weeks` whose project, feed, match process or workflow had no dimension version at the week's end."""
    starts = [w.start for w in weeks]

    def missing(sk, natural_key):
        return sa.func.sum(sa.case((sa.and_(natural_key.is_not(None), sk.is_(None)), 1), else_=0))

    row = conn.execute(
        sa.select(
            missing(fct.c.project_sk, fct.c.project_id).label("project_sk"),
            missing(fct.c.feed_sk, fct.c.feed_id).label("feed_sk"),
            missing(fct.c.match_process_sk, fct.c.match_process_id).label("match_process_sk"),
            missing(fct.c.workflow_sk, fct.c.workflow_id).label("workflow_sk"),
        ).where(fct.c.week_start.in_(starts))
    ).one()
    return {name: int(value or 0) for name, value in row._mapping.items()}

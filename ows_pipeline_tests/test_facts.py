"""The weekly snapshot `fct_workflow_run_weekly`: state as of the week's end, exact backfills, idempotent rebuilds."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from ows_pipeline.warehouse.schema.facts import fct_workflow_run_weekly as fct
from ows_pipeline.facts.weekly_snapshot import build_week, snapshot_select, week_for_key
from ows_pipeline.resources import make_engine
from ows_pipeline.warehouse.schema import etl_batches
from ows_pipeline_tests.test_facts_scenario import (
    RUNS,
    WEEK,
    WEEK_END_UTC,
    WEEK_START_UTC,
    load_inputs_as_of,
)

UTC = dt.timezone.utc
LIVE = WEEK_END_UTC + dt.timedelta(hours=3)  # the schedule's run, Sunday 02:00 BST
LATER = WEEK_END_UTC + dt.timedelta(weeks=5)


def _engine(url: str) -> sa.Engine:
    return make_engine(url, role="warehouse")


def _week_rows(engine: sa.Engine, week: str) -> list[dict]:
    columns = [c for c in fct.columns if c.name != "batch_id"]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*columns).where(fct.c.week_start == dt.date.fromisoformat(week)).order_by(fct.c.run_id)
        ).mappings()
        return [dict(r) for r in rows]


def _by_run(rows: list[dict]) -> dict[int, dict]:
    return {r["run_id"]: r for r in rows}


def test_week_for_key_follows_the_local_calendar():
    winter = week_for_key("2025-01-12", "Europe/London")
    assert (winter.start_utc, winter.end_utc) == (
        dt.datetime(2025, 1, 12, 0, 0, tzinfo=UTC),
        dt.datetime(2025, 1, 19, 0, 0, tzinfo=UTC),
    )
    summer = week_for_key(WEEK, "Europe/London")
    assert (summer.start_utc, summer.end_utc) == (WEEK_START_UTC, WEEK_END_UTC)
    spring_forward = week_for_key("2025-03-23", "Europe/London")  # clocks go forward on 2025-03-30
    assert spring_forward.end_utc - spring_forward.start_utc == dt.timedelta(days=7)
    clocks_change = week_for_key("2025-03-30", "Europe/London")  # starts the morning clocks go forward, at 00:00 GMT
    assert clocks_change.start_utc == dt.datetime(2025, 3, 30, 0, 0, tzinfo=UTC)
    assert clocks_change.end_utc == dt.datetime(2025, 4, 5, 23, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="is a Monday; weeks start on Sunday"):
        week_for_key("2025-01-13", "Europe/London")
    with pytest.raises(ValueError, match="not a date"):
        week_for_key("week 2", "Europe/London")


def test_runs_show_their_state_as_of_the_weeks_end(sqlite_url):
    engine = _engine(sqlite_url)
    load_inputs_as_of(engine, LATER)  # today: every run of the week has ended since
    build_week(engine, week_for_key(WEEK, "Europe/London"))
    rows = _by_run(_week_rows(engine, WEEK))

    assert sorted(rows) == [1, 2, 3, 5, 7, 9, 10]  # 4 ended before, 6 and 8 began after (8: 00:30 BST Sunday)
    r1 = rows[1]  # COMPLETE now, matching at the week's end
    assert (r1["status"], r1["result_code"], r1["reached_end_state"], r1["end_date"]) == ("ACTIVE", None, False, None)
    assert r1["records_loaded"] is None  # open runs show no counts: OWS keeps only a run's latest ones
    assert r1["duration_minutes"] == pytest.approx((WEEK_END_UTC - RUNS[0].begin).total_seconds() / 60)
    assert (r1["project_name"], r1["project_sk"]) == ("Payments", 1)  # renamed after the week
    assert (r1["feed_code"], r1["feed_sk"], r1["process_code"], r1["match_process_sk"]) == ("BANK", 11, "BANK_GL", 31)
    assert (r1["workflow_code"], r1["workflow_version"], r1["workflow_sk"]) == ("PAY_DAILY", 1, 21)
    assert (r1["sla_minutes"], r1["sla_breached"]) == (60, True)

    r2 = rows[2]  # ended in the week with breaks
    assert (r2["status"], r2["result_code"], r2["reached_end_state"], r2["is_break"], r2["is_failed"]) == (
        "COMPLETE", "BREAKS", True, True, False)
    assert (r2["records_loaded"], r2["matched_cnt"], r2["suggested_cnt"], r2["unmatched_cnt"]) == (50, 40, 2, 8)
    assert r2["duration_minutes"] == pytest.approx(51 * 60)
    assert r2["end_date"].replace(tzinfo=UTC) == dt.datetime(2025, 6, 4, 9, 0, tzinfo=UTC)
    assert r2["week_end"].replace(tzinfo=UTC) == WEEK_END_UTC
    assert r2["week_start"] == dt.date(2025, 6, 1)

    r3 = rows[3]  # a step in error at the week's end, retried by an operator and completed after it: still open
    assert (r3["status"], r3["result_code"], r3["is_failed"], r3["reached_end_state"]) == ("ACTIVE", None, False, False)
    assert (r3["feed_code"], r3["feed_name"], r3["feed_sk"]) == ("CARDS", "Card file v2", 14)  # changed mid-week
    assert (r3["match_process_id"], r3["process_code"], r3["match_process_sk"]) == (None, None, None)
    assert (r3["workflow_name"], r3["workflow_sk"], r3["workflow_version"]) == ("Cards daily", 22, 3)
    assert (r3["sla_minutes"], r3["sla_breached"]) == (None, None)  # no SLA known for CARDS

    assert (rows[5]["status"], rows[5]["result_code"]) == ("SUSPEND", None)
    assert (rows[7]["status"], rows[7]["reached_end_state"]) == ("ACTIVE", False)  # ended 30 minutes after the week
    r9 = rows[9]  # timed out before the week's end
    assert (r9["status"], r9["result_code"], r9["is_failed"], r9["reached_end_state"]) == ("ERROR", "#TIMEOUT", True, True)
    assert (rows[10]["status"], rows[10]["reached_end_state"]) == ("COMPLETE", True)  # ended as the week began


def _backfill_equals_live(url: str) -> None:
    engine = _engine(url)
    week = week_for_key(WEEK, "Europe/London")
    load_inputs_as_of(engine, LIVE)
    build_week(engine, week)
    live = _week_rows(engine, WEEK)

    load_inputs_as_of(engine, LATER)  # the source moves on: runs complete, a project is renamed
    with engine.connect() as conn:
        from ows_pipeline.warehouse.schema.staging import STAGING_TABLES

        run = STAGING_TABLES["ows_workflow_run"]
        assert conn.execute(sa.select(run.c.status).where(run.c.run_id == 1)).scalar_one() == "COMPLETE"
    build_week(engine, week)
    backfilled = _week_rows(engine, WEEK)

    assert backfilled == live
    assert _by_run(live)[1]["status"] == "ACTIVE"


def test_backfilled_week_equals_the_live_snapshot_sqlite(sqlite_url):
    _backfill_equals_live(sqlite_url)


@pytest.mark.postgres
def test_backfilled_week_equals_the_live_snapshot_postgres(pg_url):
    _backfill_equals_live(pg_url)


@pytest.mark.postgres
def test_sqlite_and_postgres_build_the_same_week(sqlite_url, pg_url):
    weeks = []
    for url in (sqlite_url, pg_url):
        engine = _engine(url)
        load_inputs_as_of(engine, LATER)
        build_week(engine, week_for_key(WEEK, "Europe/London"))
        weeks.append([{k: (v.replace(tzinfo=UTC) if isinstance(v, dt.datetime) else v) for k, v in r.items()}
                      for r in _week_rows(engine, WEEK)])
    assert weeks[0] == weeks[1]


def test_rebuilding_a_week_replaces_that_week_only(sqlite_url):
    engine = _engine(sqlite_url)
    load_inputs_as_of(engine, LATER)
    earlier, week = week_for_key("2025-05-25", "Europe/London"), week_for_key(WEEK, "Europe/London")
    build_week(engine, earlier)
    first = build_week(engine, week)
    before = (_week_rows(engine, "2025-05-25"), _week_rows(engine, WEEK))
    second = build_week(engine, week)
    after = (_week_rows(engine, "2025-05-25"), _week_rows(engine, WEEK))

    assert before == after and first.rows == second.rows == 7
    assert sorted(r["run_id"] for r in before[0]) == [4, 5, 10]
    with engine.connect() as conn:
        batches = conn.execute(
            sa.select(etl_batches.c.batch_id, etl_batches.c.rows_loaded, etl_batches.c.status, etl_batches.c.as_of)
            .where(etl_batches.c.asset_key == "fct_workflow_run_weekly")
            .order_by(etl_batches.c.started_at)
        ).all()
        fact_batches = conn.execute(sa.select(fct.c.batch_id).where(fct.c.week_start == week.start).distinct()).scalars().all()
    assert [(b.rows_loaded, b.status) for b in batches] == [(3, "SUCCESS"), (7, "SUCCESS"), (7, "SUCCESS")]
    assert batches[-1].as_of.replace(tzinfo=UTC) == WEEK_END_UTC
    assert fact_batches == [second.batch_id]


def test_without_sla_reference_the_sla_columns_stay_empty(sqlite_url):
    engine = _engine(sqlite_url)
    load_inputs_as_of(engine, LATER)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE ref_feed_sla"))
    built = build_week(engine, week_for_key(WEEK, "Europe/London"))
    assert built.rows == 7 and not built.with_sla
    assert {(r["sla_minutes"], r["sla_breached"]) for r in _week_rows(engine, WEEK)} == {(None, None)}


def test_a_failed_build_keeps_the_week_and_is_recorded(sqlite_url):
    engine = _engine(sqlite_url)
    load_inputs_as_of(engine, LATER)
    week = week_for_key(WEEK, "Europe/London")
    build_week(engine, week)
    before = _week_rows(engine, WEEK)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE stg_ows_run_step_history RENAME TO stg_history_away"))
    with pytest.raises(sa.exc.OperationalError):
        build_week(engine, week)
    assert _week_rows(engine, WEEK) == before
    with engine.connect() as conn:
        statuses = conn.execute(
            sa.select(etl_batches.c.status, etl_batches.c.message)
            .where(etl_batches.c.asset_key == "fct_workflow_run_weekly")
            .order_by(etl_batches.c.started_at)
        ).all()
    assert [s.status for s in statuses] == ["SUCCESS", "FAILED"]
    assert "stg_ows_run_step_history" in statuses[-1].message


def test_snapshot_sql_compiles_for_oracle():
    from sqlalchemy.dialects import oracle

    select = snapshot_select(week_for_key(WEEK, "Europe/London"), "b1", "oracle")
    sql = str(sa.insert(fct).from_select([c.name for c in fct.columns], select).compile(dialect=oracle.dialect()))
    assert "row_number() over" in sql.lower() and "AS DATE)) * 1440" in sql and "EPOCH" not in sql and "LIMIT" not in sql
    assert "CAST(:param_2 AS TIMESTAMP WITH TIME ZONE)" in sql


def test_asset_materializes_a_week_with_metadata_and_a_dimension_key_check(sqlite_url):
    import dagster as dg

    from ows_pipeline.defs.facts.assets import fct_workflow_run_weekly
    from ows_pipeline.resources import WarehouseResource

    engine = _engine(sqlite_url)
    load_inputs_as_of(engine, LATER)
    resources = {"warehouse": WarehouseResource(url=sqlite_url)}
    result = dg.materialize([fct_workflow_run_weekly], partition_key=WEEK, resources=resources)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("fct_workflow_run_weekly")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert materialization.partition == WEEK
    assert (metadata["dagster/row_count"], metadata["ended"], metadata["open"], metadata["failed"]) == (7, 3, 4, 1)
    assert "| PAY | 3 |" in metadata["preview"]
    (check,) = result.get_asset_check_evaluations()
    assert check.passed

    with engine.begin() as conn:  # the cards workflow loses its dimension history
        conn.execute(sa.text("DELETE FROM dim_workflow WHERE workflow_id = 20"))
    result = dg.materialize([fct_workflow_run_weekly], partition_key=WEEK, resources=resources)
    (check,) = result.get_asset_check_evaluations()
    assert result.success and not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["rows_without_workflow_sk"].value == 4

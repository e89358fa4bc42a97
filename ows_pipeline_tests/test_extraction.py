"""Extraction into raw_ows_*: same rows whatever the databases, late commits, atomic failures."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from ows_pipeline.extract.extraction import ExtractOptions, extract_table
from ows_pipeline.source.schema import SOURCE_TABLES, SOURCE_TABLES_BY_NAME
from ows_pipeline.warehouse.batches import last_successful_batch
from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema import RAW_TABLES, create_warehouse_tables, etl_batches
from ows_pipeline_tests.small_source import add_run, build_small_source, utc_now

RUN = SOURCE_TABLES_BY_NAME["ows_workflow_run"]
HIST = SOURCE_TABLES_BY_NAME["ows_run_step_history"]


def _warehouse(url: str) -> sa.Engine:
    from ows_pipeline.resources import make_engine

    engine = make_engine(url, role="warehouse")
    create_warehouse_tables(engine)
    return engine


def _normalise(value):
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def raw_rows(engine: sa.Engine, table: str) -> list[tuple]:
    raw = RAW_TABLES[table]
    cols = [c for c in raw.columns if not c.name.startswith("_")]
    key = [raw.c[k] for k in SOURCE_TABLES_BY_NAME[table].key]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*cols).order_by(*key)).all()
    return [tuple(_normalise(v) for v in row) for row in rows]


def extract_all(source: sa.Engine, warehouse: sa.Engine, **options) -> dict:
    return {t.name: extract_table(source, warehouse, t, ExtractOptions(**options)) for t in SOURCE_TABLES}


@pytest.mark.postgres
@pytest.mark.parametrize("source_kind", ["sqlite", "postgres"])
def test_same_rows_whatever_source_and_warehouse(source_kind, sqlite_url, sqlite_url_2, pg_url, pg_url_2):
    now = utc_now()
    source_url = sqlite_url if source_kind == "sqlite" else pg_url
    source = build_small_source(source_url, runs=30, now=now)
    results = {}
    for name, url in (("sqlite", sqlite_url_2), ("postgres", pg_url_2)):
        warehouse = _warehouse(url)
        extract_all(source, warehouse)
        results[name] = {t.name: raw_rows(warehouse, t.name) for t in SOURCE_TABLES}
    assert results["sqlite"] == results["postgres"]
    assert len(results["sqlite"]["ows_workflow_run"]) == 30
    assert len(results["sqlite"]["ows_run_step_history"]) == 60
    # text with tabs, backslashes and newlines survives COPY unchanged
    messages = {row[6] for row in results["postgres"]["ows_run_step_status"]}
    assert "line\twith\\tab\nnewline" in messages


def test_late_commit_is_picked_up_by_the_lookback_without_duplicates(sqlite_url, sqlite_url_2):
    now = utc_now()
    source = build_small_source(sqlite_url, runs=20, now=now - dt.timedelta(minutes=30))
    warehouse = _warehouse(sqlite_url_2)
    first = extract_table(source, warehouse, RUN, ExtractOptions(safety_delay=dt.timedelta(seconds=60)))
    assert first.rows_loaded == 20
    watermark = dt.datetime.fromisoformat(first.watermark_to)
    # a transaction that began before the extract commits afterwards, stamped before the watermark
    add_run(source, 999, last_update=watermark - dt.timedelta(minutes=2))
    second = extract_table(source, warehouse, RUN, ExtractOptions(lookback=dt.timedelta(minutes=10)))
    rows = raw_rows(warehouse, "ows_workflow_run")
    assert [r[0] for r in rows].count(999) == 1
    assert len(rows) == 21
    assert second.rows_loaded == 1
    # and the look-back re-reads without duplicating
    extract_table(source, warehouse, RUN, ExtractOptions(lookback=dt.timedelta(days=30)))
    assert len(raw_rows(warehouse, "ows_workflow_run")) == 21


def test_without_lookback_a_late_commit_would_be_lost(sqlite_url, sqlite_url_2):
    """The control for the test above: the look-back is what saves the late row."""
    source = build_small_source(sqlite_url, runs=5, now=utc_now() - dt.timedelta(minutes=30))
    warehouse = _warehouse(sqlite_url_2)
    first = extract_table(source, warehouse, RUN)
    add_run(source, 999, last_update=dt.datetime.fromisoformat(first.watermark_to) - dt.timedelta(minutes=2))
    extract_table(source, warehouse, RUN, ExtractOptions(lookback=dt.timedelta(0)))
    assert 999 not in [r[0] for r in raw_rows(warehouse, "ows_workflow_run")]


def test_rows_inside_the_safety_delay_wait_for_the_next_run(sqlite_url, sqlite_url_2):
    source = build_small_source(sqlite_url, runs=5, now=utc_now() - dt.timedelta(hours=1))
    add_run(source, 777, last_update=utc_now() + dt.timedelta(seconds=5))
    warehouse = _warehouse(sqlite_url_2)
    extract_table(source, warehouse, RUN, ExtractOptions(safety_delay=dt.timedelta(seconds=60)))
    assert 777 not in [r[0] for r in raw_rows(warehouse, "ows_workflow_run")]
    extract_table(source, warehouse, RUN, ExtractOptions(safety_delay=dt.timedelta(seconds=-60)))
    assert 777 in [r[0] for r in raw_rows(warehouse, "ows_workflow_run")]


def test_updated_run_replaces_its_older_version(sqlite_url, sqlite_url_2):
    source = build_small_source(sqlite_url, runs=5, now=utc_now() - dt.timedelta(hours=1))
    warehouse = _warehouse(sqlite_url_2)
    extract_table(source, warehouse, RUN)
    with source.begin() as conn:
        conn.execute(
            sa.text("UPDATE ows_workflow_run SET status = 'ERROR', last_update_date = :t WHERE run_id = 3"),
            {"t": (utc_now() - dt.timedelta(minutes=5)).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")},
        )
    result = extract_table(source, warehouse, RUN)
    assert result.rows_loaded == 1
    rows = {r[0]: r for r in raw_rows(warehouse, "ows_workflow_run")}
    assert rows[3][5] == "ERROR" and len(rows) == 5


def test_history_is_appended_on_hist_id_and_late_ids_are_not_lost(sqlite_url, sqlite_url_2):
    source = build_small_source(sqlite_url, runs=10, now=utc_now() - dt.timedelta(hours=1))
    warehouse = _warehouse(sqlite_url_2)
    first = extract_table(source, warehouse, HIST)
    assert first.watermark_to == "20"
    add_run(source, 50, utc_now() - dt.timedelta(minutes=5), hist_id=30)
    add_run(source, 51, utc_now() - dt.timedelta(minutes=5), hist_id=25)  # a lower id committed later
    extract_table(source, warehouse, HIST)
    add_run(source, 52, utc_now() - dt.timedelta(minutes=5), hist_id=21)  # later still, below the watermark
    extract_table(source, warehouse, HIST)
    ids = [r[0] for r in raw_rows(warehouse, "ows_run_step_history")]
    assert ids == sorted(set(ids)) and {21, 25, 30} <= set(ids) and len(ids) == 23


@pytest.mark.parametrize("table", ["ows_workflow_run", "ows_project", "ows_run_step_history"])
def test_failure_in_the_middle_of_a_load_leaves_table_and_watermark_unchanged(table, sqlite_url, sqlite_url_2):
    source_table = SOURCE_TABLES_BY_NAME[table]
    source = build_small_source(sqlite_url, runs=40, now=utc_now() - dt.timedelta(hours=1))
    warehouse = _warehouse(sqlite_url_2)
    extract_table(source, warehouse, source_table)
    before = raw_rows(warehouse, table)
    with warehouse.connect() as conn:
        watermark_before = last_successful_batch(conn, f"raw_{table}").watermark_to
    add_run(source, 500, utc_now() - dt.timedelta(minutes=5), hist_id=500)
    with source.begin() as conn:
        conn.execute(sa.text("UPDATE ows_project SET project_name = 'renamed'"))

    def crash_after_first_chunk(message: str) -> None:
        raise RuntimeError("source connection lost")

    with pytest.raises(RuntimeError, match="source connection lost"):
        extract_table(source, warehouse, source_table, ExtractOptions(chunk_rows=7), log=crash_after_first_chunk)
    assert raw_rows(warehouse, table) == before
    with warehouse.connect() as conn:
        assert last_successful_batch(conn, f"raw_{table}").watermark_to == watermark_before
        failed = conn.execute(sa.select(etl_batches).where(etl_batches.c.status == "FAILED")).all()
    assert len(failed) == 1 and "source connection lost" in failed[0].message
    extract_table(source, warehouse, source_table, ExtractOptions(chunk_rows=7))
    assert raw_rows(warehouse, table) != before


def test_every_load_is_recorded_in_etl_batches(sqlite_url, sqlite_url_2):
    source = build_small_source(sqlite_url, runs=10, now=utc_now() - dt.timedelta(hours=1))
    warehouse = _warehouse(sqlite_url_2)
    extract_all(source, warehouse)
    with warehouse.connect() as conn:
        rows = conn.execute(sa.select(etl_batches)).all()
    assert {r.asset_key for r in rows} == {f"raw_{t.name}" for t in SOURCE_TABLES}
    assert all(r.status == "SUCCESS" and r.rows_in == r.rows_loaded for r in rows)
    run_batch = next(r for r in rows if r.asset_key == "raw_ows_workflow_run")
    assert run_batch.rows_in == 10 and run_batch.watermark_to is not None


def test_a_demo_source_runs_on_its_simulated_clock(sqlite_url, sqlite_url_2):
    """The demo source stands at its as-of time: extracts and batch as-of times follow it, not the host clock."""
    from ows_pipeline.demo.source import generate_demo

    as_of = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.timezone.utc)
    generate_demo(sqlite_url, seed=7, projects=2, feeds_per_project=3, workflows_per_project=2, runs_per_day=10, weeks=2, as_of=as_of)
    warehouse = _warehouse(sqlite_url_2)
    result = extract_table(sa.create_engine(sqlite_url), warehouse, RUN, ExtractOptions(safety_delay=dt.timedelta(seconds=60)))
    assert result.as_of == as_of - dt.timedelta(seconds=60)
    assert result.rows_loaded > 0
    full = extract_table(sa.create_engine(sqlite_url), warehouse, SOURCE_TABLES_BY_NAME["ows_project"])
    assert full.as_of == as_of

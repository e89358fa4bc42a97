"""Staging in chunks: a tiny chunk size gives exactly the result of one chunk; a batch is all or nothing.

Every table of the first load spans several chunks (one row per chunk), so every set-based rule
(uniqueness, references, one open run per key) must see the whole batch, not the chunk.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from ows_pipeline.defs.staging.assets import STAGING_ASSETS
from ows_pipeline.resources import WarehouseResource
from ows_pipeline.staging.from_raw import stage_from_raw
from ows_pipeline.staging.quarantine import stage_rows
from ows_pipeline.warehouse.data_errors import DataError, shorten, write_data_errors
from ows_pipeline.warehouse.schema import STAGING_TABLES, create_warehouse_tables
from ows_pipeline_tests.test_staging_assets import load_raw
from ows_pipeline_tests.test_staging_rules import (
    AS_OF,
    RUN_EXPECTED_ERRORS,
    STAGING_ORDER,
    _stage_valid_parents,
    seeded_runs,
    valid_frames,
)


def first_load_frames() -> dict[str, pd.DataFrame]:
    """The valid data set with the seeded run defects and one workflow whose own rules reject it."""
    frames = valid_frames()
    frames["ows_workflow"] = frames["ows_workflow"].astype(object)
    frames["ows_workflow"].loc[1, "workflow_code"] = "BAD CODE!"  # workflow 1001: its runs follow it out
    runs = seeded_runs()
    runs.at[11, "records_loaded"], runs.at[13, "run_key"] = 100, "RUN-LONG"  # raw columns are typed and sized
    frames["ows_workflow_run"] = runs
    return frames


RAW_RUN_ERRORS = {(n, rule) for n, _, _, rule in RUN_EXPECTED_ERRORS if n not in (12, 14)}


def _warehouse(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    create_warehouse_tables(engine)
    with engine.begin() as conn:  # the seeded runs repeat a key (the raw table's unique index aside)
        conn.execute(sa.text("DROP INDEX ux_raw_ows_workflow_run_key"))
    for name, frame in first_load_frames().items():
        load_raw(engine, name, frame, f"raw-{name}-1")
    return engine


def _stage_everything(url: str, chunk_rows: int):
    """Stage the tables one run each (a failed blocking check must not skip the next table)."""
    config = {"data_docs": False, "max_rejection_rate": 1.0, "chunk_rows": chunk_rows}
    checks, chunks = {}, {}
    assets = {a.key.path[0]: a for a in STAGING_ASSETS}
    for name in STAGING_ORDER:
        asset = assets[f"stg_{name}"]
        result = dg.materialize([asset], resources={"warehouse": WarehouseResource(url=url)},
                                run_config={"ops": {asset.key.to_python_identifier(): {"config": config}}},
                                raise_on_error=False)
        for e in result.get_asset_check_evaluations():
            meta = e.metadata
            checks[(e.asset_key.to_user_string(), e.check_name)] = (
                e.passed, *(meta[k].value if k in meta else None for k in (
                    "unexpected_count", "sample_failing_values", "rows_rejected", "rows_with_key_problems")),
            )
        (materialization,) = result.asset_materializations_for_node(asset.key.to_python_identifier())
        chunks[f"stg_{name}"] = materialization.metadata["chunks"].value
    return checks, chunks


def _rows(conn, query) -> list[tuple]:
    return sorted((tuple(r) for r in conn.execute(sa.text(query))), key=repr)


def warehouse_state(engine: sa.Engine, watermarks: bool = True) -> dict:
    """Everything staging writes: staged rows, data_errors rows and etl_batches counts."""
    state = {}
    with engine.connect() as conn:
        for name, table in STAGING_TABLES.items():
            columns = ", ".join(c.name for c in table.columns if c.name != "_batch_id")
            state[table.name] = _rows(conn, f"SELECT {columns} FROM {table.name}")
        state["data_errors"] = _rows(conn, "SELECT asset_key, source_file, row_number, record_key, field, value, "
                                           "rule, severity, message FROM data_errors")
        marks = ", watermark_from, watermark_to" if watermarks else ""
        state["etl_batches"] = _rows(conn, "SELECT asset_key, rows_in, rows_loaded, rows_rejected, status, mode, "
                                           f"message{marks} FROM etl_batches WHERE asset_key LIKE 'stg_%'")
    return state


def _same_result_with_tiny_chunks(url_one: str, url_tiny: str) -> None:
    one, tiny = _warehouse(url_one), _warehouse(url_tiny)
    try:
        checks_one, chunks_one = _stage_everything(url_one, 1_000)
        checks_tiny, chunks_tiny = _stage_everything(url_tiny, 1)
        assert set(chunks_one.values()) == {1}
        assert all(chunks_tiny[f"stg_{name}"] == len(frame) for name, frame in first_load_frames().items())
        state_one, state_tiny = warehouse_state(one, watermarks=False), warehouse_state(tiny, watermarks=False)
        for table in state_one:
            assert state_tiny[table] == state_one[table], table
        assert checks_tiny == checks_one

        # The set-based rules saw the whole batch, across chunks.
        errors = {(r[0], r[2], r[6]) for r in state_tiny["data_errors"]}
        assert {("stg_ows_workflow_run", n, rule) for n, rule in RAW_RUN_ERRORS} <= errors
        parent = [r for r in state_tiny["data_errors"] if r[6] == "run_workflow_exists" and r[5] == "1001"]
        assert parent and all("rejected because its workflow was" in r[8] for r in parent)
        unknown = [r for r in state_tiny["data_errors"] if r[6] == "run_workflow_exists" and r[5] == "999"]
        assert [r[8] for r in unknown] == ["workflow_id has no match in stg_ows_workflow.workflow_id"]
        counts = {r[0]: r[1:4] for r in state_tiny["etl_batches"]}
        assert all(rows_in == loaded + rejected for rows_in, loaded, rejected in counts.values())
        assert counts["stg_ows_workflow"] == (2, 1, 1)
    finally:
        one.dispose()
        tiny.dispose()


def test_tiny_chunks_give_exactly_the_one_chunk_result_sqlite(sqlite_url, sqlite_url_2, ows_home):
    _same_result_with_tiny_chunks(sqlite_url, sqlite_url_2)


@pytest.mark.postgres
def test_tiny_chunks_give_exactly_the_one_chunk_result_postgres(pg_url, pg_url_2, ows_home):
    _same_result_with_tiny_chunks(pg_url, pg_url_2)


def _duplicate_split_across_chunks(engine: sa.Engine) -> None:
    _stage_valid_parents(engine, "ows_workflow_run")
    runs = valid_frames()["ows_workflow_run"].astype(object)
    runs.loc[19, "run_id"] = 1  # the last row repeats the first row's key: ten chunks apart
    result = stage_rows(engine, "ows_workflow_run", runs, batch_id="dup", as_of=AS_OF, chunk_rows=2)
    assert result.chunks == 10
    with engine.connect() as conn:
        errors = conn.execute(sa.text("SELECT row_number, rule, value FROM data_errors WHERE batch_id = 'dup' "
                                      "ORDER BY row_number")).all()
        staged = {r[0] for r in conn.execute(sa.text("SELECT run_id FROM stg_ows_workflow_run"))}
    assert [tuple(e) for e in errors] == [(1, "unique_key", "1"), (20, "unique_key", "1")]
    assert (result.rows_in, result.loaded, result.rejected) == (20, 18, 2)
    assert 1 not in staged and len(staged) == 18
    outcome = {o.rule.name: o for o in result.check_results}["unique_key"]
    assert (outcome.unexpected_count, outcome.sample_values()) == (2, ["run_id=1"])


def test_a_duplicate_key_split_across_chunks_is_caught_sqlite(engine):
    _duplicate_split_across_chunks(engine)


@pytest.mark.postgres
def test_a_duplicate_key_split_across_chunks_is_caught_postgres(pg_url):
    engine = sa.create_engine(pg_url)
    create_warehouse_tables(engine)
    try:
        _duplicate_split_across_chunks(engine)
    finally:
        engine.dispose()


class Interrupted(RuntimeError):
    pass


def _failure_in_a_middle_chunk(url: str) -> None:
    engine = _warehouse(url)
    try:
        for name in STAGING_ORDER:
            stage_from_raw(engine, name, batch_id=f"first-{name}", chunk_rows=3)
        later = dt.datetime(2026, 11, 21, 6, tzinfo=dt.timezone.utc)
        update = valid_frames()["ows_workflow_run"].astype(object)
        update = update[update["workflow_id"] == 1000].reset_index(drop=True)  # workflow 1001 was rejected
        update["status"], update["end_date"] = "COMPLETE", "2026-11-20T10:00:00Z"
        load_raw(engine, "ows_workflow_run", update, "raw-runs-2", as_of=later)
        before = warehouse_state(engine)

        def fail_in_chunk_3(chunk: int, rows: int) -> None:
            if chunk == 3:
                raise Interrupted(f"stopped after {rows} rows")

        with pytest.raises(Interrupted):
            stage_from_raw(engine, "ows_workflow_run", batch_id="second", chunk_rows=3, progress=fail_in_chunk_3)
        assert warehouse_state(engine) == before  # staged rows, data_errors and watermarks as they were

        result = stage_from_raw(engine, "ows_workflow_run", batch_id="second", chunk_rows=3)
        assert (result.rows_in, result.rejected, result.chunks) == (10, 0, 4)
        after = warehouse_state(engine)
        with engine.connect() as conn:
            statuses = {r[0] for r in conn.execute(sa.text("SELECT status FROM stg_ows_workflow_run"))}
            batch = conn.execute(sa.text("SELECT message FROM etl_batches WHERE batch_id = 'second'")).scalar_one()
        assert statuses == {"COMPLETE"} and "raw-runs-2" in batch
        assert after["data_errors"] == before["data_errors"]  # the clean second batch added none
    finally:
        engine.dispose()


def test_a_failure_in_a_middle_chunk_leaves_everything_as_before_sqlite(sqlite_url):
    _failure_in_a_middle_chunk(sqlite_url)


@pytest.mark.postgres
def test_a_failure_in_a_middle_chunk_leaves_everything_as_before_postgres(pg_url):
    _failure_in_a_middle_chunk(pg_url)


@pytest.fixture
def engine(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    create_warehouse_tables(engine)
    yield engine
    engine.dispose()


def test_data_errors_writer_keeps_the_full_value_and_cuts_labels(engine):
    long_key = "run_id=" + "9" * 500
    with engine.begin() as conn:
        written = write_data_errors(conn, [
            DataError("max_length", "ERROR", "run_key is too long", field="run_key", value="R" * 40_000,
                      row_number=7, record_key=long_key),
        ], batch_id="b1", asset_key="stg_ows_workflow_run", source_file="runs.csv")
    assert written == 1
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM data_errors")).mappings().one()
    assert row["value"] == "R" * 40_000 and row["record_key"] == long_key[:200]
    assert (row["batch_id"], row["source_file"], row["row_number"], row["severity"]) == ("b1", "runs.csv", 7, "ERROR")
    assert shorten("R" * 40_000) == "R" * 200 + "… (40,000 characters)" and shorten("ok") == "ok"

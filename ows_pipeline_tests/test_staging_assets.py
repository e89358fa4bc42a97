"""Staging assets in Dagster: checks, blocking table-level failures, Data Docs, incremental batches."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from ows_pipeline.resources import WarehouseResource
from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.staging.data_docs import data_docs_index_path
from ows_pipeline.defs.staging.assets import STAGING_ASSETS
from ows_pipeline.warehouse.batches import record_batch
from ows_pipeline.warehouse.schema import RAW_TABLES, create_warehouse_tables
from ows_pipeline_tests.test_staging_rules import AS_OF, valid_frames


def _python_values(frame: pd.DataFrame, table_name: str) -> list[dict]:
    table = SOURCE_TABLES_BY_NAME[table_name].table
    records = []
    for row in frame.to_dict("records"):
        record = {}
        for column in table.columns:
            value = row[column.name]
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                value = None
            elif isinstance(column.type, sa.DateTime):
                value = pd.Timestamp(value).to_pydatetime()
            elif isinstance(column.type, sa.Date):
                value = dt.date.fromisoformat(value)
            elif isinstance(column.type, sa.Integer):
                value = int(value)
            record[column.name] = value
        records.append(record)
    return records


def load_raw(engine: sa.Engine, table_name: str, frame: pd.DataFrame, batch_id: str, as_of=AS_OF) -> None:
    """What the extraction does: replace (full) or upsert (others) raw rows, and record the raw batch."""
    raw = RAW_TABLES[table_name]
    source = SOURCE_TABLES_BY_NAME[table_name]
    rows = _python_values(frame, table_name)
    now = dt.datetime.now(dt.timezone.utc)
    with engine.begin() as conn:
        if source.mode == "full":
            conn.execute(sa.delete(raw))
        else:
            for row in rows:
                conn.execute(sa.delete(raw).where(*(raw.c[k] == row[k] for k in source.key)))
        if rows:
            conn.execute(sa.insert(raw), [dict(r, _batch_id=batch_id, _extracted_at=now) for r in rows])
        record_batch(conn, batch_id=batch_id, asset_key=f"raw_{table_name}", as_of=as_of, rows_in=len(rows),
                     rows_loaded=len(rows), status="SUCCESS", mode=source.mode)


def load_all_raw(engine: sa.Engine, frames: dict[str, pd.DataFrame], suffix: str = "1") -> None:
    for name, frame in frames.items():
        load_raw(engine, name, frame, f"raw-{name}-{suffix}")


@dg.asset(deps=[dg.AssetKey("stg_ows_project"), dg.AssetKey("stg_ows_feed")], group_name="ows_dimensions")
def dim_feed_standin() -> None:
    """Stands in for a dimension built on staging."""


@dg.asset(deps=[dg.AssetKey("stg_ows_workflow_run")], group_name="ows_facts")
def fact_standin() -> None:
    """Stands in for the weekly fact built on staged runs."""


@pytest.fixture
def warehouse(sqlite_url, ows_home):
    engine = sa.create_engine(sqlite_url)
    create_warehouse_tables(engine)
    yield WarehouseResource(url=sqlite_url), engine
    engine.dispose()


def _materialize(resource, assets, data_docs=False, raise_on_error=False, run_config=None):
    config = run_config or {
        "ops": {a.key.to_python_identifier(): {"config": {"data_docs": data_docs}}
                for a in assets if a.key.path[0].startswith("stg_")}
    }
    return dg.materialize(assets, resources={"warehouse": resource}, run_config=config, raise_on_error=raise_on_error)


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def _checks(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_full_flow_reports_every_check_and_builds_data_docs(warehouse, ows_home):
    resource, engine = warehouse
    load_all_raw(engine, valid_frames())
    result = _materialize(resource, [*STAGING_ASSETS, dim_feed_standin, fact_standin], data_docs=True,
                          raise_on_error=True)
    assert result.success
    assert _materialized(result) >= {a.key.to_user_string() for a in STAGING_ASSETS} | {
        "dim_feed_standin", "fact_standin"}
    checks = _checks(result)
    assert all(e.passed for e in checks.values()), [k for k, e in checks.items() if not e.passed]
    assert ("stg_ows_workflow_run", "one_open_run_per_key") in checks
    assert ("stg_ows_workflow_run", "rejection_rate") in checks

    index = data_docs_index_path()
    assert index == ows_home / "data_docs" / "index.html" and index.exists()
    link = checks[("stg_ows_workflow_run", "allowed_status")].metadata["data_docs"].value
    page = Path(link.removeprefix("file://"))
    assert page.exists() and page.is_relative_to(ows_home / "data_docs")
    assert "stg_ows_workflow_run" in page.read_text()
    html = index.read_text()
    for table in SOURCE_TABLES_BY_NAME:  # every table's validation stays listed on the index
        assert f"stg_{table}" in html
    meta = checks[("stg_ows_workflow_run", "allowed_status")].metadata
    assert meta["gx_unexpected_count"].value == 0 and meta["unexpected_count"].value == 0

    with engine.connect() as conn:
        staged = conn.execute(sa.text(
            "SELECT asset_key, rows_in, rows_loaded, rows_rejected, as_of FROM etl_batches "
            "WHERE asset_key LIKE 'stg_%'")).all()
    assert len(staged) == 8 and all(r.rows_in == r.rows_loaded and r.rows_rejected == 0 for r in staged)
    assert all(r.as_of is not None for r in staged)


def test_failing_rule_reports_counts_samples_and_data_docs(warehouse, ows_home):
    resource, engine = warehouse
    frames = valid_frames()
    load_all_raw(engine, frames)
    runs = frames["ows_workflow_run"].copy()
    runs.loc[3, "status"] = "DONE"
    load_raw(engine, "ows_workflow_run", runs, "raw-runs-2")
    parents = [a for a in STAGING_ASSETS if a.key.path[0] in ("stg_ows_project", "stg_ows_workflow")]
    _materialize(resource, parents, raise_on_error=True)
    run_asset = next(a for a in STAGING_ASSETS if a.key.path[0] == "stg_ows_workflow_run")
    result = _materialize(resource, [run_asset], data_docs=True, raise_on_error=True)
    check = _checks(result)[("stg_ows_workflow_run", "allowed_status")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["unexpected_count"].value == 1
    assert check.metadata["unexpected_percent"].value == pytest.approx(5.0)
    assert check.metadata["sample_failing_values"].value == ["status=DONE"]
    assert check.metadata["gx_unexpected_count"].value == 1  # GX agrees with the fast path
    assert Path(check.metadata["data_docs"].value.removeprefix("file://")).exists()
    assert _checks(result)[("stg_ows_workflow_run", "rejection_rate")].passed  # 1 of 20 = 5%


def test_blocking_checks_stop_downstream_until_a_fixed_batch_flows(warehouse):
    """An empty full extract, then too many rejections: the dimension is not built in that run."""
    resource, engine = warehouse
    frames = valid_frames()
    load_all_raw(engine, frames)
    project, feed = (next(a for a in STAGING_ASSETS if a.key.path[0] == f"stg_ows_{t}") for t in ("project", "feed"))
    assets = [project, feed, dim_feed_standin]
    assert _materialize(resource, assets).success

    load_raw(engine, "ows_project", frames["ows_project"].iloc[0:0], "raw-empty")
    result = _materialize(resource, assets)
    assert not result.success
    assert _materialized(result) == {"stg_ows_project"}
    assert not _checks(result)[("stg_ows_project", "not_empty")].passed
    with engine.connect() as conn:  # the empty extract did not wipe the last validated one
        assert conn.execute(sa.text("SELECT count(*) FROM stg_ows_project")).scalar() == 2

    load_raw(engine, "ows_project", frames["ows_project"], "raw-fixed")
    result = _materialize(resource, assets)
    assert result.success and _materialized(result) == {"stg_ows_project", "stg_ows_feed", "dim_feed_standin"}

    bad = frames["ows_project"].copy()
    bad["active_flag"] = ["Y", "?"]  # 50% rejected > 5%
    load_raw(engine, "ows_project", bad, "raw-bad")
    result = _materialize(resource, assets)
    assert _materialized(result) == {"stg_ows_project"}
    assert not _checks(result)[("stg_ows_project", "rejection_rate")].passed
    assert _checks(result)[("stg_ows_project", "key_integrity")].passed

    # The threshold is configurable per run (feed 12 of the rejected project 2 is rejected too).
    loose = {"data_docs": False, "max_rejection_rate": 0.6}
    config = {"ops": {"stg_ows_project": {"config": loose}, "stg_ows_feed": {"config": loose}}}
    result = _materialize(resource, assets, run_config=config)
    assert result.success and "dim_feed_standin" in _materialized(result)

    dup = pd.concat([frames["ows_project"], frames["ows_project"].iloc[[0]].assign(project_code="OTHER")])
    with engine.begin() as conn:  # a duplicated key in the extract (the raw table's unique index aside)
        conn.execute(sa.text("DROP INDEX ux_raw_ows_project_key"))
    load_raw(engine, "ows_project", dup, "raw-dup")
    result = _materialize(resource, assets, run_config=config)
    assert "dim_feed_standin" not in _materialized(result)
    assert not _checks(result)[("stg_ows_project", "key_integrity")].passed


def test_incremental_staging_processes_only_new_raw_batches(warehouse):
    resource, engine = warehouse
    frames = valid_frames()
    load_all_raw(engine, frames)
    _materialize(resource, list(STAGING_ASSETS), raise_on_error=True)
    run_asset = next(a for a in STAGING_ASSETS if a.key.path[0] == "stg_ows_workflow_run")

    result = _materialize(resource, [run_asset], raise_on_error=True)  # nothing new in raw
    assert result.asset_materializations_for_node("stg_ows_workflow_run")[0].metadata["rows_in"].value == 0
    assert _checks(result)[("stg_ows_workflow_run", "not_empty")].passed  # the staged table still has rows

    later = dt.datetime(2026, 11, 21, 6, tzinfo=dt.timezone.utc)
    update = frames["ows_workflow_run"].iloc[[18]].copy()
    update[["end_date", "status", "result_code"]] = ["2026-11-20T10:00:00Z", "COMPLETE", "MATCHED"]
    load_raw(engine, "ows_workflow_run", update, "raw-runs-2", as_of=later)
    result = _materialize(resource, [run_asset], raise_on_error=True)
    meta = result.asset_materializations_for_node("stg_ows_workflow_run")[0].metadata
    assert (meta["rows_in"].value, meta["rows_loaded"].value, meta["staged_rows"].value) == (1, 1, 20)
    with engine.connect() as conn:
        batch = conn.execute(sa.text(
            "SELECT as_of, message FROM etl_batches WHERE asset_key = 'stg_ows_workflow_run' "
            "ORDER BY finished_at DESC LIMIT 1")).one()
        status = conn.execute(sa.text("SELECT status FROM stg_ows_workflow_run WHERE run_id = 19")).scalar()
    assert pd.Timestamp(batch.as_of).tz_localize(None) == pd.Timestamp(later).tz_localize(None)
    assert "raw-runs-2" in batch.message and status == "COMPLETE"


def test_importing_definitions_does_not_import_great_expectations():
    code = (
        "import sys\n"
        "import ows_pipeline.defs.staging.assets\n"
        "import ows_pipeline.definitions\n"
        "heavy = [m for m in ('great_expectations', 'pandas') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "great_expectations" not in out.stdout

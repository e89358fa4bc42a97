"""`ows_weekly_job` end to end on the demo source: extract, staging, dimensions, the weekly
snapshot and the report for a week, live on the Sunday and rebuilt weeks later."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from ows_pipeline.warehouse.schema.facts import fct_workflow_run_weekly as fct
from ows_pipeline.resources import OwsSourceResource, SmtpResource, WarehouseResource, make_engine
from ows_pipeline.demo.source import advance_demo, generate_demo

UTC = dt.timezone.utc
WEEK = "2025-06-01"
WEEK_END = dt.datetime(2025, 6, 7, 23, 0, tzinfo=UTC)  # Sunday 2025-06-08 00:00 BST
SIZES = dict(projects=2, feeds_per_project=3, workflows_per_project=2, runs_per_day=150, weeks=1)


def _location(source_url: str, warehouse_url: str) -> dg.Definitions:
    """The code location's domains, bound to these databases (as `ows_pipeline.definitions` does from the environment)."""
    from ows_pipeline.definitions import build_defs

    resources = {
        "ows_source": OwsSourceResource(url=source_url, safety_delay_seconds=0),
        "warehouse": WarehouseResource(url=warehouse_url),
        "smtp": SmtpResource(),
    }
    return build_defs(resources)


def _week_rows(engine: sa.Engine) -> list[dict]:
    columns = [c for c in fct.columns if c.name != "batch_id"]
    with engine.connect() as conn:
        query = sa.select(*columns).where(fct.c.week_start == dt.date.fromisoformat(WEEK)).order_by(fct.c.run_id)
        return [dict(r._mapping) for r in conn.execute(query)]


@pytest.mark.slow
def test_weekly_job_live_then_rebuilt_gives_the_same_week_sqlite(tmp_path, ows_home):
    _live_then_rebuilt(tmp_path, f"sqlite:///{tmp_path / 'warehouse.db'}")


@pytest.mark.slow
@pytest.mark.postgres
def test_weekly_job_live_then_rebuilt_gives_the_same_week_postgres(tmp_path, ows_home, pg_url):
    _live_then_rebuilt(tmp_path, pg_url)


def _live_then_rebuilt(tmp_path, warehouse_url: str) -> None:
    source_url = f"sqlite:///{tmp_path / 'ows.db'}"
    generate_demo(source_url, as_of=WEEK_END + dt.timedelta(hours=2), seed=11, **SIZES)
    defs = _location(source_url, warehouse_url)
    job = defs.resolve_job_def("ows_weekly_job")
    warehouse = make_engine(warehouse_url, role="warehouse")

    with dg.DagsterInstance.ephemeral() as instance:
        live_run = job.execute_in_process(partition_key=WEEK, instance=instance)
        assert live_run.success
        done = {e.asset_key.to_user_string() for e in live_run.get_asset_materialization_events()}
        assert {"raw_ows_workflow_run", "stg_ows_workflow_run", "dim_workflow", "fct_workflow_run_weekly",
                "ows_weekly_report"} <= done
        live = _week_rows(warehouse)
        assert live and {r["status"] for r in live} >= {"COMPLETE"}
        assert all(r["workflow_sk"] is not None and r["project_code"] for r in live)  # dimensions joined

        advance_demo(source_url, as_of=WEEK_END + dt.timedelta(days=15))
        later_week = "2025-06-15"
        assert job.execute_in_process(partition_key=later_week, instance=instance).success
        rebuilt_run = job.execute_in_process(partition_key=WEEK, instance=instance)
        assert rebuilt_run.success

    assert _week_rows(warehouse) == live

"""End to end through the GraphQL API (DagsterGraphQLClient) against a running webserver + daemon."""

from __future__ import annotations

import socket
import time

import pytest
import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES
from ows_pipeline_tests.e2e.conftest import DEMO_WEEK, require
from ows_pipeline_tests.e2e.queries import ASSET_NODES, SENSORS, all_run_events, run_record
from ows_pipeline_tests.e2e.stack import ASSET_JOB, LOCATION, REPOSITORY

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RAW_KEYS = [f"raw_{t.name}" for t in SOURCE_TABLES]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def submit_extract(stack, **kwargs) -> str:
    return stack.client().submit_job_execution(
        ASSET_JOB, repository_location_name=LOCATION, repository_name=REPOSITORY, asset_selection=RAW_KEYS, **kwargs
    )


def test_sensors_are_on_by_default(dagster_stack):
    data = dagster_stack.graphql(SENSORS, {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}})
    states = {s["name"]: s["sensorState"]["status"] for s in data["sensorsOrError"]["results"]}
    assert states["ows_run_failure_sensor"] == "RUNNING"
    assert states["ows_upload_sensor"] == "RUNNING"


def test_extraction_run_loads_the_warehouse(dagster_stack):
    run_id = submit_extract(dagster_stack)
    assert dagster_stack.wait_for_run(run_id) == "SUCCESS", dagster_stack.logs()

    events = all_run_events(dagster_stack, run_id)
    materialized = {
        "/".join(e["assetKey"]["path"]): {m["label"]: m for m in e["metadataEntries"]}
        for e in events
        if e["__typename"] == "MaterializationEvent"
    }
    assert set(materialized) == set(RAW_KEYS)
    engine = dagster_stack.warehouse_engine()
    try:
        with engine.connect() as conn:
            for key in RAW_KEYS:
                rows = conn.execute(sa.text(f"select count(*) from {key}")).scalar_one()
                assert rows > 0, key
                loaded = conn.execute(
                    sa.text("select rows_loaded from etl_batches where run_id = :r and asset_key = :k"),
                    {"r": run_id, "k": key},
                ).scalar_one()
                assert materialized[key]["rows_loaded"]["intValue"] == loaded, key
            batches = conn.execute(
                sa.text("select count(*) from etl_batches where run_id = :r and status = 'SUCCESS'"), {"r": run_id}
            ).scalar_one()
            assert batches == len(RAW_KEYS)
    finally:
        engine.dispose()


def test_reload_code_location(dagster_stack):
    from dagster_graphql import ReloadRepositoryLocationStatus

    info = dagster_stack.client().reload_repository_location(LOCATION)
    assert info.status == ReloadRepositoryLocationStatus.SUCCESS, info.message
    assert dagster_stack.location_status() == "LOADED"


def test_two_runs_for_the_same_week_do_not_overlap(dagster_stack):
    """The queued run coordinator holds the second run of a week until the first ends."""
    tags = {"dagster/partition": "2026-11-01"}  # what a run for that week carries
    first = submit_extract(dagster_stack, tags=tags)
    second = submit_extract(dagster_stack, tags=tags)
    seen_waiting = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        a, b = run_record(dagster_stack, first), run_record(dagster_stack, second)
        if a["status"] in ("STARTING", "STARTED") and b["status"] == "QUEUED":
            seen_waiting = True
        if a["status"] in ("SUCCESS", "FAILURE") and b["status"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.5)
    a, b = run_record(dagster_stack, first), run_record(dagster_stack, second)
    assert (a["status"], b["status"]) == ("SUCCESS", "SUCCESS"), dagster_stack.logs()
    earlier, later = sorted((a, b), key=lambda r: r["startTime"])
    assert later["startTime"] >= earlier["endTime"], (earlier, later)
    assert seen_waiting


def test_failing_run_is_reported_with_its_error_and_notified(dagster_stack):
    """A source on a closed port: the extraction is retried with backoff, then the run fails with the
    connection error, and the failure sensor emails the run, the step and the error."""
    closed = _closed_port()
    run_config = {
        "resources": {"ows_source": {"config": {"url": f"postgresql+psycopg2://postgres@127.0.0.1:{closed}/ows"}}}
    }
    run_id = submit_extract(dagster_stack, run_config=run_config)
    assert dagster_stack.wait_for_run(run_id, timeout=400) == "FAILURE"

    events = all_run_events(dagster_stack, run_id)
    kinds = [e["__typename"] for e in events]
    messages = "\n".join(str(e.get("message")) for e in events)
    assert kinds.count("ExecutionStepUpForRetryEvent") >= 1, messages
    failures = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    assert failures, kinds
    text = " ".join(
        [failures[-1]["error"]["message"], *(c["message"] for c in failures[-1]["error"]["causes"])]
    ).lower()
    assert "connection refused" in text or "could not connect" in text, text
    assert failures[-1]["stepKey"] == "extract_ows_tables"
    assert "RunFailureEvent" in kinds

    deadline = time.monotonic() + 150
    notices = []
    while time.monotonic() < deadline and not notices:
        notices = [m for m in dagster_stack.inbox.messages if run_id.encode() in m.content]
        time.sleep(2)
    assert notices, "no failure email arrived\n" + dagster_stack.logs()
    body = notices[0].content.decode(errors="replace")
    assert "extract_ows_tables" in body


WEEKLY_JOB = "ows_weekly_job"
WEEKLY_TABLES = ("stg_ows_workflow_run", "dim_project", "dim_feed", "dim_match_process", "dim_workflow")


def test_weekly_job_for_one_week(dagster_stack):
    """The whole pipeline for one week through the API: tables, checks, the workbook and its email."""
    client = dagster_stack.client()
    jobs = dagster_stack.graphql(
        """{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"""
    )["repositoriesOrError"]["nodes"]
    require(any(j["name"] == WEEKLY_JOB for n in jobs for j in n["jobs"]), f"{WEEKLY_JOB} is not in the code location")
    run_id = client.submit_job_execution(
        WEEKLY_JOB, repository_location_name=LOCATION, repository_name=REPOSITORY,
        tags={"dagster/partition": DEMO_WEEK},
    )
    assert dagster_stack.wait_for_run(run_id, timeout=900) == "SUCCESS", dagster_stack.logs()

    engine = dagster_stack.warehouse_engine()
    try:
        with engine.connect() as conn:
            for table in WEEKLY_TABLES:
                assert conn.execute(sa.text(f"select count(*) from {table}")).scalar_one() > 0, table
            fact_rows = conn.execute(
                sa.text("select count(*) from fct_workflow_run_weekly where week_start = :w"), {"w": DEMO_WEEK}
            ).scalar_one()
    finally:
        engine.dispose()
    assert fact_rows > 0

    events = all_run_events(dagster_stack, run_id)
    evaluations = [e["evaluation"] for e in events if e["__typename"] == "AssetCheckEvaluationEvent"]
    declared = {
        ("/".join(n["assetKey"]["path"]), c["name"])
        for n in dagster_stack.graphql(ASSET_NODES)["assetNodes"]
        for c in (n["assetChecksOrError"] or {}).get("checks", [])
        if n["groupName"] in ("ows_staging", "ows_dimensions", "ows_facts", "ows_reports")
    }
    evaluated = {("/".join(e["assetKey"]["path"]), e["checkName"]) for e in evaluations}
    assert declared and declared <= evaluated, sorted(declared - evaluated)
    failed_errors = [e for e in evaluations if not e["success"] and e["severity"] == "ERROR"]
    assert not failed_errors, failed_errors

    materialized = {
        "/".join(e["assetKey"]["path"]): {m["label"]: m for m in e["metadataEntries"]}
        for e in events
        if e["__typename"] == "MaterializationEvent"
    }
    report = dagster_stack.ows_home / "reports" / f"ows_weekly_{DEMO_WEEK}.xlsx"
    assert report.is_file() and report.stat().st_size > 0
    assert materialized["ows_weekly_report"]["path"]["path"] == str(report)
    assert materialized["fct_workflow_run_weekly"]["dagster/row_count"]["intValue"] == fact_rows
    for key in ("stg_ows_workflow_run", "dim_project", "fct_workflow_run_weekly"):
        assert "dagster/column_lineage" in materialized[key], key
        assert "dagster/column_schema" in materialized[key], key
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        DEMO_WEEK.encode() in m.content and b"weekly report" in m.content for m in dagster_stack.inbox.messages
    ):
        time.sleep(1)
    assert any(DEMO_WEEK.encode() in m.content for m in dagster_stack.inbox.messages), "no report email"

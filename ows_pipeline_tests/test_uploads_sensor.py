"""`ows_upload_sensor` and the upload jobs under Dagster: an ephemeral instance, real runs."""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import pytest
import sqlalchemy as sa

from ows_pipeline.resources import WarehouseResource
from ows_pipeline.defs.uploads.assets import KIND_JOBS, defs as upload_defs, ows_upload_sensor
from ows_pipeline.warehouse.schema.uploads import ref_feed_sla, upload_registry
from ows_pipeline_tests.upload_corpus import GOOD_CSV, HEADER


@pytest.fixture
def landing_env(ows_home, monkeypatch, sqlite_url):
    landing = ows_home / "landing"
    monkeypatch.setenv("OWS_LANDING_DIR", str(landing))
    monkeypatch.setenv("OWS_UPLOAD_SETTLE_SECONDS", "0")
    return landing, WarehouseResource(url=sqlite_url)


def _evaluate(instance, warehouse, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"warehouse": warehouse})
    return ows_upload_sensor(context)


def test_sensor_is_on_by_default_and_targets_one_job_per_kind():
    assert ows_upload_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {job.name for job in ows_upload_sensor.jobs} == set(KIND_JOBS.values())
    repo = dg.Definitions.merge(upload_defs, dg.Definitions(resources={"warehouse": WarehouseResource()}))
    repo = repo.get_repository_def()
    assert {a.to_user_string() for a in repo.asset_graph.get_all_asset_keys()} >= {
        "ref_feed_sla", "ref_project_metadata", "ows_export_upload", "upload_registry"
    }


def test_sensor_requests_one_run_per_file_and_the_run_loads_it(landing_env):
    landing, warehouse = landing_env
    with dg.DagsterInstance.ephemeral() as instance:
        empty = _evaluate(instance, warehouse)
        assert empty.run_requests == [] and empty.skip_reason
        assert (landing / "feed_sla").is_dir() and (landing / "processed").is_dir()
        (landing / "feed_sla" / "sla.csv").write_text(GOOD_CSV)
        (landing / "feed_sla" / "broken.csv").write_text(HEADER + "X,07:00,soon,Ops,\n")
        seen = _evaluate(instance, warehouse, empty.cursor)  # first sight: waiting to settle
        assert seen.run_requests == [] and "waiting" in seen.skip_reason.skip_message
        result = _evaluate(instance, warehouse, seen.cursor)
        assert len(result.run_requests) == 2
        cursor = json.loads(result.cursor)
        assert set(cursor["requested"]) == {"feed_sla/sla.csv", "feed_sla/broken.csv"}
        again = _evaluate(instance, warehouse, result.cursor)
        assert again.run_requests == []
        bound = dg.Definitions.merge(upload_defs, dg.Definitions(resources={"warehouse": warehouse}))
        job = bound.resolve_job_def(KIND_JOBS["feed_sla"])
        outcomes = {}
        for request in result.run_requests:
            assert request.run_key.startswith("upload-") and len(request.run_key) == len("upload-") + 64
            run = job.execute_in_process(
                run_config=request.run_config, instance=instance, tags=request.tags, raise_on_error=False,
            )
            outcomes[request.tags["ows/upload_file"]] = run
        assert outcomes["sla.csv"].success
        materialization = outcomes["sla.csv"].asset_materializations_for_node("ref_feed_sla")[0]
        assert materialization.metadata["keys_new"].value == 2
        assert materialization.metadata["keys_removed"].value == 0
        failed = outcomes["broken.csv"]
        assert not failed.success
        failure = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"][0]
        assert "rejected" in failure.step_failure_data.error.message
        assert "sla_minutes" in failure.step_failure_data.user_failure_data.description
    engine = warehouse.get_engine()
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(upload_registry.c.file_name, upload_registry.c.status)).all())
        loaded = conn.execute(sa.select(ref_feed_sla.c.feed_code)).scalars().all()
    assert statuses == {"sla.csv": "LOADED", "broken.csv": "REJECTED"}
    assert sorted(loaded) == ["FEED_A", "FEED_B"]
    assert os.path.exists(landing / "rejected" / "feed_sla" / "broken.csv.errors.json")


def test_sensor_survives_an_unusable_file_and_keeps_going(landing_env):
    landing, warehouse = landing_env
    with dg.DagsterInstance.ephemeral() as instance:
        first = _evaluate(instance, warehouse)
        fifo = landing / "feed_sla" / "pipe.csv"
        os.mkfifo(fifo)
        (landing / "feed_sla" / "ok.csv").write_text(GOOD_CSV)
        os.utime(fifo, (time.time() - 3600, time.time() - 3600))
        seen = _evaluate(instance, warehouse, first.cursor)
        result = _evaluate(instance, warehouse, seen.cursor)
    requests = {r.tags["ows/upload_file"]: r for r in result.run_requests}
    assert set(requests) == {"ok.csv", "pipe.csv"}
    assert requests["pipe.csv"].run_key.startswith("upload-refused-")  # the run that reports the refusal
    assert os.path.lexists(landing / "rejected" / "feed_sla" / "pipe.csv")


def test_export_job_reports_the_tables_it_changed(landing_env):
    landing, warehouse = landing_env
    with dg.DagsterInstance.ephemeral() as instance:
        first = _evaluate(instance, warehouse)
        (landing / "ows_export" / "ows_project_2026-11-01.csv").write_text(
            "project_id,project_code,project_name,business_unit,owner,active_flag,created_at,updated_at\n"
            "1,P1,One,Treasury,ann,Y,2025-01-01 00:00:00,2026-10-01 00:00:00\n"
        )
        seen = _evaluate(instance, warehouse, first.cursor)
        (request,) = _evaluate(instance, warehouse, seen.cursor).run_requests
        assert request.job_name == KIND_JOBS["ows_export"]
        bound = dg.Definitions.merge(upload_defs, dg.Definitions(resources={"warehouse": warehouse}))
        run = bound.resolve_job_def(request.job_name).execute_in_process(
            run_config=request.run_config, instance=instance
        )
        assert run.success
        materializations = {
            m.asset_key.to_user_string(): m for m in run.asset_materializations_for_node("ows_export_upload")
        }
        assert set(materializations) == {"ows_export_upload", "stg_ows_project", "dim_project"}
        metadata = materializations["ows_export_upload"].metadata
        assert metadata["keys_new"].value == 1 and metadata["table"].value == "ows_project"

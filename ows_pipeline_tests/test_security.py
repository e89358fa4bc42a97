"""Security: credentials stay out of events, run config and metadata; configured SQL identifiers are
validated; the landing folder cannot be used to write or read elsewhere."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._serdes import serialize_value

from ows_pipeline.extract.extraction import ExtractOptions
from ows_pipeline.resources import SourceConfigError, WarehouseResource
from ows_pipeline.uploads.landing import LandingFolder, LandingFolderError, read_upload

WAREHOUSE_SECRET = f"Wh-{uuid.uuid4().hex[:12]}"
SMTP_SECRET = f"Smtp-{uuid.uuid4().hex[:12]}"


def everything_a_run_left(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run's stored record, tags, config and every event (messages, metadata, errors), as text."""
    run = instance.get_run_by_id(run_id)
    parts = [serialize_value(run), repr(run.run_config), repr(run.tags)]
    for record in instance.all_logs(run_id):
        parts.append(serialize_value(record))
    return "\n".join(parts)


@pytest.mark.postgres
def test_passwords_from_the_environment_never_reach_the_event_log(pg_url, ows_home, monkeypatch):
    """A real extraction into a PostgreSQL warehouse whose password comes from OWS_WAREHOUSE_PASSWORD
    (trust authentication accepts it), with an SMTP password set: neither appears anywhere in the run."""
    from ows_pipeline.definitions import defs
    from ows_pipeline.resources import resources_from_env
    from ows_pipeline.demo.source import generate_demo

    source = f"sqlite:///{ows_home / 'ows_source.db'}"
    generate_demo(source, projects=1, feeds_per_project=3, workflows_per_project=2, runs_per_day=10, weeks=1,
                  as_of="2026-11-15T02:00:00+00:00")
    monkeypatch.setenv("OWS_WAREHOUSE_URL", pg_url)
    monkeypatch.setenv("OWS_WAREHOUSE_PASSWORD", WAREHOUSE_SECRET)
    monkeypatch.setenv("OWS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("OWS_SMTP_USER", "notifier")
    monkeypatch.setenv("OWS_SMTP_PASSWORD", SMTP_SECRET)

    raw = [
        a for a in defs.assets
        if isinstance(a, dg.AssetsDefinition) and any(k.path[-1].startswith("raw_ows_") for k in a.keys)
    ]
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(raw, resources=resources_from_env(), instance=instance)
        assert result.success
        text = everything_a_run_left(instance, result.run_id)
    assert "raw_ows_workflow_run" in text  # the scan sees the materializations
    assert WAREHOUSE_SECRET not in text
    assert SMTP_SECRET not in text
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from raw_ows_workflow_run")).scalar_one() > 0
        for column in ("source", "message"):
            values = conn.execute(sa.text(f"select {column} from etl_batches")).scalars().all()
            assert not any(WAREHOUSE_SECRET in (v or "") for v in values)
    engine.dispose()


def test_display_urls_hide_passwords():
    warehouse = WarehouseResource(url=f"postgresql+psycopg2://ows:{WAREHOUSE_SECRET}@db:5432/wh")
    assert WAREHOUSE_SECRET not in warehouse.display_url()
    assert "ows:***@db" in warehouse.display_url()


@pytest.mark.parametrize(
    "schema",
    ['OWS"; DROP TABLE ows_project; --', "ows.app", "ows app", "1OWS", "ows--", "ÖWS", "", "A" * 129, "ows/*x*/"],
)
def test_source_schema_must_be_a_plain_identifier(schema):
    with pytest.raises(SourceConfigError, match="OWS_SOURCE_SCHEMA"):
        ExtractOptions(schema=schema)


@pytest.mark.parametrize("schema", ["OWS", "ows_app", "OWS$OWNER", "OWS#2", "A" * 128])
def test_plain_source_schemas_are_accepted(schema):
    assert ExtractOptions(schema=schema).schema == schema


def test_landing_folder_refuses_paths_that_leave_it(tmp_path: Path):
    landing = LandingFolder(tmp_path / "landing")
    landing.ensure()
    outside = tmp_path / "outside.txt"
    for relative in ("../outside.txt", "feed_sla/../../outside.txt", str(outside), "."):
        with pytest.raises(LandingFolderError, match="outside the landing folder"):
            landing.absolute(relative)
    target = landing.archive_target("rejected", "feed_sla", "../../outside.txt")
    assert landing.root in target.parents
    with pytest.raises((LandingFolderError, ValueError)):
        landing.move(landing.root / "feed_sla" / "a.csv", outside)
    assert not outside.exists()


def test_landing_folder_refuses_symlinked_folders_and_files(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = elsewhere / "secret.csv"
    secret.write_text("feed_code\nX\n")
    root = tmp_path / "landing"
    root.mkdir()
    os.symlink(elsewhere, root / "feed_sla")
    with pytest.raises(LandingFolderError, match="not a symlink"):
        LandingFolder(root).ensure()

    safe_root = tmp_path / "landing2"
    landing = LandingFolder(safe_root)
    landing.ensure()
    link = safe_root / "feed_sla" / "link.csv"
    os.symlink(secret, link)
    with pytest.raises(OSError):
        read_upload(link, max_bytes=1_000_000)
    candidates = landing.scan()
    assert [c.is_symlink for c in candidates if c.name == "link.csv"] == [True]

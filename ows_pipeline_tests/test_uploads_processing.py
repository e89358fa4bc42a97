"""Processing uploads end to end without Dagster: key counts, duplicates, retries, all or nothing."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ows_pipeline.resources import make_engine
from ows_pipeline.uploads import registry
from ows_pipeline.uploads.landing import LandingFolder
from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.processing import process_upload
from ows_pipeline.uploads.sensing import sensor_tick
from ows_pipeline.warehouse.schema.uploads import ref_feed_sla, ref_project_metadata, upload_registry
from ows_pipeline.warehouse.schema import create_warehouse_tables, data_errors, etl_batches
from ows_pipeline_tests.upload_corpus import HEADER, workbook_bytes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "uploads"
LIMITS = UploadLimits(settle_seconds=0)


class Landing:
    """A landing folder and a warehouse, with helpers to drop files and run the sensor and the jobs."""

    def __init__(self, root: Path, url: str):
        self.engine = make_engine(url, role="warehouse")
        create_warehouse_tables(self.engine)
        self.folder = LandingFolder(root / "landing")
        self.folder.ensure()
        self.cursor = None

    def drop(self, kind: str, name: str, content: str | bytes) -> Path:
        path = self.folder.root / kind / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def tick(self, now=None):
        """Two observations (a file is settled when both agree), returning the second."""
        now = now or time.time() + 60
        for moment in (now, now + 1):
            tick = sensor_tick(self.engine, self.folder, self.cursor, LIMITS, now=moment)
            self.cursor = tick.cursor
        return tick

    def run_all(self):
        return [process_upload(self.engine, self.folder, r.upload_id, limits=LIMITS) for r in self.tick().requests]

    def rows(self, table):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(table)).all()


@pytest.fixture
def landing(tmp_path, sqlite_url):
    return Landing(tmp_path, sqlite_url)


def _sla(*rows: str) -> str:
    return HEADER + "".join(r + "\n" for r in rows)


def test_key_counts_new_changed_unchanged_removed(landing):
    landing.drop("feed_sla", "sla_v1.csv", _sla("A,07:00,30,Ops,", "B,08:00,30,Ops,", "C,09:00,30,Ops,"))
    (first,) = landing.run_all()
    assert (first.counts.new, first.counts.changed, first.counts.unchanged, first.counts.removed) == (3, 0, 0, 0)
    landing.drop("feed_sla", "sla_v2.csv", _sla("A,07:00,30,Ops,", "B,08:15,30,Ops,", "D,10:00,5,Cards,x@y"))
    (second,) = landing.run_all()
    assert second.counts.as_dict() == {"new": 1, "changed": 1, "unchanged": 1, "removed": 1}
    rows = {r.feed_code: r for r in landing.rows(ref_feed_sla)}
    assert set(rows) == {"A", "B", "D"}
    assert rows["B"].expected_arrival_time == "08:15" and rows["B"]._source_file == "sla_v2.csv"
    assert rows["A"]._source_file == "sla_v1.csv"  # unchanged rows keep the upload that last changed them
    (entry,) = [r for r in landing.rows(upload_registry) if r.file_name == "sla_v2.csv"]
    assert (entry.keys_new, entry.keys_changed, entry.keys_unchanged, entry.keys_removed) == (1, 1, 1, 1)
    assert entry.status == "LOADED" and entry.current_path == "processed/feed_sla/sla_v2.csv"
    assert (landing.folder.root / entry.current_path).exists()


def test_same_file_twice_and_same_content_under_another_name(landing):
    content = _sla("A,07:00,30,Ops,")
    landing.drop("feed_sla", "sla.csv", content)
    (loaded,) = landing.run_all()
    assert loaded.status == "LOADED"
    landing.drop("feed_sla", "sla.csv", content)  # the same file again
    landing.drop("project_metadata", "x.csv", "project_code\nP1\n")
    tick = landing.tick()
    assert [r.file_name for r in tick.requests] == ["x.csv"]
    assert tick.duplicates == ["feed_sla/sla.csv"]
    landing.drop("feed_sla", "renamed_copy.csv", content)  # same bytes, another name
    tick = landing.tick()
    assert tick.requests == [] and tick.duplicates == ["feed_sla/renamed_copy.csv"]
    entries = landing.rows(upload_registry)
    duplicates = [e for e in entries if e.status == "DUPLICATE"]
    assert [d.duplicate_of for d in duplicates] == [loaded.upload_id, loaded.upload_id]
    assert {d.current_path for d in duplicates} == {"processed/feed_sla/sla.2.csv", "processed/feed_sla/renamed_copy.csv"}
    with landing.engine.connect() as conn:
        batches = conn.execute(
            sa.select(sa.func.count()).select_from(etl_batches).where(etl_batches.c.asset_key == "ref_feed_sla")
        ).scalar_one()
    assert batches == 1  # loaded once


def test_good_file_after_a_bad_one(landing):
    landing.drop("feed_sla", "bad.csv", _sla("A,07:00,thirty,Ops,"))
    (bad,) = landing.run_all()
    assert bad.status == "REJECTED" and landing.rows(ref_feed_sla) == []
    landing.drop("feed_sla", "good.csv", _sla("A,07:00,30,Ops,"))
    (good,) = landing.run_all()
    assert good.status == "LOADED"
    assert [r.feed_code for r in landing.rows(ref_feed_sla)] == ["A"]


def test_a_bad_file_leaves_the_previous_content_untouched(landing):
    landing.drop("feed_sla", "v1.csv", _sla("A,07:00,30,Ops,", "B,08:00,30,Ops,"))
    landing.run_all()
    before = landing.rows(ref_feed_sla)
    # the first rows are fine, the last one is not: nothing of the file may load
    landing.drop("feed_sla", "v2.csv", _sla("A,09:00,30,Ops,", "C,08:00,30,Ops,", "D,08:00,-1,Ops,"))
    (outcome,) = landing.run_all()
    assert outcome.status == "REJECTED"
    assert landing.rows(ref_feed_sla) == before
    with landing.engine.connect() as conn:
        errors = conn.execute(sa.select(data_errors).where(data_errors.c.source_file == "v2.csv")).all()
    assert [(e.row_number, e.field, e.value, e.rule) for e in errors] == [(4, "sla_minutes", "-1", "out_of_range")]


def test_a_file_still_being_written_waits_until_stable(landing):
    path = landing.drop("feed_sla", "growing.csv", HEADER + "A,07:00,30")
    now = time.time()
    first = sensor_tick(landing.engine, landing.folder, None, UploadLimits(settle_seconds=300), now=now)
    assert first.requests == [] and first.waiting == ["feed_sla/growing.csv"]
    with open(path, "a") as handle:  # the writer goes on
        handle.write(",Ops,\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    second = sensor_tick(landing.engine, landing.folder, first.cursor, UploadLimits(settle_seconds=300), now=now + 30)
    assert second.requests == [] and second.waiting == ["feed_sla/growing.csv"]
    early = sensor_tick(landing.engine, landing.folder, second.cursor, UploadLimits(settle_seconds=300), now=now + 60)
    assert early.requests == [] and early.waiting == ["feed_sla/growing.csv"]  # unchanged, but not for 300 s yet
    third = sensor_tick(landing.engine, landing.folder, early.cursor, UploadLimits(settle_seconds=300), now=now + 330)
    assert [r.file_name for r in third.requests] == ["growing.csv"]
    assert landing.rows(upload_registry)[0].sha256 == registry.sha256_of_file(path)
    # the requested file is not registered again while its run has not moved it
    fourth = sensor_tick(landing.engine, landing.folder, third.cursor, UploadLimits(settle_seconds=300), now=now + 360)
    assert fourth.requests == [] and len(landing.rows(upload_registry)) == 1


def test_lost_cursor_asks_again_with_the_same_run_key(landing):
    landing.drop("feed_sla", "sla.csv", _sla("A,07:00,30,Ops,"))
    first = landing.tick()
    landing.cursor = None
    again = landing.tick()
    assert [r.run_key for r in again.requests] == [r.run_key for r in first.requests]
    assert len(landing.rows(upload_registry)) == 1


def test_processing_twice_is_a_no_op(landing):
    landing.drop("feed_sla", "sla.csv", _sla("A,07:00,30,Ops,"))
    (outcome,) = landing.run_all()
    again = process_upload(landing.engine, landing.folder, outcome.upload_id, limits=LIMITS)
    assert again.status == "SKIPPED"
    assert len(landing.rows(ref_feed_sla)) == 1


def test_file_changed_after_registration_is_rejected_not_half_loaded(landing):
    path = landing.drop("feed_sla", "sla.csv", _sla("A,07:00,30,Ops,"))
    (request,) = landing.tick().requests
    path.write_text(_sla("A,07:00,30,Ops,", "B,07:00,30,Ops,"))
    outcome = process_upload(landing.engine, landing.folder, request.upload_id, limits=LIMITS)
    assert outcome.status == "REJECTED" and outcome.problems[0].rule == "changed_after_arrival"
    assert landing.rows(ref_feed_sla) == []


def test_every_format_loads_the_same_rows(landing):
    rows = [["feed_code", "expected_arrival_time", "sla_minutes", "owner_team", "escalation_contact"],
            ["A", "07:00", 30, "Ops", None]]
    import datetime as dt
    import json

    xlsx_rows = [rows[0], ["A", dt.time(7, 0), 30, "Ops", None]]
    files = {
        "a.csv": "\ufeff" + _sla("A,07:00,30,Ops,"),  # with a UTF-8 byte order mark
        "b.xlsx": workbook_bytes(xlsx_rows),
        "c.json": json.dumps([dict(zip(rows[0], rows[1]))]),
        "d.yaml": "- feed_code: A\n  expected_arrival_time: '07:00'\n  sla_minutes: 30\n  owner_team: Ops\n",
    }
    seen = []
    for index, (name, content) in enumerate(files.items()):
        # change the owner so that each file is new content
        if isinstance(content, str):
            content = content.replace("Ops", f"Ops{index}")
        else:
            content = workbook_bytes([rows[0], ["A", dt.time(7, 0), 30, f"Ops{index}", None]])
        landing.drop("feed_sla", name, content)
        (outcome,) = landing.run_all()
        assert outcome.status == "LOADED", outcome.summary
        (row,) = landing.rows(ref_feed_sla)
        seen.append((row.feed_code, row.expected_arrival_time, row.sla_minutes, row.owner_team, row.escalation_contact))
    assert seen == [("A", "07:00", 30, f"Ops{i}", None) for i in range(4)]


def test_example_files_load(landing):
    for kind, name in (("feed_sla", "feed_sla.csv"), ("project_metadata", "project_metadata.yaml")):
        shutil.copy(EXAMPLES / name, landing.folder.root / kind / name)
    outcomes = landing.run_all()
    assert [o.status for o in outcomes] == ["LOADED", "LOADED"], [o.summary for o in outcomes]
    assert len(landing.rows(ref_feed_sla)) == 5
    metadata = {r.project_code: r for r in landing.rows(ref_project_metadata)}
    assert metadata["ATM_CASH"].cost_centre == "0420"


@pytest.mark.postgres
def test_reference_upload_on_postgresql(tmp_path, pg_url):
    landing = Landing(tmp_path, pg_url)
    landing.drop("feed_sla", "sla.csv", _sla("A,07:00,30,Ops,", "B,08:00,30,Ops,"))
    (first,) = landing.run_all()
    landing.drop("feed_sla", "sla2.csv", _sla("A,07:00,30,Ops,", "C,08:00,30,Ops,"))
    (second,) = landing.run_all()
    assert first.status == second.status == "LOADED"
    assert second.counts.as_dict() == {"new": 1, "changed": 0, "unchanged": 1, "removed": 1}
    landing.drop("feed_sla", "bad.csv", _sla("A,07:00,30,Ops,", "A,08:00,30,Ops,"))
    (bad,) = landing.run_all()
    assert bad.status == "REJECTED"
    assert sorted(r.feed_code for r in landing.rows(ref_feed_sla)) == ["A", "C"]
    with landing.engine.connect() as conn:
        errors = conn.execute(sa.select(data_errors.c.row_number, data_errors.c.rule)
                              .where(data_errors.c.source_file == "bad.csv")).all()
    assert errors == [(3, "duplicate_key")]


def test_a_file_removed_before_its_run_fails_clearly(landing):
    from ows_pipeline.uploads.processing import UploadNotFound

    path = landing.drop("feed_sla", "sla.csv", _sla("A,07:00,30,Ops,"))
    (request,) = landing.tick().requests
    path.unlink()
    with pytest.raises(UploadNotFound, match="no longer in the landing folder"):
        process_upload(landing.engine, landing.folder, request.upload_id, limits=LIMITS)
    (entry,) = landing.rows(upload_registry)
    assert entry.status == "REJECTED" and "removed" in entry.error_summary


def test_a_tick_stops_at_its_time_budget_and_the_next_one_goes_on(landing):
    for i in range(5):
        landing.drop("feed_sla", f"sla_{i}.csv", _sla(f"F{i},07:00,30,Ops,"))
    seen = sensor_tick(landing.engine, landing.folder, None, LIMITS, now=time.time() + 60)
    assert len(seen.waiting) == 5
    first = sensor_tick(landing.engine, landing.folder, seen.cursor, LIMITS, now=time.time() + 61, budget_seconds=0)
    assert len(first.requests) == 1 and len(first.deferred) == 4  # the first file is always handled
    second = sensor_tick(landing.engine, landing.folder, first.cursor, LIMITS, now=time.time() + 62)
    assert len(second.requests) == 4 and second.deferred == []
    assert len({r.upload_id for r in first.requests + second.requests}) == 5


def test_files_outside_the_kind_folders_are_named_not_loaded(landing):
    (landing.folder.root / "sla.csv").write_text(_sla("A,07:00,30,Ops,"))
    tick = landing.tick()
    assert tick.requests == []
    assert any("sla.csv" in line and "feed_sla/" in line for line in tick.log)

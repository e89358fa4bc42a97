"""Manual OWS exports: the staging suite, SCD2 history, late exports slotted in, all or nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ows_pipeline.resources import make_engine
from ows_pipeline.uploads.exports import export_target
from ows_pipeline.uploads.landing import LandingFolder
from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.problems import FileRejected
from ows_pipeline.uploads.processing import process_upload
from ows_pipeline.uploads.sensing import sensor_tick
from ows_pipeline.warehouse.schema.uploads import upload_registry
from ows_pipeline.warehouse.schema import create_warehouse_tables
from ows_pipeline_tests.upload_corpus import workbook_bytes

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "uploads" / "ows_export" / "ows_project_2026-11-01.csv"
LIMITS = UploadLimits(settle_seconds=0)
HEADER = "project_id,project_code,project_name,business_unit,owner,active_flag,created_at,updated_at\n"


def _project(pid: int, name: str, updated: str = "2026-10-01 09:00:00", flag: str = "Y") -> str:
    return f"{pid},P{pid},{name},Treasury,ann,{flag},2025-01-01 00:00:00,{updated}\n"


class Exports:
    def __init__(self, root: Path, url: str):
        self.engine = make_engine(url, role="warehouse")
        create_warehouse_tables(self.engine)
        self.landing = LandingFolder(root / "landing")
        self.landing.ensure()

    def upload(self, name: str, content):
        path = self.landing.root / "ows_export" / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        first = sensor_tick(self.engine, self.landing, None, LIMITS, now=time.time() + 60)
        tick = sensor_tick(self.engine, self.landing, first.cursor, LIMITS, now=time.time() + 61)
        (request,) = tick.requests
        return process_upload(self.engine, self.landing, request.upload_id, limits=LIMITS)

    def query(self, sql: str):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql)).all()

    def history(self, pid: int):
        rows = self.query(
            f"SELECT project_name, valid_from, valid_to, is_current, is_deleted FROM dim_project "
            f"WHERE project_id = {pid} ORDER BY valid_from"
        )
        return [(r[0], str(r[1])[:10], str(r[2])[:10] if r[2] else None, bool(r[3]), bool(r[4])) for r in rows]


@pytest.fixture
def exports(tmp_path, sqlite_url):
    return Exports(tmp_path, sqlite_url)


def test_export_names():
    table, as_of = export_target("ows_feed_2026-11-01.csv")
    assert table == "ows_feed" and as_of.isoformat() == "2026-11-01T00:00:00+00:00"
    assert export_target("ows_run_step_history_2026-11-01T093000Z.xlsx")[1].isoformat() == "2026-11-01T09:30:00+00:00"
    for bad in ("ows_feed.csv", "ows_feed_2026-13-01.csv", "feed_2026-11-01.csv", "ows_feed_2026-11-01.txt"):
        with pytest.raises(FileRejected):
            export_target(bad)


def test_example_export_loads_staging_and_dimension(exports):
    outcome = exports.upload(EXAMPLE.name, EXAMPLE.read_text())
    assert outcome.status == "LOADED", outcome.summary
    assert outcome.counts.as_dict() == {"new": 3, "changed": 0, "unchanged": 0, "removed": 0}
    assert outcome.details["materialized"] == ["stg_ows_project", "dim_project"]
    assert len(exports.query("SELECT * FROM stg_ows_project")) == 3
    assert len(exports.query("SELECT * FROM dim_project WHERE is_current = 1")) == 3


def test_newer_then_late_older_export_slots_history_in_place(exports):
    exports.upload("ows_project_2026-11-01.csv", HEADER + _project(1, "One") + _project(2, "Two") + _project(3, "Three"))
    newer = exports.upload(
        "ows_project_2026-11-15.csv",
        HEADER + _project(1, "One renamed", "2026-11-10 12:00:00") + _project(2, "Two") + _project(4, "Four", "2026-11-12 08:00:00"),
    )
    assert newer.counts.as_dict() == {"new": 1, "changed": 1, "unchanged": 1, "removed": 1}
    # an export of 2026-11-08 arrives late: project 2 was renamed on 11-05 and back by 11-15
    late = exports.upload(
        "ows_project_2026-11-08.csv",
        HEADER + _project(1, "One") + _project(2, "Two interim", "2026-11-05 10:00:00") + _project(3, "Three"),
    )
    assert late.status == "LOADED" and late.details["late"] == "yes"
    assert late.details["materialized"] == ["dim_project"]
    assert late.counts.as_dict() == {"new": 0, "changed": 1, "unchanged": 2, "removed": 0}
    # staging keeps the newest export; the dimension's history has the interim version in place
    assert sorted(r[0] for r in exports.query("SELECT project_name FROM stg_ows_project")) == ["Four", "One renamed", "Two"]
    assert exports.history(2) == [
        ("Two", "2026-10-01", "2026-11-05", False, False),
        ("Two interim", "2026-11-05", "2026-11-15", False, False),
        ("Two", "2026-11-15", None, True, False),
    ]
    assert exports.history(1) == [
        ("One", "2026-10-01", "2026-11-10", False, False),
        ("One renamed", "2026-11-10", None, True, False),
    ]
    assert exports.history(3)[-1] == ("Three", "2026-11-15", None, True, True)  # tombstone from the newer export


def test_one_bad_row_rejects_the_whole_export(exports):
    exports.upload("ows_project_2026-11-01.csv", HEADER + _project(1, "One"))
    outcome = exports.upload(
        "ows_project_2026-11-08.csv",
        HEADER + _project(1, "One renamed") + _project(2, "Two", flag="MAYBE") + _project(3, "Three"),
    )
    assert outcome.status == "REJECTED"
    assert [r[0] for r in exports.query("SELECT project_name FROM stg_ows_project")] == ["One"]
    assert exports.history(1) == [("One", "2026-10-01", None, True, False)]
    errors = exports.query(
        "SELECT row_number, field, value, severity FROM data_errors WHERE source_file = 'ows_project_2026-11-08.csv'"
    )
    assert (3, "active_flag", "MAYBE", "ERROR") in errors
    with exports.engine.connect() as conn:
        entry = conn.execute(sa.select(upload_registry).where(upload_registry.c.file_name.like("%11-08%"))).one()
    assert entry.status == "REJECTED" and "active_flag" in entry.error_summary


def test_duplicate_keys_in_an_export_are_refused(exports):
    outcome = exports.upload("ows_project_2026-11-01.csv", HEADER + _project(1, "One") + _project(1, "Again"))
    assert outcome.status == "REJECTED"
    assert exports.query("SELECT COUNT(*) FROM dim_project") == [(0,)]


def test_xlsx_export_loads(exports):
    import datetime as dt

    rows = [HEADER.strip().split(","), [1, "P1", "One", "Treasury", "ann", "Y", dt.datetime(2025, 1, 1), dt.datetime(2026, 10, 1, 9)]]
    outcome = exports.upload("ows_project_2026-11-01.xlsx", workbook_bytes(rows))
    assert outcome.status == "LOADED", outcome.summary
    assert exports.history(1) == [("One", "2026-10-01", None, True, False)]


def test_export_of_a_feed_checks_its_project_reference(exports):
    exports.upload("ows_project_2026-11-01.csv", HEADER + _project(1, "One"))
    header = "feed_id,project_id,feed_code,feed_name,source_system,side,expected_schedule,active_flag,created_at,updated_at\n"
    feed = "10,1,SAP_GL_01,GL extract,SAP_GL,SOURCE,DAILY 06:00,Y,2025-01-01 00:00:00,2026-10-01 00:00:00\n"
    outcome = exports.upload("ows_feed_2026-11-01.csv", header + feed)
    assert outcome.status == "LOADED", outcome.summary
    assert exports.query("SELECT feed_code FROM stg_ows_feed") == [("SAP_GL_01",)]
    orphan = feed.replace("10,1,", "11,99,").replace("SAP_GL_01", "SAP_GL_02")
    refused = exports.upload("ows_feed_2026-11-02.csv", header + feed + orphan)
    assert refused.status == "REJECTED"
    assert exports.query("SELECT feed_code FROM stg_ows_feed") == [("SAP_GL_01",)]


def test_export_of_a_table_without_dimension_counts_keys_against_staging(exports):
    exports.upload("ows_project_2026-11-01.csv", HEADER + _project(1, "One"))
    exports.upload(
        "ows_workflow_2026-11-01.csv",
        "workflow_id,project_id,workflow_code,version,workflow_name,begin_date,end_date,updated_at\n"
        "7,1,EOD,1,End of day,2026-01-01 00:00:00,,2026-01-01 00:00:00\n",
    )
    header = "step_id,workflow_id,step_label,step_type,feed_id,match_process_id,seq,updated_at\n"
    steps = [f"{i},7,Step {i},NOTICE,,,{i},2026-01-01 00:00:00\n" for i in range(1, 4)]
    first = exports.upload("ows_workflow_step_2026-11-01.csv", header + "".join(steps))
    assert first.status == "LOADED", first.summary
    assert first.counts.as_dict() == {"new": 3, "changed": 0, "unchanged": 0, "removed": 0}
    second = exports.upload(
        "ows_workflow_step_2026-11-08.csv",
        header + steps[0] + steps[1].replace("Step 2", "Step two") + "4,7,Step 4,NOTICE,,,4,2026-01-01 00:00:00\n",
    )
    assert second.counts.as_dict() == {"new": 1, "changed": 1, "unchanged": 1, "removed": 1}
    late = exports.upload("ows_workflow_step_2026-11-05.csv", header + steps[0])
    assert late.status == "LOADED" and late.details["late"] == "yes"
    assert sorted(r[0] for r in exports.query("SELECT step_id FROM stg_ows_workflow_step")) == [1, 2, 4]


def test_project_metadata_overlays_the_dimension(exports):
    path = exports.landing.root / "project_metadata" / "meta.csv"
    path.write_text("project_code,business_unit,cost_centre,owner\nP1,Markets,CC-9,bob\n")
    first = sensor_tick(exports.engine, exports.landing, None, LIMITS, now=time.time() + 60)
    (request,) = sensor_tick(exports.engine, exports.landing, first.cursor, LIMITS, now=time.time() + 61).requests
    assert process_upload(exports.engine, exports.landing, request.upload_id, limits=LIMITS).status == "LOADED"
    exports.upload("ows_project_2026-11-01.csv", HEADER + _project(1, "One"))
    assert exports.query("SELECT business_unit, cost_centre, owner FROM dim_project") == [("Markets", "CC-9", "bob")]


@pytest.mark.postgres
def test_late_export_on_postgresql(tmp_path, pg_url):
    exports = Exports(tmp_path, pg_url)
    exports.upload("ows_project_2026-11-15.csv", HEADER + _project(1, "One renamed", "2026-11-10 12:00:00"))
    late = exports.upload("ows_project_2026-11-01.csv", HEADER + _project(1, "One"))
    assert late.status == "LOADED" and late.details["late"] == "yes"
    rows = exports.query("SELECT project_name, is_current FROM dim_project ORDER BY valid_from")
    assert rows == [("One", False), ("One renamed", True)]
    bad = exports.upload("ows_project_2026-11-20.csv", HEADER + _project(1, "x", flag="Q"))
    assert bad.status == "REJECTED"
    assert exports.query("SELECT COUNT(*) FROM dim_project") == [(2,)]


def test_every_value_the_staging_cleaner_changes_is_warned_about(exports):
    """Staging trims text and upper-cases codes; an export says so for each value it changed."""
    outcome = exports.upload(
        "ows_project_2026-11-01.csv",
        HEADER + _project(1, " One ") + "2,p2,Two,Treasury,ann,Y,2025-01-01 00:00:00,2026-10-01 09:00:00\n",
    )
    assert outcome.status == "LOADED", outcome.summary
    notes = {(w.row, w.field): w for w in outcome.warnings}
    assert set(notes) == {(2, "project_name"), (3, "project_code")}
    assert notes[2, "project_name"].value == " One " and "'One'" in notes[2, "project_name"].message
    assert notes[3, "project_code"].value == "p2" and "'P2'" in notes[3, "project_code"].message
    assert exports.query(
        "SELECT row_number, field, severity FROM data_errors WHERE rule = 'normalised' ORDER BY row_number"
    ) == [(2, "project_name", "WARNING"), (3, "project_code", "WARNING")]

"""The weekly workbook against the independent oracle (`report_oracle.py`), cell by cell.

The real weekly job runs on the demo source week after week, as the schedule would (the source
advanced to each Sunday 02:00, the job run for the week just ended). After each run the source
is copied: the oracle computes what each workbook must say from those copies only. Covered:
the first week ever built (no last week: blank, not 0), consecutive weeks, a week with no SLA
list (SLA breaches unknown) and one with an SLA list, a week with a rejected value and a failed
check, a failed run that is the latest of its workflow, the first week rebuilt by a backfill
after later weeks exist (with the SLA list loaded since), and the second week rebuilt after a
late `ows_export` upload changed its history.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import time
from pathlib import Path

import dagster as dg
import openpyxl
import pytest
import sqlalchemy as sa

from ows_pipeline.demo.source import advance_demo, generate_demo
from ows_pipeline.resources import OwsSourceResource, SmtpResource, WarehouseResource, make_engine
from ows_pipeline.weeks import Week
from ows_pipeline_tests.report_oracle import (
    ExportSnapshot,
    Oracle,
    OracleWeek,
    SourceSnapshot,
    chart_and_kpi_numbers_of_unbuilt_weeks,
    compare_workbook,
)

TZ = "Europe/London"
WEEKS = ["2026-11-01", "2026-11-08", "2026-11-15"]
SIZES = dict(projects=3, feeds_per_project=3, workflows_per_project=3, runs_per_day=40, weeks=2)
SLA = {"CALYPSO_01": 20, "SUMMIT_02": 45, "FLEXCUBE_01": 30, "CLEARSTREAM_01": 600}
STAGING = ["ows_project", "ows_feed", "ows_match_process", "ows_workflow", "ows_workflow_step", "ows_workflow_run",
           "ows_run_step_status", "ows_run_step_history"]
EXPORT_AS_OF = dt.datetime(2026, 11, 11, tzinfo=dt.timezone.utc)  # the middle of the second week
NO_DATA_DOCS = {"ops": {f"stg_{t}": {"config": {"data_docs": False}} for t in STAGING}}


def run_time(key: str) -> dt.datetime:
    """When the schedule runs week `key`: the next Sunday 02:00 local time."""
    return Week.from_key(key, TZ).end_utc + dt.timedelta(hours=2)


def _insert_sla(engine: sa.Engine) -> None:
    from ows_pipeline.warehouse.schema.uploads import ref_feed_sla

    now = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    with engine.begin() as conn:
        conn.execute(sa.insert(ref_feed_sla), [
            dict(feed_code=code, expected_arrival_time="06:00", sla_minutes=minutes, owner_team="ops",
                 _row_hash=code, _batch_id="sla-test", _source_file="feed_sla.csv", _loaded_at=now)
            for code, minutes in SLA.items()
        ])


def _bad_step_status(source_url: str, week: Week) -> None:
    """One step of a run that ended well without trouble gets a status OWS does not have, during the week."""
    engine = sa.create_engine(source_url)
    with engine.begin() as conn:
        run_id, step_id = conn.execute(sa.text(
            "SELECT s.run_id, s.step_id FROM ows_run_step_status s JOIN ows_workflow_run r ON r.run_id = s.run_id "
            "WHERE r.status = 'COMPLETE' AND r.result_code = 'MATCHED' AND s.activity_status = 'COMPLETE' "
            "ORDER BY s.run_id, s.step_id LIMIT 1"
        )).one()
        at = (week.start_utc + dt.timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S.000000")
        conn.execute(sa.text(
            "UPDATE ows_run_step_status SET activity_status = 'BOGUS', last_update_date = :at "
            "WHERE run_id = :r AND step_id = :s"
        ), {"at": at, "r": run_id, "s": step_id})
    engine.dispose()


def _ad_hoc_feed(source_url: str, week: Week, *, remove: bool = False) -> None:
    """A feed added during the week (nothing refers to it), or removed from the source again."""
    engine = sa.create_engine(source_url)
    at = (week.start_utc + dt.timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S.000000")
    with engine.begin() as conn:
        if remove:
            conn.execute(sa.text("DELETE FROM ows_feed WHERE feed_id = 9999"))
        else:
            conn.execute(sa.text(
                "INSERT INTO ows_feed (feed_id, project_id, feed_code, feed_name, source_system, side, "
                "expected_schedule, active_flag, created_at, updated_at) SELECT 9999, MIN(project_id), 'ADHOC_99', "
                "'Ad hoc extract', 'MANUAL', 'SOURCE', 'WEEKDAYS 06:00', 'Y', :at, :at FROM ows_project"
            ), {"at": at})
    engine.dispose()


def _fail_latest_run(source_url: str, week: Week) -> None:
    """The latest run of one workflow, ended in the week, failed at its last step (error, message, user)."""
    engine = sa.create_engine(source_url)
    begun, end = (t.strftime("%Y-%m-%d %H:%M:%S") for t in (week.start_utc, week.end_utc))
    with engine.begin() as conn:
        run_id, ended = conn.execute(sa.text(
            "SELECT run_id, end_date FROM ows_workflow_run r WHERE status = 'COMPLETE' AND begin_date >= :begun "
            "AND end_date < :end "
            "AND NOT EXISTS (SELECT 1 FROM ows_workflow_run later WHERE later.workflow_id = r.workflow_id "
            "AND later.begin_date > r.begin_date) ORDER BY run_id LIMIT 1"
        ), {"begun": begun, "end": end}).one()
        step_id = conn.execute(sa.text("SELECT MAX(step_id) FROM ows_run_step_status WHERE run_id = :r"),
                               {"r": run_id}).scalar_one()
        conn.execute(sa.text("UPDATE ows_workflow_run SET status = 'ERROR', result_code = '#EXCEPTION', "
                             "last_update_date = :e WHERE run_id = :r"), {"e": ended, "r": run_id})
        conn.execute(sa.text(
            "UPDATE ows_run_step_status SET activity_status = 'ERROR', result_code = '#EXCEPTION', "
            "error_name = 'ORA-00942', error_message = 'ORA-00942: table or view does not exist', "
            "assigned_user = 'ops.lead', last_update_date = :e WHERE run_id = :r AND step_id = :s"
        ), {"e": ended, "r": run_id, "s": step_id})
    engine.dispose()


class Scenario:
    """Three weekly runs, an SLA list loaded before the third, then the first week rebuilt by a backfill."""

    def __init__(self, tmp: Path, warehouse_url: str, home: Path):
        self.tmp, self.home = tmp, home
        self.source_file = tmp / "ows.db"
        self.source_url = f"sqlite:///{self.source_file}"
        self.warehouse = make_engine(warehouse_url, role="warehouse")
        from ows_pipeline.definitions import build_defs

        self.defs = build_defs({
            "ows_source": OwsSourceResource(url=self.source_url, safety_delay_seconds=0),
            "warehouse": WarehouseResource(url=warehouse_url),
            "smtp": SmtpResource(),
        })
        self.snapshots: list[SourceSnapshot] = []
        self.exports: list[ExportSnapshot] = []
        self.reports: dict[str, Path] = {}

    def _snapshot(self, taken: dt.datetime) -> None:
        copy = self.tmp / f"source_{len(self.snapshots)}.db"
        shutil.copy(self.source_file, copy)
        self.snapshots.append(SourceSnapshot(taken, f"sqlite:///{copy}"))

    def _keep_report(self, key: str, label: str) -> None:
        built = self.home / "reports" / f"ows_weekly_{key}.xlsx"
        kept = self.tmp / f"{label}.xlsx"
        shutil.copy(built, kept)
        self.reports[label] = kept

    def run(self) -> "Scenario":
        job = self.defs.resolve_job_def("ows_weekly_job")
        with dg.DagsterInstance.ephemeral() as instance:
            for i, key in enumerate(WEEKS):
                at = run_time(key)
                if i == 0:
                    generate_demo(self.source_url, as_of=at, seed=5, **SIZES)
                else:
                    advance_demo(self.source_url, as_of=at)
                if key == WEEKS[0]:
                    _ad_hoc_feed(self.source_url, Week.from_key(key, TZ))
                if key == WEEKS[1]:
                    _bad_step_status(self.source_url, Week.from_key(key, TZ))
                    _ad_hoc_feed(self.source_url, Week.from_key(key, TZ), remove=True)
                if key == WEEKS[2]:
                    _insert_sla(self.warehouse)
                    _fail_latest_run(self.source_url, Week.from_key(key, TZ))
                self._snapshot(at)
                result = job.execute_in_process(partition_key=key, instance=instance, run_config=NO_DATA_DOCS)
                assert result.success, key
                self._keep_report(key, key)
            backfill = job.execute_in_process(
                partition_key=WEEKS[0], instance=instance,
                asset_selection=[dg.AssetKey("fct_workflow_run_weekly"), dg.AssetKey("ows_weekly_report")],
            )
            assert backfill.success
            self._keep_report(WEEKS[0], "backfill")
            self._late_export()
            rebuilt = job.execute_in_process(
                partition_key=WEEKS[1], instance=instance,
                asset_selection=[dg.AssetKey("fct_workflow_run_weekly"), dg.AssetKey("ows_weekly_report")],
            )
            assert rebuilt.success
            self._keep_report(WEEKS[1], "export")
        return self

    def _late_export(self) -> None:
        """An `ows_export` of the projects as they were in the middle of the second week, uploaded after the
        third: one project had another name for a while (the weekly extracts never saw it)."""
        from ows_pipeline.uploads.landing import LandingFolder
        from ows_pipeline.uploads.limits import UploadLimits
        from ows_pipeline.uploads.processing import process_upload
        from ows_pipeline.uploads.sensing import sensor_tick

        at = EXPORT_AS_OF
        state = Oracle(self.snapshots, OracleWeek.of(WEEKS[1], TZ)).state_at("ows_project", at, include_gone=False)
        rows = [dict(r) for _, r in sorted(state.items())]
        rows[0]["project_name"] = rows[0]["project_name"] + " (interim)"
        rows[0]["updated_at"] = at - dt.timedelta(hours=12)
        columns = ["project_id", "project_code", "project_name", "business_unit", "owner", "active_flag",
                   "created_at", "updated_at"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c].strftime("%Y-%m-%d %H:%M:%S") if isinstance(row[c], dt.datetime) else row[c]
                             for c in columns])
        landing = LandingFolder(self.tmp / "landing")
        landing.ensure()
        (landing.root / "ows_export" / f"ows_project_{at:%Y-%m-%d}.csv").write_text(buffer.getvalue())
        limits = UploadLimits(settle_seconds=0)
        first = sensor_tick(self.warehouse, landing, None, limits, now=time.time() + 60)
        tick = sensor_tick(self.warehouse, landing, first.cursor, limits, now=time.time() + 61)
        (request,) = tick.requests
        outcome = process_upload(self.warehouse, landing, request.upload_id, limits=limits)
        assert outcome.status == "LOADED", outcome.summary
        self.exports.append(ExportSnapshot(at, {"ows_project": rows}))

    def oracle(self, key: str, *, upto: int, sla, last_week_built: bool) -> Oracle:
        """The oracle of a week built live: the source as then; last week was built without an SLA list."""
        return Oracle(self.snapshots[:upto], OracleWeek.of(key, TZ), sla=sla, last_week_built=last_week_built)


def _check_every_week(scenario: Scenario) -> None:
    cases = {
        WEEKS[0]: scenario.oracle(WEEKS[0], upto=1, sla=None, last_week_built=False),  # the first week ever built
        WEEKS[1]: scenario.oracle(WEEKS[1], upto=2, sla=None, last_week_built=True),  # no SLA list
        WEEKS[2]: scenario.oracle(WEEKS[2], upto=3, sla=SLA, last_week_built=True),  # an SLA list
        # the first week rebuilt after later weeks exist, from the source as it is now, with the SLA list
        "backfill": Oracle(scenario.snapshots, OracleWeek.of(WEEKS[0], TZ), sla=SLA, last_week_built=False),
        # the second week rebuilt after a late export changed its history (last week: the backfilled first)
        "export": Oracle(scenario.snapshots, OracleWeek.of(WEEKS[1], TZ), sla=SLA, last_week_built=True,
                         last_week_sla=SLA, exports=scenario.exports),
    }
    problems = {label: compare_workbook(scenario.reports[label], oracle) for label, oracle in cases.items()}
    assert problems == {label: [] for label in cases}

    # The oracle is not vacuous: the weeks have failed, broken, open and SLA-breaching runs and changes.
    third = cases[WEEKS[2]].kpi_table()
    assert third["Failed"][0] > 0 and third["Breaks"][0] > 0 and third["SLA breaches"][0] > 0
    assert cases[WEEKS[1]].kpi_table()["SLA breaches"] == (None, None, None)
    assert cases[WEEKS[0]].kpi_table()["Runs"][1:] == (None, None)
    failed_latest = [r for r in cases[WEEKS[2]].latest_snapshot().values() if r["Error"]]
    assert failed_latest and failed_latest[0]["Assigned user"], "the error columns would go untested"
    assert sum(len(cases[w].dimension_changes()) for w in WEEKS[1:]) > 0
    # the feed that left the source during the second week is reported in that week, dated by the run that saw it
    gone = [c for c in cases[WEEKS[1]].dimension_changes() if c[:3] == ("Feed", "ADHOC_99", "retired")]
    assert gone and gone[0][6] == OracleWeek.of(WEEKS[1], TZ).local(run_time(WEEKS[1]))
    assert not [c for c in cases[WEEKS[2]].dimension_changes() if c[1] == "ADHOC_99"]
    interim = [c for c in cases["export"].dimension_changes() if c[3] == "project_name" and "(interim)" in (c[5] or "")]
    assert interim, "the late export's rename is in the rebuilt week's changes"

    # The Data quality sheet holds the week's loads (the run that built it) and the week's snapshot build.
    for label in WEEKS + ["backfill", "export"]:
        sheet = openpyxl.load_workbook(scenario.reports[label])["Data quality"]
        tables = {r[0]: r for r in sheet.iter_rows(values_only=True) if r[0]}
        assert {"raw_ows_workflow_run", "stg_ows_workflow_run", "fct_workflow_run_weekly"} <= set(tables), label
    backfilled = {r[0]: r for r in openpyxl.load_workbook(scenario.reports["backfill"])["Data quality"]
                  .iter_rows(values_only=True) if r[0]}
    assert backfilled["fct_workflow_run_weekly"][1] == 2  # the weekly run and the backfill both built it
    # The week whose extraction held a step transition to an unknown status rejects it, and says so.
    for label in WEEKS:
        book = openpyxl.load_workbook(scenario.reports[label])
        rows = list(book["Data quality"].iter_rows(values_only=True))
        rejected = sum(r[2] for r in rows if r[:2] == ("stg_ows_run_step_status", "ERROR"))
        assert rejected == cases[label].bad_step_statuses(), label
        failed = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True) if r[0]}["Failed data checks"]
        assert (label == WEEKS[1]) == (failed > 0), (label, failed)
    assert cases[WEEKS[1]].bad_step_statuses() == 1
    for label in WEEKS:
        assert chart_and_kpi_numbers_of_unbuilt_weeks(scenario.reports[label], set(WEEKS[: WEEKS.index(label) + 1])) == []


@pytest.mark.slow
def test_workbooks_tell_what_the_source_says_sqlite(tmp_path, ows_home):
    _check_every_week(Scenario(tmp_path, f"sqlite:///{tmp_path / 'warehouse.db'}", ows_home).run())


@pytest.mark.slow
@pytest.mark.postgres
def test_workbooks_tell_what_the_source_says_postgres(tmp_path, ows_home, pg_url):
    _check_every_week(Scenario(tmp_path, pg_url, ows_home).run())


def test_no_number_for_a_week_without_data(tmp_path):
    """Weeks never built (before the first and in a gap) hold no number in the KPIs or the chart data."""
    from ows_pipeline.reports.weekly_report import build_weekly_report
    from ows_pipeline_tests.test_report_weekly import fact_row, insert_facts

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    # built: 2026-11-01 and 2026-11-15; 2026-11-08 never was
    insert_facts(engine, [fact_row("2026-11-01", i) for i in range(5)] + [fact_row("2026-11-15", i) for i in range(7)])
    result = build_weekly_report(engine, Week.from_key("2026-11-15", TZ), tmp_path / "r.xlsx")
    assert chart_and_kpi_numbers_of_unbuilt_weeks(result.path, {"2026-11-01", "2026-11-15"}) == []
    sheet = openpyxl.load_workbook(result.path)["Summary"]
    rows = list(sheet.iter_rows(values_only=True))
    kpis = {r[0]: r[1:4] for r in rows[4:11]}
    assert kpis["Runs"] == (7, None, None) and kpis["Match rate"][1:] == (None, None)
    top = next(i for i, r in enumerate(rows) if r[0] == "Week" and r[1] == "Runs")
    assert [r[0] for r in rows[top + 1:top + 4]] == ["2026-11-01", "2026-11-08", "2026-11-15"]  # starts at the first
    assert rows[top + 2][1:5] == (None, None, None, None) and rows[top + 1][1] == 5
    assert any("never built" in str(r[0]) for r in rows)

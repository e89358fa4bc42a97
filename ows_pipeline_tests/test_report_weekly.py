"""The weekly workbook built from a warehouse: sheets, KPIs, changes, safety, reproducibility, Dagster assets."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import zipfile
from pathlib import Path

import dagster as dg
import openpyxl
import pytest
import sqlalchemy as sa

from ows_pipeline.reports.weekly_report import ReportWeek, build_weekly_report, report_path
from ows_pipeline.source.schema import TS

WEEK = "2026-11-15"  # a Sunday, GMT
PREVIOUS = "2026-11-08"
UTC = dt.timezone.utc

# The agreed columns of fct_workflow_run_weekly, for a warehouse where the facts stage has not run.
_fact_metadata = sa.MetaData()
FACT_FALLBACK = sa.Table(
    "fct_workflow_run_weekly", _fact_metadata,
    sa.Column("week_start", sa.Date, nullable=False), sa.Column("week_end", TS), sa.Column("run_id", sa.Integer),
    sa.Column("run_key", sa.String(60)), sa.Column("workflow_id", sa.Integer), sa.Column("workflow_code", sa.String(30)),
    sa.Column("workflow_version", sa.Integer), sa.Column("workflow_name", sa.String(200)),
    sa.Column("project_id", sa.Integer), sa.Column("project_code", sa.String(30)),
    sa.Column("project_name", sa.String(200)), sa.Column("feed_id", sa.Integer), sa.Column("feed_code", sa.String(30)),
    sa.Column("match_process_id", sa.Integer), sa.Column("process_code", sa.String(30)),
    sa.Column("business_date", sa.Date), sa.Column("status", sa.String(10)), sa.Column("result_code", sa.String(30)),
    sa.Column("reached_end_state", sa.Boolean), sa.Column("is_failed", sa.Boolean), sa.Column("is_break", sa.Boolean),
    sa.Column("records_loaded", sa.Integer), sa.Column("matched_cnt", sa.Integer), sa.Column("suggested_cnt", sa.Integer),
    sa.Column("unmatched_cnt", sa.Integer), sa.Column("begin_date", TS), sa.Column("end_date", TS),
    sa.Column("duration_minutes", sa.Float), sa.Column("sla_minutes", sa.Integer), sa.Column("sla_breached", sa.Boolean),
    sa.Column("project_sk", sa.BigInteger), sa.Column("feed_sk", sa.BigInteger),
    sa.Column("match_process_sk", sa.BigInteger), sa.Column("workflow_sk", sa.BigInteger),
    sa.Column("batch_id", sa.String(40)),
)

_dim_metadata = sa.MetaData()


def _dim(name: str, key: str, *attributes: str) -> sa.Table:
    return sa.Table(
        name, _dim_metadata,
        sa.Column(f"{name[4:]}_sk", sa.Integer, primary_key=True), sa.Column(key, sa.Integer),
        *(sa.Column(a, sa.String(200)) for a in attributes),
        sa.Column("active_flag", sa.Boolean), sa.Column("row_hash", sa.String(32)), sa.Column("valid_from", TS),
        sa.Column("valid_to", TS), sa.Column("is_current", sa.Boolean), sa.Column("is_deleted", sa.Boolean),
        sa.Column("batch_id", sa.String(40)),
    )


DIM_PROJECT = _dim("dim_project", "project_id", "project_code", "project_name", "owner")


def fact_table(engine: sa.Engine) -> sa.Table:
    """The warehouse's fct_workflow_run_weekly (created with the agreed columns when missing)."""
    if not sa.inspect(engine).has_table("fct_workflow_run_weekly"):
        FACT_FALLBACK.create(engine)
    return sa.Table("fct_workflow_run_weekly", sa.MetaData(), autoload_with=engine)


def fact_row(week: str, run_id: int, **values) -> dict:
    start = dt.date.fromisoformat(week)
    row = dict(
        week_start=start, week_end=dt.datetime.combine(start + dt.timedelta(days=7), dt.time(), UTC),
        run_id=run_id, run_key=f"RUN-{run_id}", workflow_id=run_id % 10, workflow_code=f"WF{run_id % 10:02d}",
        workflow_version=1, workflow_name=f"Workflow {run_id % 10}", project_id=run_id % 3 + 1,
        project_code=f"P{run_id % 3 + 1}", project_name=f"Project {run_id % 3 + 1}", feed_id=run_id % 10,
        feed_code=f"FEED{run_id % 10}", match_process_id=run_id % 10, process_code=f"MP{run_id % 10}",
        business_date=start + dt.timedelta(days=1), status="COMPLETE", result_code="MATCHED",
        reached_end_state=True, is_failed=False, is_break=False, records_loaded=100, matched_cnt=90,
        suggested_cnt=0, unmatched_cnt=10,
        begin_date=dt.datetime.combine(start + dt.timedelta(days=1), dt.time(8, run_id % 60), UTC),
        end_date=dt.datetime.combine(start + dt.timedelta(days=1), dt.time(9, run_id % 60), UTC),
        duration_minutes=60.0, sla_minutes=120, sla_breached=False, project_sk=1, feed_sk=1, match_process_sk=1,
        workflow_sk=1, batch_id="test-batch",
    )
    row.update(values)
    return row


def insert_facts(engine: sa.Engine, rows: list[dict]) -> None:
    table = fact_table(engine)
    names = set(table.c.keys())
    with engine.begin() as conn:
        conn.execute(sa.insert(table), [{k: v for k, v in r.items() if k in names} for r in rows])


def standard_week(engine: sa.Engine) -> None:
    """30 runs last week and 30 this week; 10 workflows; some failed, broken, open and breaching SLA."""
    rows = []
    for run_id in range(30):
        rows.append(fact_row(PREVIOUS, run_id, status="ACTIVE", result_code=None, reached_end_state=False,
                             end_date=None, matched_cnt=50))
    for run_id in range(10, 40):
        extra = {}
        if run_id % 7 == 0:
            extra = dict(status="ERROR", result_code="#EXCEPTION", is_failed=True)
        elif run_id % 5 == 0:
            extra = dict(result_code="BREAKS", is_break=True)
        elif run_id % 11 == 0:
            extra = dict(status="ACTIVE", result_code=None, reached_end_state=False, end_date=None)
        if run_id % 13 == 0:
            extra["sla_breached"] = True
        rows.append(fact_row(WEEK, run_id, **extra))
    insert_facts(engine, rows)


def week() -> ReportWeek:
    return ReportWeek.from_key(WEEK, "Europe/London")


def load(path: Path) -> openpyxl.Workbook:
    return openpyxl.load_workbook(path)


def summary_kpis(book) -> dict:
    sheet = book["Summary"]
    found = {}
    for row in sheet.iter_rows(min_row=5, max_row=11, max_col=4, values_only=True):
        found[row[0]] = row[1:]
    return found


@pytest.fixture
def engine(sqlite_url) -> sa.Engine:
    return sa.create_engine(sqlite_url)


def test_week_bounds_follow_the_local_clock_across_dst():
    winter = ReportWeek.from_key("2026-11-15", "Europe/London")
    assert (winter.start_utc, winter.end_utc) == (dt.datetime(2026, 11, 15, tzinfo=UTC), dt.datetime(2026, 11, 22, tzinfo=UTC))
    summer = ReportWeek.from_key("2026-07-05", "Europe/London")
    assert summer.start_utc == dt.datetime(2026, 7, 4, 23, tzinfo=UTC)
    spring = ReportWeek.from_key("2026-03-29", "Europe/London")  # clocks go forward that Sunday at 01:00
    assert spring.start_utc == dt.datetime(2026, 3, 29, 0, tzinfo=UTC)
    assert spring.end_utc == dt.datetime(2026, 4, 4, 23, tzinfo=UTC)


def test_report_has_every_sheet_and_the_kpis_with_week_over_week_deltas(engine, tmp_path):
    standard_week(engine)
    result = build_weekly_report(engine, week(), tmp_path / "report.xlsx")
    book = load(result.path)
    assert book.sheetnames == ["Summary", "Latest snapshot", "End states", "Changes", "Data quality"]
    kpis = summary_kpis(book)
    failed = len([r for r in range(10, 40) if r % 7 == 0])
    breaks = len([r for r in range(10, 40) if r % 7 and r % 5 == 0])
    still_open = len([r for r in range(10, 40) if r % 7 and r % 5 and r % 11 == 0])
    assert kpis["Runs"] == (30, 30, 0)
    assert kpis["Failed"] == (failed, 0, failed)
    assert kpis["Breaks"] == (breaks, 0, breaks)
    assert kpis["Open"] == (still_open, 30, still_open - 30)
    assert kpis["Completed"] == (30 - still_open - failed, 0, 30 - still_open - failed)  # end state, not failed
    assert kpis["SLA breaches"] == (len([r for r in range(10, 40) if r % 13 == 0]), 0, 3)
    assert kpis["Match rate"][0] == pytest.approx(0.9) and kpis["Match rate"][1] == pytest.approx(50 / 60)
    assert len(book["Summary"]._charts) == 2
    assert ("Runs", 30, 30, 0) in result.kpis
    assert "| Runs | 30 | 30 | +0 |" in result.kpi_markdown()


def test_latest_snapshot_keeps_the_latest_run_of_each_workflow(engine, tmp_path):
    rows = [
        fact_row(WEEK, 1, workflow_code="WF", feed_id=1, match_process_id=1, project_id=1, status="COMPLETE",
                 begin_date=dt.datetime(2026, 11, 16, 8, tzinfo=UTC)),
        fact_row(WEEK, 2, workflow_code="WF", feed_id=1, match_process_id=1, project_id=1, status="ERROR",
                 result_code="#EXCEPTION", is_failed=True, begin_date=dt.datetime(2026, 11, 17, 8, tzinfo=UTC)),
        fact_row(WEEK, 3, workflow_code="WF", feed_id=2, match_process_id=1, project_id=1, is_break=True,
                 result_code="BREAKS", begin_date=dt.datetime(2026, 11, 16, 8, tzinfo=UTC)),
    ]
    insert_facts(engine, rows)
    result = build_weekly_report(engine, week(), tmp_path / "r.xlsx")
    sheet = load(result.path)["Latest snapshot"]
    header = [c.value for c in sheet[1]]
    body = [dict(zip(header, r)) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert sorted(r["Run id"] for r in body) == [2, 3]
    flags = {r["Run id"]: r["Flag"] for r in body}
    assert flags == {2: "FAILED", 3: "BREAK"}
    assert sheet.freeze_panes == "A2" and list(sheet.tables) == ["LatestSnapshot"]
    by_run = {r["Run id"]: r for r in body}
    assert by_run[2]["Begin"] == dt.datetime(2026, 11, 17, 8, 0)  # GMT week: UTC wall time
    assert sheet.cell(row=2, column=header.index("Begin") + 1).number_format == "yyyy-mm-dd hh:mm"
    assert result.sheet_rows["Latest snapshot"] == 2


def test_source_text_starting_with_formula_characters_stays_text_in_the_workbook(engine, tmp_path):
    hostile = {"project_name": '=HYPERLINK("http://evil.example","x")', "workflow_name": "+1+2",
               "run_key": "-3+4", "feed_code": "@SUM(A1)", "process_code": "#N/A", "project_code": "=P1"}
    insert_facts(engine, [fact_row(WEEK, 1, **hostile)])
    result = build_weekly_report(engine, week(), tmp_path / "r.xlsx")
    archive = zipfile.ZipFile(result.path)
    sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/sheet")]
    for name in sheets:
        xml = archive.read(name).decode()
        assert not re.search(r"<f[ >]", xml), f"formula in {name}"
        assert 't="e"' not in xml
    snapshot = archive.read("xl/worksheets/sheet2.xml").decode()
    for value in hostile.values():
        assert f"<t>{value.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</t>" in snapshot
    sheet = load(result.path)["Latest snapshot"]
    assert sheet["B2"].value == hostile["project_name"] and sheet["B2"].data_type == "s"


def test_snapshot_past_the_sheet_limit_continues_with_every_row(engine, tmp_path):
    insert_facts(engine, [fact_row(WEEK, i, workflow_code=f"W{i:03d}") for i in range(25)])
    result = build_weekly_report(engine, week(), tmp_path / "r.xlsx", max_rows=10)
    book = load(result.path)
    parts = [n for n in book.sheetnames if n.startswith("Latest snapshot")]
    assert parts == ["Latest snapshot", "Latest snapshot (2)", "Latest snapshot (3)"]
    runs = [r[8] for n in parts for r in book[n].iter_rows(min_row=2, values_only=True)]
    assert sorted(runs) == list(range(25)) and len(runs) == 25
    links = {c.value: c.hyperlink.location for row in book["Summary"].iter_rows() for c in row if c.hyperlink}
    assert links["Latest snapshot (3)"] == "'Latest snapshot (3)'!A1"


def test_changes_lists_added_changed_retired_reactivated_and_run_state_changes(engine, tmp_path):
    standard_week(engine)
    DIM_PROJECT.create(engine)
    t = lambda *a: dt.datetime(*a, tzinfo=UTC)  # noqa: E731
    old = t(2026, 1, 1)
    versions = [
        # key 1: renamed during the week
        (1, 1, "P1", "Alpha", "ann", True, old, t(2026, 11, 17, 10), False, False),
        (2, 1, "P1", "Alpha Ltd", "ann", True, t(2026, 11, 17, 10), None, True, False),
        # key 2: new this week
        (3, 2, "P2", "Beta", "bob", True, t(2026, 11, 18), None, True, False),
        # key 3: left the extract (tombstone)
        (4, 3, "P3", "Gamma", "cy", True, old, t(2026, 11, 19), False, False),
        (5, 3, "P3", "Gamma", "cy", True, t(2026, 11, 19), None, True, True),
        # key 4: came back
        (6, 4, "P4", "Delta", "di", True, old, t(2026, 6, 1), False, False),
        (7, 4, "P4", "Delta", "di", True, t(2026, 6, 1), t(2026, 11, 20), False, True),
        (8, 4, "P4", "Delta", "di", True, t(2026, 11, 20), None, True, False),
        # key 5: changed after the week: not listed
        (9, 5, "P5", "Eps", "ed", True, old, t(2026, 11, 23), False, False),
        (10, 5, "P5", "Epsilon", "ed", True, t(2026, 11, 23), None, True, False),
    ]
    columns = ["project_sk", "project_id", "project_code", "project_name", "owner", "active_flag", "valid_from",
               "valid_to", "is_current", "is_deleted"]
    with engine.begin() as conn:
        conn.execute(sa.insert(DIM_PROJECT), [dict(zip(columns, v), row_hash="x", batch_id="b") for v in versions])
    result = build_weekly_report(engine, week(), tmp_path / "r.xlsx")
    sheet = load(result.path)["Changes"]
    header = [c.value for c in sheet[1]][:9]
    rows = [dict(zip(header, r)) for r in sheet.iter_rows(min_row=2, max_col=9, values_only=True)]
    projects = [(r["Code"], r["Change"], r["Field"], r["Old value"], r["New value"]) for r in rows
                if r["Entity"] == "Project"]
    assert projects == [
        ("P1", "changed", "project_name", "Alpha", "Alpha Ltd"),
        ("P2", "added", None, None, None),
        ("P3", "retired", None, None, None),
        ("P4", "reactivated", None, None, None),
    ]
    runs = [r for r in rows if r["Entity"] == "Run"]
    # runs 10..29 were ACTIVE last week; all but the ones still open changed state
    still_open = {r for r in range(10, 30) if r % 7 and r % 5 and r % 11 == 0}
    assert sorted(int(r["Name"].split("-")[1]) for r in runs) == sorted(set(range(10, 30)) - still_open)
    assert runs[0]["Old value"] == "ACTIVE"
    assert any("dim_feed" in note for note in result.notes)  # not built: said, not failed
    summary = {r[0]: r[1] for r in load(result.path)["Summary"].iter_rows(max_col=2, values_only=True) if r[0]}
    assert summary["Runs that changed state"] == len(runs)
    assert summary["Project changed"] == summary["Project added"] == summary["Project retired"] == 1


def test_changes_read_the_warehouse_dimension_tables(tmp_path):
    """The Changes sheet against the dimension tables as the warehouse declares them (not a stand-in)."""
    from ows_pipeline.resources import WarehouseResource

    engine = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.db'}").get_engine()
    assert sa.inspect(engine).has_table("dim_workflow"), "the warehouse declares dim_workflow"
    standard_week(engine)
    dim = sa.Table("dim_workflow", sa.MetaData(), autoload_with=engine)
    t = lambda *a: dt.datetime(*a, tzinfo=UTC)  # noqa: E731
    base = dict(workflow_id=7, project_id=1, workflow_code="WF07", version=1, begin_date=t(2026, 1, 1),
                end_date=None, updated_at=t(2026, 1, 1), row_hash="h", is_deleted=False, batch_id="b")
    versions = [
        dict(base, workflow_sk=1, workflow_name="Old name", valid_from=t(2026, 1, 1), valid_to=t(2026, 11, 18, 9),
             is_current=False),
        dict(base, workflow_sk=2, workflow_name="New name", version=2, valid_from=t(2026, 11, 18, 9), valid_to=None,
             is_current=True, updated_at=t(2026, 11, 18, 9)),
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(dim), [{k: v for k, v in row.items() if k in dim.c} for row in versions])
    result = build_weekly_report(engine, week(), tmp_path / "r.xlsx")
    sheet = load(result.path)["Changes"]
    rows = [r[:9] for r in sheet.iter_rows(min_row=2, values_only=True) if r[0] == "Workflow"]
    assert [(r[2], r[4], r[5], r[6], r[7]) for r in rows] == [
        ("WF07", "changed", "version", "1", "2"),
        ("WF07", "changed", "workflow_name", "Old name", "New name"),
    ]
    assert rows[0][8] == dt.datetime(2026, 11, 18, 9, 0)
    assert not any("dim_workflow" in note for note in result.notes)


def test_data_quality_sheet_counts_rejects_and_links_data_docs(engine, tmp_path):
    from ows_pipeline.warehouse.schema import data_errors, etl_batches

    standard_week(engine)
    data_errors.create(engine)
    etl_batches.create(engine)
    # The week's loads are those of the run that built it (the Sunday 02:00 run after the week), not the run
    # before it, whatever the clock said when they were written.
    inside, outside = dt.datetime(2026, 11, 22, 2, tzinfo=UTC), dt.datetime(2026, 11, 15, 2, tzinfo=UTC)
    written = dt.datetime(2026, 12, 1, 9, tzinfo=UTC)  # a late re-run: the wall clock is not the week
    snapshot = dict(asset_key="fct_workflow_run_weekly", status="SUCCESS", rows_in=30, rows_loaded=30,
                    rows_rejected=0, started_at=written, finished_at=written)
    with engine.begin() as conn:
        conn.execute(sa.insert(etl_batches), [
            dict(batch_id="b1", asset_key="stg_ows_project", status="SUCCESS", rows_in=10, rows_loaded=8,
                 rows_rejected=2, started_at=written, finished_at=written, run_id="run-week", as_of=inside,
                 watermark_from=None),
            dict(batch_id="b2", asset_key="stg_ows_project", status="FAILED", rows_in=None, rows_loaded=None,
                 rows_rejected=None, started_at=written, finished_at=written, run_id="run-week", as_of=None,
                 watermark_from=None),
            dict(batch_id="b0", asset_key="stg_ows_project", status="SUCCESS", rows_in=99, rows_loaded=99,
                 rows_rejected=0, started_at=written, finished_at=written, run_id="run-before", as_of=outside,
                 watermark_from=None),
            dict(snapshot, batch_id="f1", run_id="run-week", as_of=week().end_utc,
                 watermark_from=week().start_utc.isoformat()),
            dict(snapshot, batch_id="f0", run_id="run-before", as_of=week().start_utc,
                 watermark_from=week().previous().start_utc.isoformat()),
        ])
        conn.execute(sa.insert(data_errors), [
            dict(batch_id="b1", asset_key="stg_ows_project", record_key="1", field="project_code", value="=x",
                 rule="not_null", severity="ERROR", created_at=inside),
            dict(batch_id="b1", asset_key="stg_ows_project", record_key="2", field="project_code", value=None,
                 rule="not_null", severity="ERROR", created_at=inside),
            dict(batch_id="b1", asset_key="stg_ows_project", record_key="2", field="owner", value="",
                 rule="length", severity="WARNING", created_at=inside),
            dict(batch_id="b0", asset_key="stg_ows_project", record_key="3", field="owner", value="",
                 rule="length", severity="WARNING", created_at=outside),
        ])
    docs = tmp_path / "data_docs" / "local_site" / "index.html"
    docs.parent.mkdir(parents=True)
    docs.write_text("<html></html>")
    result = build_weekly_report(engine, week(), tmp_path / "r.xlsx", data_docs=docs)
    book = load(result.path)
    sheet = book["Data quality"]
    values = [[c for c in r] for r in sheet.iter_rows(values_only=True)]
    assert ["stg_ows_project", 2, 1, 10, 8, 2] == [v for v in values if v[0] == "stg_ows_project"][0][:6]
    assert ["stg_ows_project", "ERROR", 2, 2] in [v[:4] for v in values]
    assert ["stg_ows_project", "project_code", "not_null", "ERROR", 2] in [v[:5] for v in values]
    # A link to the build machine's files opens for nobody who reads the workbook: the sheet names them instead.
    assert "Data Docs on the pipeline host" in sheet["A2"].value
    links = [c.hyperlink.target for ws in book.worksheets for row in ws.iter_rows() for c in row
             if c.hyperlink and c.hyperlink.target]
    assert not [t for t in links if t.startswith("file:")]


def test_same_week_twice_gives_the_same_bytes_and_a_failed_run_keeps_the_old_file(engine, tmp_path):
    standard_week(engine)
    first = build_weekly_report(engine, week(), tmp_path / "a" / "ows.xlsx")
    second = build_weekly_report(engine, week(), tmp_path / "b" / "other-name.xlsx")
    assert first.sha256 == second.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE fct_workflow_run_weekly"))
    with pytest.raises(LookupError, match="materialize the asset fct_workflow_run_weekly"):
        build_weekly_report(engine, week(), first.path)
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["ows.xlsx"]  # no temporary file left


def test_summer_times_are_shown_in_local_time(engine, tmp_path):
    insert_facts(engine, [fact_row("2026-07-05", 1, begin_date=dt.datetime(2026, 7, 6, 12, tzinfo=UTC))])
    result = build_weekly_report(engine, ReportWeek.from_key("2026-07-05", "Europe/London"), tmp_path / "r.xlsx")
    sheet = load(result.path)["Latest snapshot"]
    header = [c.value for c in sheet[1]]
    assert sheet.cell(row=2, column=header.index("Begin") + 1).value == dt.datetime(2026, 7, 6, 13, 0)


# --------------------------------------------------------------------------- Dagster


def _materialize(assets, resources, partition=WEEK, instance=None):
    return dg.materialize(assets, resources=resources, partition_key=partition, instance=instance,
                          selection=[a.key for a in assets])


def test_report_asset_writes_the_week_file_with_metadata_and_the_same_sha_twice(ows_home, monkeypatch, tmp_path):
    from ows_pipeline.defs.reports.assets import ows_weekly_report
    from ows_pipeline.resources import WarehouseResource

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    warehouse = WarehouseResource(url=url)
    engine = warehouse.get_engine()  # creates the warehouse tables, the fact table included when declared
    standard_week(engine)
    with dg.DagsterInstance.ephemeral() as instance:
        shas = []
        for _ in range(2):
            result = _materialize([ows_weekly_report], {"warehouse": warehouse}, instance=instance)
            assert result.success
            (event,) = result.get_asset_materialization_events()
            metadata = event.materialization.metadata
            shas.append(metadata["sha256"].value)
    path = ows_home / "reports" / f"ows_weekly_{WEEK}.xlsx"
    assert metadata["path"].value == str(path) and path.exists()
    assert metadata["snapshot_rows"].value == 30 and metadata["size_bytes"].value == path.stat().st_size
    assert "| Runs | 30 | 30 | +0 |" in metadata["kpis"].value
    assert shas[0] == shas[1] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_lists_the_latest_asset_check_results(ows_home, tmp_path):
    from ows_pipeline.defs.reports.assets import ows_weekly_report
    from ows_pipeline.resources import WarehouseResource

    @dg.asset(name="stg_demo", check_specs=[dg.AssetCheckSpec("codes_not_null", asset="stg_demo")])
    def stg_demo():
        return dg.MaterializeResult(check_results=[
            dg.AssetCheckResult(check_name="codes_not_null", passed=False, severity=dg.AssetCheckSeverity.WARN)
        ])

    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.db'}")
    standard_week(warehouse.get_engine())
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([stg_demo], instance=instance).success
        result = dg.materialize([ows_weekly_report, stg_demo], resources={"warehouse": warehouse}, instance=instance,
                                partition_key=WEEK, selection=[ows_weekly_report.key])
    assert result.success
    sheet = load(ows_home / "reports" / f"ows_weekly_{WEEK}.xlsx")["Data quality"]
    rows = [r[:4] for r in sheet.iter_rows(values_only=True)]
    assert ("stg_demo", "codes_not_null", "failed", "WARN") in rows


def test_email_asset_is_skipped_with_a_clear_message_when_smtp_is_not_configured(ows_home):
    from ows_pipeline.defs.reports.assets import ows_weekly_report_email
    from ows_pipeline.resources import SmtpResource, WarehouseResource

    result = _materialize([ows_weekly_report_email], {"smtp": SmtpResource(), "warehouse": WarehouseResource()})
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["status"].value == "skipped"
    assert "OWS_SMTP_HOST and OWS_REPORT_RECIPIENTS not set" in metadata["reason"].value


def test_email_asset_sends_the_report_over_starttls_with_the_password_from_env(ows_home, monkeypatch, tmp_path):
    from ows_pipeline.defs.reports.assets import ows_weekly_report, ows_weekly_report_email
    from ows_pipeline.resources import SmtpResource, WarehouseResource
    from ows_pipeline_tests.test_email_delivery import (
        PASSWORD, USER, Mailbox, attachment_of, make_certificate, start_server,
    )

    certificate = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the test server's self-signed certificate
    monkeypatch.setenv("OWS_SMTP_PASSWORD", PASSWORD)
    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.db'}")
    standard_week(warehouse.get_engine())
    mailbox = Mailbox()
    controller = start_server(mailbox, certificate)
    try:
        smtp = SmtpResource(host="localhost", port=controller.port, user=USER, password=dg.EnvVar("OWS_SMTP_PASSWORD"),
                            from_addr="ows@bank.example", recipients="a@bank.example, b@refused.example")
        result = _materialize([ows_weekly_report, ows_weekly_report_email], {"warehouse": warehouse, "smtp": smtp})
    finally:
        controller.stop()
    assert result.success
    events = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    sent = events["ows_weekly_report_email"]
    path = ows_home / "reports" / f"ows_weekly_{WEEK}.xlsx"
    name, content = attachment_of(mailbox.messages[0])
    assert name == path.name and content == path.read_bytes()
    assert sent["status"].value == "sent" and sent["message_id"].value.startswith("<")
    assert sent["refused_recipients"].value == {"b@refused.example": "550 5.1.1 No such mailbox"}
    assert sent["report_sha256"].value == events["ows_weekly_report"]["sha256"].value
    assert PASSWORD not in str({k: v.value for k, v in sent.items()})


def test_email_asset_failure_fails_the_run_and_leaves_the_report_alone(ows_home, monkeypatch, tmp_path):
    from ows_pipeline.defs.reports.assets import ows_weekly_report, ows_weekly_report_email
    from ows_pipeline.resources import SmtpResource, WarehouseResource
    from ows_pipeline_tests.test_email_delivery import USER, Mailbox, make_certificate, start_server

    certificate = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.setenv("OWS_SMTP_PASSWORD", "not-the-password")
    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.db'}")
    standard_week(warehouse.get_engine())
    with dg.DagsterInstance.ephemeral() as instance:
        assert _materialize([ows_weekly_report], {"warehouse": warehouse}, instance=instance).success
        path = ows_home / "reports" / f"ows_weekly_{WEEK}.xlsx"
        before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        mailbox = Mailbox()
        controller = start_server(mailbox, certificate)
        try:
            smtp = SmtpResource(host="localhost", port=controller.port, user=USER,
                                password=dg.EnvVar("OWS_SMTP_PASSWORD"), recipients="a@bank.example")
            result = dg.materialize([ows_weekly_report, ows_weekly_report_email],
                                    resources={"warehouse": warehouse, "smtp": smtp}, instance=instance,
                                    partition_key=WEEK, selection=[ows_weekly_report_email.key], raise_on_error=False)
        finally:
            controller.stop()
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "OWS_SMTP_PASSWORD" in str(failure.step_failure_data.error.message)
    assert "not-the-password" not in str(failure.step_failure_data.error.to_string())
    assert mailbox.messages == []
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before


def test_report_definitions_wire_the_two_assets():
    from ows_pipeline.defs.reports.assets import defs
    from ows_pipeline.resources import SmtpResource, WarehouseResource

    resources = dg.Definitions(resources={"warehouse": WarehouseResource(), "smtp": SmtpResource()})
    graph = dg.Definitions.merge(defs, resources).resolve_asset_graph()
    report = graph.get(dg.AssetKey("ows_weekly_report"))
    email_node = graph.get(dg.AssetKey("ows_weekly_report_email"))
    assert report.group_name == email_node.group_name == "ows_reports"
    assert dg.AssetKey("fct_workflow_run_weekly") in report.parent_keys
    assert dg.AssetKey("ows_weekly_report") in email_node.parent_keys
    assert report.partitions_def is not None


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_report_from_postgresql_matches_the_sqlite_report(pg_url, sqlite_url, tmp_path):
    from ows_pipeline.resources import WarehouseResource

    pg = WarehouseResource(url=pg_url).get_engine()
    lite = WarehouseResource(url=sqlite_url).get_engine()  # the same warehouse tables on both
    for engine in (pg, lite):
        standard_week(engine)
        insert_facts(engine, [fact_row(WEEK, 99, project_name="=cmd|' /C calc'!A0", status="ERROR", is_failed=True)])
    from_pg = build_weekly_report(pg, week(), tmp_path / "pg.xlsx")
    from_lite = build_weekly_report(lite, week(), tmp_path / "lite.xlsx")
    assert from_pg.sheet_rows == from_lite.sheet_rows
    assert from_pg.kpis == from_lite.kpis
    assert from_pg.sha256 == from_lite.sha256, _diff_parts(from_pg.path, from_lite.path)


def _diff_parts(a: Path, b: Path) -> list[str]:
    za, zb = zipfile.ZipFile(a), zipfile.ZipFile(b)
    return [n for n in za.namelist() if za.read(n) != zb.read(n)]

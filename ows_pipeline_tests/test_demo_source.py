"""The demo OWS source: deterministic, internally consistent, advanceable week by week."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections import defaultdict

import pytest
import sqlalchemy as sa

from ows_pipeline.cli import main
from ows_pipeline.demo import runs as demo_runs
from ows_pipeline.demo import source as demo
from ows_pipeline.demo import writer as demo_writer
from ows_pipeline.demo.source import DemoSourceError, advance_demo, generate_demo
from ows_pipeline.source.schema import metadata

SMALL = dict(projects=3, feeds_per_project=5, workflows_per_project=3, runs_per_day=120)
# a Wednesday morning: many runs are open
BUSY = dt.datetime(2026, 10, 14, 7, 30, tzinfo=dt.timezone.utc)


def _naive(value):
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def dump(url: str, names: tuple[str, ...] | None = None) -> dict[str, list[tuple]]:
    """Every OWS table (or those named) ordered by its key, timestamps as naive UTC."""
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if names and table.name not in names:
                continue
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(_naive(v) for v in row) for row in rows]
    engine.dispose()
    return out


def records(url: str, table: str) -> list[dict]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [
            {k: _naive(v) for k, v in row.items()}
            for row in conn.execute(sa.select(metadata.tables[table])).mappings().all()
        ]
    engine.dispose()
    return rows


# a day of up to BLOCK_RUNS runs is drawn at once; 29 splits every weekday of SMALL into blocks
BLOCKS = {"one block a day": None, "blocks of 29 runs": 29}


@pytest.fixture(scope="module", params=list(BLOCKS))
def busy_source(request, tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'busy.db'}"
    with pytest.MonkeyPatch.context() as patch:
        if BLOCKS[request.param]:
            patch.setattr(demo_runs, "BLOCK_RUNS", BLOCKS[request.param])
        generate_demo(url, weeks=6, as_of=BUSY, **SMALL)
    return url


@pytest.fixture(params=list(BLOCKS))
def block_runs(request, monkeypatch) -> int:
    if BLOCKS[request.param]:
        monkeypatch.setattr(demo_runs, "BLOCK_RUNS", BLOCKS[request.param])
    return demo_runs.BLOCK_RUNS


def test_same_seed_same_rows_and_other_seed_other_rows(sqlite_url, sqlite_url_2, tmp_path, block_runs):
    generate_demo(sqlite_url, seed=7, weeks=2, as_of=BUSY, **SMALL)
    generate_demo(sqlite_url_2, seed=7, weeks=2, as_of=BUSY, **SMALL)
    first = dump(sqlite_url)
    assert first == dump(sqlite_url_2)
    assert len(first["ows_workflow_run"]) > 1000
    other = f"sqlite:///{tmp_path / 'other.db'}"
    generate_demo(other, seed=8, weeks=2, as_of=BUSY, **SMALL)
    different = dump(other)
    assert different["ows_workflow_run"] != first["ows_workflow_run"]
    assert different["ows_run_step_history"] != first["ows_run_step_history"]


def test_runs_are_consistent(busy_source):
    as_of = BUSY.replace(tzinfo=None)
    runs = records(busy_source, "ows_workflow_run")
    assert len(runs) > 3000
    for run in runs:
        is_open = run["end_date"] is None
        assert is_open == (run["status"] in ("ACTIVE", "SUSPEND")), run
        assert (run["result_code"] is None) == is_open, run
        assert run["begin_date"] <= run["last_update_date"] <= as_of, run
        if not is_open:
            assert run["begin_date"] <= run["end_date"] == run["last_update_date"], run
        counts = [run[c] for c in ("matched_cnt", "suggested_cnt", "unmatched_cnt")]
        assert all(c is None for c in counts) or all(c is not None and c >= 0 for c in counts), run
        if counts[0] is not None:
            assert run["records_loaded"] is not None and run["records_loaded"] >= sum(counts), run
        if run["result_code"] == "MATCHED":
            assert run["unmatched_cnt"] == 0 and run["suggested_cnt"] == 0
        if run["result_code"] == "BREAKS":
            assert run["unmatched_cnt"] > 0
    statuses = {r["status"] for r in runs}
    results = {r["result_code"] for r in runs}
    assert statuses == {"ACTIVE", "COMPLETE", "ERROR", "SUSPEND"}
    assert {"MATCHED", "BREAKS", "PARTIAL", "#FORCE", "#EXCEPTION", "#TIMEOUT", None} <= results
    by_id = {r["run_id"]: r for r in runs}
    reruns = [r for r in runs if r["parent_run_id"] is not None]
    assert reruns
    for rerun in reruns:
        parent = by_id[rerun["parent_run_id"]]
        assert parent["status"] == "ERROR" and parent["business_date"] == rerun["business_date"]
        assert parent["end_date"] < rerun["begin_date"]
    assert len({r["run_key"] for r in runs}) == len(runs)


def test_steps_and_history_agree(busy_source):
    runs = {r["run_id"]: r for r in records(busy_source, "ows_workflow_run")}
    steps = records(busy_source, "ows_run_step_status")
    history = sorted(records(busy_source, "ows_run_step_history"), key=lambda h: h["hist_id"])
    assert [h["hist_id"] for h in history] == list(range(1, len(history) + 1))
    at = [h["changed_at"] for h in history]
    assert at == sorted(at), "hist_id must increase with changed_at"
    per_step = defaultdict(list)
    for h in history:
        per_step[(h["run_id"], h["step_id"])].append(h)
    assert set(per_step) == {(s["run_id"], s["step_id"]) for s in steps}
    for step in steps:
        trail = per_step[(step["run_id"], step["step_id"])]
        assert trail[0]["from_status"] is None
        for before, after in zip(trail, trail[1:]):
            assert after["from_status"] == before["to_status"]
        assert trail[-1]["to_status"] == step["activity_status"]
        assert trail[-1]["changed_at"] == step["last_update_date"]
        assert trail[0]["changed_at"] == step["begin_date"]
        final = step["activity_status"] in ("COMPLETE", "ERROR")
        assert (step["end_date"] is not None) == final
        assert (step["error_name"] is not None) == (step["activity_status"] == "ERROR"), step
        run = runs[step["run_id"]]
        if run["end_date"] is not None:
            assert final, (run, step)
    in_error = {s["run_id"] for s in steps if s["activity_status"] == "ERROR"}
    assert {r for r, run in runs.items() if run["status"] == "ERROR"} <= in_error
    statuses = {s["activity_status"] for s in steps}
    assert {"COMPLETE", "ERROR", "ACTIVE", "WAITING", "NOTIFIED"} <= statuses
    assert any(h["changed_by"] != "WFENGINE" for h in history)


def test_references_resolve(busy_source):
    ids = {
        name: {row[key] for row in records(busy_source, name)}
        for name, key in (
            ("ows_project", "project_id"),
            ("ows_feed", "feed_id"),
            ("ows_match_process", "match_process_id"),
            ("ows_workflow", "workflow_id"),
            ("ows_workflow_step", "step_id"),
            ("ows_workflow_run", "run_id"),
        )
    }
    for feed in records(busy_source, "ows_feed"):
        assert feed["project_id"] in ids["ows_project"] and feed["side"] in ("SOURCE", "TARGET")
    for process in records(busy_source, "ows_match_process"):
        assert process["project_id"] in ids["ows_project"]
        assert {process["from_feed_id"], process["to_feed_id"]} <= ids["ows_feed"]
    workflows = records(busy_source, "ows_workflow")
    for workflow in workflows:
        assert workflow["project_id"] in ids["ows_project"]
    current = [w for w in workflows if w["end_date"] is None]
    assert len(current) == len({w["workflow_code"] for w in workflows})
    step_workflow = {}
    for step in records(busy_source, "ows_workflow_step"):
        assert step["workflow_id"] in ids["ows_workflow"]
        step_workflow[step["step_id"]] = step["workflow_id"]
        if step["step_type"] == "LOAD":
            assert step["feed_id"] in ids["ows_feed"]
        if step["step_type"] == "MATCH":
            assert step["match_process_id"] in ids["ows_match_process"]
    run_workflow = {}
    for run in records(busy_source, "ows_workflow_run"):
        assert run["workflow_id"] in ids["ows_workflow"]
        run_workflow[run["run_id"]] = run["workflow_id"]
    for step in records(busy_source, "ows_run_step_status"):
        assert step_workflow[step["step_id"]] == run_workflow[step["run_id"]]
    for h in records(busy_source, "ows_run_step_history"):
        assert h["run_id"] in ids["ows_workflow_run"] and h["step_id"] in ids["ows_workflow_step"]


def test_advancing_equals_generating_directly(sqlite_url, sqlite_url_2, block_runs):
    t1 = BUSY
    generate_demo(sqlite_url, weeks=3, as_of=t1, **SMALL)
    at_t1 = dump(sqlite_url)
    advance_demo(sqlite_url, t1 + dt.timedelta(days=2, hours=3, minutes=7))
    summary = advance_demo(sqlite_url)  # default: one week after the last as-of
    t2 = t1 + dt.timedelta(days=9, hours=3, minutes=7)
    assert summary.as_of == t2
    # same history start: one more week of history before the week of t2
    generate_demo(sqlite_url_2, weeks=4, as_of=t2, **SMALL)
    advanced, direct = dump(sqlite_url), dump(sqlite_url_2)
    for table in direct:
        assert advanced[table] == direct[table], table
    # the advance rewrote runs that were open at t1
    before = {row[0]: row for row in at_t1["ows_workflow_run"]}
    assert [row for row in advanced["ows_workflow_run"] if row[0] in before and row != before[row[0]]]
    history_t1 = len(at_t1["ows_run_step_history"])
    assert [h[0] for h in advanced["ows_run_step_history"][:history_t1]] == list(range(1, history_t1 + 1))


def test_late_commit_shows_an_update_older_than_the_previous_as_of(sqlite_url):
    """A late-committed run row appears after an as-of with a last_update_date before it."""
    monday = dt.datetime(2026, 10, 12, tzinfo=dt.timezone.utc)
    start = int(monday.timestamp())
    params = demo.DemoParams(42, SMALL["projects"], SMALL["feeds_per_project"], SMALL["workflows_per_project"],
                             SMALL["runs_per_day"], start)
    [(runs, _)] = demo.DaySimulator(params, start + 7 * 86400).day(start // 86400)
    # a late run with a transition followed by a quiet spell longer than its commit delay
    for i in map(int, (runs.late > 0).nonzero()[0]):
        first, count = runs.run_first_tr[i], runs.run_tr_count[i]
        at = runs.tr_at[first : first + count]
        quiet = [k for k in range(1, count) if (at[k + 1] if k + 1 < count else 2**62) - at[k] > runs.late[i] + 2]
        if quiet:
            run_id, changed = int(runs.run_id[i]), int(at[quiet[0]])
            break
    else:
        pytest.fail("no late run in the first day")
    t1 = dt.datetime.fromtimestamp(changed + 1, dt.timezone.utc)
    generate_demo(sqlite_url, weeks=0, as_of=t1, **SMALL)
    row = {r["run_id"]: r for r in records(sqlite_url, "ows_workflow_run")}[run_id]
    assert row["last_update_date"] < dt.datetime.fromtimestamp(changed, dt.timezone.utc).replace(tzinfo=None)
    history = [h for h in records(sqlite_url, "ows_run_step_history") if h["run_id"] == run_id]
    assert max(h["changed_at"] for h in history) > row["last_update_date"], "the steps are ahead of the run row"
    advance_demo(sqlite_url, t1 + dt.timedelta(seconds=int(runs.late[i]) + 1))
    row = {r["run_id"]: r for r in records(sqlite_url, "ows_workflow_run")}[run_id]
    assert row["last_update_date"] == dt.datetime.fromtimestamp(changed, dt.timezone.utc).replace(tzinfo=None)
    assert row["last_update_date"] < t1.replace(tzinfo=None)


def test_reference_data_changes_over_weeks(sqlite_url):
    generate_demo(sqlite_url, weeks=1, as_of=dt.datetime(2026, 6, 1, 12), runs_per_day=2, projects=8,
                  feeds_per_project=5, workflows_per_project=2)
    snapshots = []
    reference = ("ows_project", "ows_feed", "ows_match_process", "ows_workflow")
    for _ in range(14):
        snapshots.append({name: {r[0]: r for r in rows} for name, rows in dump(sqlite_url, reference).items()})
        advance_demo(sqlite_url)
    flag = {"ows_project": 5, "ows_feed": 7, "ows_match_process": 8}
    for table in ("ows_project", "ows_feed", "ows_match_process"):
        keys = [set(s[table]) for s in snapshots]
        gone = [k for i in range(1, len(keys)) for k in keys[i - 1] - keys[i]]
        back = [k for i in range(1, len(keys)) for k in keys[i] - keys[i - 1] if any(k in e for e in keys[:i])]
        assert gone, f"no {table} deleted"
        assert back, f"no {table} re-appeared"
        col = flag[table]
        reactivated = [
            k for i in range(1, len(snapshots)) for k, row in snapshots[i][table].items()
            if row[col] == "Y" and k in snapshots[i - 1][table] and snapshots[i - 1][table][k][col] == "N"
        ]
        deactivated = any(row[col] == "N" for s in snapshots for row in s[table].values())
        assert deactivated, f"no {table} deactivated"
        if table != "ows_match_process":
            assert reactivated, f"no {table} re-activated"
    # attribute edits bump updated_at
    edits = [
        (old, new) for i in range(1, len(snapshots)) for k, new in snapshots[i]["ows_feed"].items()
        if (old := snapshots[i - 1]["ows_feed"].get(k)) is not None and old != new
    ]
    assert edits and all(new[-1] > old[-1] for old, new in edits)
    # new workflow versions end the previous one
    first, last = snapshots[0]["ows_workflow"], snapshots[-1]["ows_workflow"]
    assert len(last) > len(first)
    for workflow in last.values():
        assert workflow[6] is None or workflow[6] > workflow[5]


@pytest.mark.postgres
def test_postgres_target_matches_sqlite(pg_url, sqlite_url):
    generate_demo(pg_url, weeks=2, as_of=BUSY, **SMALL)
    advance_demo(pg_url, BUSY + dt.timedelta(hours=30))
    generate_demo(sqlite_url, weeks=2, as_of=BUSY + dt.timedelta(hours=30), **SMALL)
    on_pg, on_sqlite = dump(pg_url), dump(sqlite_url)
    for table in on_sqlite:
        assert on_pg[table] == on_sqlite[table], table
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("ows_workflow_run")}
    engine.dispose()
    assert "ix_ows_workflow_run_lud" in indexes


@pytest.mark.postgres
def test_postgres_schema_holds_the_tables(pg_url):
    generate_demo(pg_url, weeks=0, as_of=BUSY, schema="ows_demo", **SMALL)
    advance_demo(pg_url, BUSY + dt.timedelta(hours=2), schema="ows_demo")
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert "ows_workflow_run" in inspector.get_table_names(schema="ows_demo")
        assert "ows_workflow_run" not in inspector.get_table_names(schema="public")
        runs = conn.execute(sa.text("select count(*) from ows_demo.ows_workflow_run")).scalar_one()
    engine.dispose()
    assert runs > 0


def test_bulk_writer_path_gives_the_same_rows(sqlite_url, sqlite_url_2, monkeypatch):
    """The path an advance and Oracle take (the warehouse bulk writer from native Arrow types) writes what
    ADBC ingest writes."""
    generate_demo(sqlite_url, weeks=1, as_of=BUSY, **SMALL)
    monkeypatch.setattr(demo_writer, "ADBC_DIALECTS", ())
    generate_demo(sqlite_url_2, weeks=1, as_of=BUSY, **SMALL)
    assert dump(sqlite_url) == dump(sqlite_url_2)


def test_statements_compile_for_oracle():
    """The generic path (Oracle) uses plain SQLAlchemy Core: DDL and deletes compile for Oracle."""
    from sqlalchemy.dialects import oracle
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = oracle.dialect()
    ddl = str(CreateTable(demo.ows_demo_state).compile(dialect=dialect))
    assert "TIMESTAMP WITH TIME ZONE" in ddl
    for table in metadata.sorted_tables:
        str(CreateTable(table).compile(dialect=dialect))
        for index in table.indexes:
            str(CreateIndex(index).compile(dialect=dialect))
    run = metadata.tables["ows_workflow_run"]
    sql = str(run.delete().where(run.c.run_id.in_([1, 2, 3])).compile(dialect=dialect))
    assert sql.startswith("DELETE FROM ows_workflow_run WHERE") and "LIMIT" not in sql.upper()


def test_refuses_to_replace_tables_it_did_not_make(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(DemoSourceError, match="refusing to replace"):
        generate_demo(sqlite_url, weeks=1, **SMALL)
    with pytest.raises(DemoSourceError, match="no ows_demo_state"):
        advance_demo(sqlite_url)


def test_cli_generates_and_advances(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    command = [sys.executable, "-m", "ows_pipeline.cli", "demo-source", "--url", url]
    done = subprocess.run(
        command + ["--weeks", "1", "--runs-per-day", "50", "--projects", "2", "--as-of", "2026-10-01T12:00"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ows_workflow_run" in done.stdout
    done = subprocess.run(command + ["--advance", "--as-of", "2026-10-03", "--quiet"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        as_of = conn.execute(sa.text("select as_of from ows_demo_state")).scalar_one()
    engine.dispose()
    assert str(as_of).startswith("2026-10-03 00:00:00")
    done = subprocess.run(command + ["--advance", "--as-of", "2026-09-01"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "cannot go back" in done.stderr


def test_cli_main_defaults_to_the_source_under_ows_home(ows_home, capsys):
    assert main(["demo-source", "--weeks", "1", "--runs-per-day", "20", "--projects", "1", "--quiet"]) == 0
    assert (ows_home / "ows_source.db").exists()
    assert main(["demo-source", "--as-of", "yesterday", "--quiet"]) == 2
    assert "not an ISO date" in capsys.readouterr().err
    assert main(["demo-source", "--advance", "--seed", "3"]) == 2


def test_as_of_now_writes_nothing_in_the_future(sqlite_url):
    summary = generate_demo(sqlite_url, weeks=1, **SMALL)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        latest = [
            conn.execute(sa.text(f"select max({column}) from {table}")).scalar_one()
            for table, column in (
                ("ows_workflow_run", "last_update_date"),
                ("ows_run_step_status", "last_update_date"),
                ("ows_run_step_history", "changed_at"),
                ("ows_feed", "updated_at"),
            )
        ]
    engine.dispose()
    assert summary.rows["ows_workflow_run"] > 0
    assert all(dt.datetime.fromisoformat(value) <= now for value in latest if value is not None)


def test_blocks_change_only_the_draws_of_a_busy_day(sqlite_url, sqlite_url_2, monkeypatch):
    """A day of up to BLOCK_RUNS runs is one block (the same rows as before blocks existed); a busier day
    is drawn in blocks: the same primary runs per day, other draws."""
    generate_demo(sqlite_url, weeks=1, as_of=BUSY, **SMALL)
    monkeypatch.setattr(demo_runs, "BLOCK_RUNS", 29)
    generate_demo(sqlite_url_2, weeks=1, as_of=BUSY, **SMALL)
    whole, blocks = dump(sqlite_url), dump(sqlite_url_2)
    assert whole["ows_workflow"] == blocks["ows_workflow"]
    primaries = {}
    for name, rows in (("whole", whole["ows_workflow_run"]), ("blocks", blocks["ows_workflow_run"])):
        per_day = defaultdict(int)
        for row in rows:
            if row[3] is None:  # parent_run_id: primaries only (reruns depend on the draws)
                per_day[row[4]] += 1
        primaries[name] = per_day
    assert primaries["whole"] == primaries["blocks"]
    assert whole["ows_workflow_run"] != blocks["ows_workflow_run"]

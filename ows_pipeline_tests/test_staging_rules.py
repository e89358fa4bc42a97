"""Row-level quarantine: a batch seeded with one known defect per rule type loses exactly those rows."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from ows_pipeline.staging.quarantine import stage_rows
from ows_pipeline.staging.suites import SUITES
from ows_pipeline.warehouse.schema import create_warehouse_tables

AS_OF = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.timezone.utc)
T0 = "2026-11-19T08:00:00Z"
T1 = "2026-11-19T09:30:00Z"


def valid_frames() -> dict[str, pd.DataFrame]:
    """A small, consistent OWS data set (every rule passes), as the extract would bring it."""
    project = pd.DataFrame({
        "project_id": [1, 2], "project_code": ["ALPHA", "BETA"], "project_name": ["Alpha", "Beta"],
        "business_unit": ["Markets", None], "owner": ["ops", "ops"], "active_flag": ["Y", "N"],
        "created_at": [T0, T0], "updated_at": [T1, T1],
    })
    feed = pd.DataFrame({
        "feed_id": [10, 11, 12], "project_id": [1, 1, 2], "feed_code": ["GL_SRC", "BANK_TGT", "GL_SRC"],
        "feed_name": ["GL", "Bank", "GL"], "source_system": ["SAP", "SWIFT", None],
        "side": ["SOURCE", "TARGET", "SOURCE"], "expected_schedule": ["daily", "daily", None],
        "active_flag": ["Y", "Y", "Y"], "created_at": [T0] * 3, "updated_at": [T1] * 3,
    })
    match_process = pd.DataFrame({
        "match_process_id": [100], "project_id": [1], "process_code": ["GL_BANK"], "process_name": ["GL to bank"],
        "from_feed_id": [10], "to_feed_id": [11], "rule_set_version": ["3.1"], "position": [1],
        "active_flag": ["Y"], "created_at": [T0], "updated_at": [T1],
    })
    workflow = pd.DataFrame({
        "workflow_id": [1000, 1001], "project_id": [1, 2], "workflow_code": ["WF_ALPHA", "WF_BETA"],
        "version": [1, 2], "workflow_name": ["Alpha daily", "Beta daily"], "begin_date": [T0, T0],
        "end_date": [None, None], "updated_at": [T1, T1],
    })
    workflow_step = pd.DataFrame({
        "step_id": [5000, 5001, 5002], "workflow_id": [1000, 1000, 1001], "step_label": ["Load", "Match", "Notify"],
        "step_type": ["LOAD", "MATCH", "NOTICE"], "feed_id": [10, None, None], "match_process_id": [None, 100, None],
        "seq": [1, 2, 1], "updated_at": [T1] * 3,
    })
    n = 20
    workflow_run = pd.DataFrame({
        "run_id": list(range(1, n + 1)),
        "workflow_id": [1000 if i % 2 else 1001 for i in range(n)],
        "run_key": [f"RUN-{i:03d}" for i in range(n)],
        "parent_run_id": [None] * n,
        "business_date": ["2026-11-19"] * n,
        "status": ["COMPLETE"] * (n - 2) + ["ACTIVE", "ACTIVE"],
        "result_code": ["MATCHED", "BREAKS", "PARTIAL", "#FORCE"] * (n // 4),
        "records_loaded": [100] * n, "matched_cnt": [90] * n, "suggested_cnt": [5] * n, "unmatched_cnt": [5] * n,
        "begin_date": [T0] * n,
        "end_date": [T1] * (n - 2) + [None, None],
        "last_update_date": [T1] * n,
    })
    run_step_status = pd.DataFrame({
        "run_id": [1, 1, 2], "step_id": [5000, 5001, 5002], "activity_status": ["COMPLETE", "ACTIVE", "COMPLETE"],
        "result_code": ["MATCHED", None, "#FORCE"], "assigned_user": ["amy", None, "bob"],
        "error_name": [None] * 3, "error_message": [None] * 3, "begin_date": [T0] * 3,
        "end_date": [T1, None, T1], "last_update_date": [T1] * 3,
    })
    run_step_history = pd.DataFrame({
        "hist_id": [1, 2, 3], "run_id": [1, 1, 2], "step_id": [5000, 5000, 5002],
        "from_status": [None, "ACTIVE", None], "to_status": ["ACTIVE", "COMPLETE", "COMPLETE"],
        "result_code": [None, "MATCHED", "#FORCE"], "changed_at": [T0, T1, T1], "changed_by": ["sys", "sys", "bob"],
    })
    return {
        "ows_project": project, "ows_feed": feed, "ows_match_process": match_process, "ows_workflow": workflow,
        "ows_workflow_step": workflow_step, "ows_workflow_run": workflow_run,
        "ows_run_step_status": run_step_status, "ows_run_step_history": run_step_history,
    }


STAGING_ORDER = ("ows_project", "ows_feed", "ows_match_process", "ows_workflow", "ows_workflow_step",
                 "ows_workflow_run", "ows_run_step_status", "ows_run_step_history")


def _errors(engine: sa.Engine, batch_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT row_number, record_key, field, value, rule, severity, source_file, message "
            "FROM data_errors WHERE batch_id = :b ORDER BY row_number, rule, field"), {"b": batch_id}).all()


def _stage_valid_parents(engine: sa.Engine, upto: str) -> None:
    frames = valid_frames()
    for name in STAGING_ORDER:
        if name == upto:
            return
        result = stage_rows(engine, name, frames[name], batch_id=f"seed-{name}", as_of=AS_OF)
        assert result.rejected == 0, (name, result.errors.to_dict("records"))


@pytest.fixture
def engine(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    create_warehouse_tables(engine)
    yield engine
    engine.dispose()


def test_valid_data_set_loads_completely(engine):
    frames = valid_frames()
    for name in STAGING_ORDER:
        result = stage_rows(engine, name, frames[name], batch_id=f"b-{name}", as_of=AS_OF)
        assert (result.rows_in, result.loaded, result.rejected) == (len(frames[name]), len(frames[name]), 0), name
        assert result.errors.empty, result.errors.to_dict("records")
        assert all(o.passed for o in result.check_results)


# (row number, field, value, rule) of every seeded defect; rows not listed must load.
RUN_DEFECTS = {
    2: {"run_id": 3},                       # duplicates row 3's key
    4: {"status": "done"},                  # not an allowed status (cleaned to DONE)
    5: {"result_code": "bad code"},         # fails the code format (and the known-codes WARN)
    6: {"matched_cnt": -1},                 # negative count
    7: {"end_date": "2026-11-19T07:00:00Z"},  # ends before it begins
    8: {"business_date": "2027-01-04"},     # in the future of the batch
    9: {"workflow_id": 999},                # unknown workflow
    10: {"run_key": "RUN-SHARED", "end_date": None, "status": "ACTIVE"},
    11: {"run_key": "RUN-SHARED", "end_date": None, "status": "ACTIVE"},
    12: {"records_loaded": "abc"},          # not a number
    13: {"run_key": None},                  # required
    14: {"run_key": "R" * 61},              # longer than VARCHAR(60)
    15: {"result_code": "NEWCODE"},         # unknown result code: WARN only, the row loads
    16: {"status": " complete "},           # trimmed and upper-cased: valid
}
RUN_EXPECTED_ERRORS = {
    (2, "run_id", "3", "unique_key"),
    (3, "run_id", "3", "unique_key"),
    (4, "status", "DONE", "allowed_status"),
    (5, "result_code", "BAD CODE", "result_code_format"),
    (6, "matched_cnt", "-1", "counts_not_negative"),
    (7, "end_date", "2026-11-19T07:00:00+0000", "end_date_after_begin_date"),
    (8, "business_date", "2027-01-04", "business_date_not_in_future"),
    (9, "workflow_id", "999", "run_workflow_exists"),
    (10, "run_key", "RUN-SHARED", "one_open_run_per_key"),
    (11, "run_key", "RUN-SHARED", "one_open_run_per_key"),
    (12, "records_loaded", "abc", "valid_type"),
    (13, "run_key", None, "not_null"),
    (14, "run_key", "R" * 61, "max_length"),
}
RUN_EXPECTED_WARNINGS = {
    (5, "result_code", "BAD CODE", "known_result_code"),
    (15, "result_code", "NEWCODE", "known_result_code"),
}


def seeded_runs() -> pd.DataFrame:
    runs = valid_frames()["ows_workflow_run"].astype(object)
    for row_number, changes in RUN_DEFECTS.items():
        for column, value in changes.items():
            runs.at[row_number - 1, column] = value
    return runs


def _check_seeded_runs(engine: sa.Engine) -> None:
    _stage_valid_parents(engine, "ows_workflow_run")
    runs = seeded_runs()
    result = stage_rows(engine, "ows_workflow_run", runs, batch_id="b-runs", as_of=AS_OF)

    errors = _errors(engine, "b-runs")
    got = {(r.row_number, r.field, r.value, r.rule) for r in errors if r.severity == "ERROR"}
    assert got == RUN_EXPECTED_ERRORS
    warned = {(r.row_number, r.field, r.value, r.rule) for r in errors if r.severity == "WARN"}
    assert warned == RUN_EXPECTED_WARNINGS
    assert {r.record_key for r in errors if r.row_number == 9} == {"run_id=9"}

    rejected_rows = {e[0] for e in RUN_EXPECTED_ERRORS}
    assert result.rejected == len(rejected_rows) == 13
    assert result.loaded == len(runs) - len(rejected_rows)
    assert result.rows_in == result.loaded + result.rejected == len(runs)
    with engine.connect() as conn:
        staged = pd.DataFrame(conn.execute(sa.text("SELECT run_id, status, result_code FROM stg_ows_workflow_run"))
                              .mappings().all())
        batch = conn.execute(sa.text(
            "SELECT rows_in, rows_loaded, rows_rejected, status, as_of FROM etl_batches WHERE batch_id = 'b-runs'"
        )).one()
    expected_ids = sorted(int(runs.at[i - 1, "run_id"]) for i in range(1, len(runs) + 1) if i not in rejected_rows)
    assert sorted(staged["run_id"]) == expected_ids
    assert staged.set_index("run_id").at[16, "status"] == "COMPLETE"
    assert staged.set_index("run_id").at[15, "result_code"] == "NEWCODE"
    assert (batch.rows_in, batch.rows_loaded, batch.rows_rejected, batch.status) == (20, 7, 13, "SUCCESS")
    assert batch.as_of is not None

    outcomes = {o.rule.name: o for o in result.check_results}
    assert outcomes["unique_key"].unexpected_count == 2
    assert outcomes["known_result_code"].unexpected_count == 2
    assert outcomes["allowed_status"].sample_values() == ["status=DONE"]
    assert {name for name, o in outcomes.items() if not o.passed} == {r for *_, r in RUN_EXPECTED_ERRORS} | {
        "known_result_code"}


def test_every_rule_type_quarantines_exactly_the_seeded_rows_sqlite(engine):
    _check_seeded_runs(engine)


@pytest.mark.postgres
def test_every_rule_type_quarantines_exactly_the_seeded_rows_postgres(pg_url):
    engine = sa.create_engine(pg_url)
    create_warehouse_tables(engine)
    try:
        _check_seeded_runs(engine)
    finally:
        engine.dispose()


def test_flags_codes_and_composite_uniques_on_parents(engine):
    frames = valid_frames()
    project = pd.concat([frames["ows_project"], pd.DataFrame({
        "project_id": [3, 4, 5], "project_code": ["alpha", "GAMMA!", "DELTA"], "project_name": ["x", "y", "z"],
        "business_unit": [None] * 3, "owner": [None] * 3, "active_flag": ["y", "N", "maybe"],
        "created_at": [T0] * 3, "updated_at": [T1] * 3,
    })], ignore_index=True).astype(object)
    result = stage_rows(engine, "ows_project", project, batch_id="b-p", as_of=AS_OF,
                        source_file="projects.csv", row_numbers=range(2, 7))
    got = {(r.row_number, r.field, r.value, r.rule, r.source_file) for r in _errors(engine, "b-p")}
    assert got == {
        (2, "project_code", "ALPHA", "unique_project_code", "projects.csv"),
        (4, "project_code", "ALPHA", "unique_project_code", "projects.csv"),
        (5, "project_code", "GAMMA!", "project_code_format", "projects.csv"),
        (6, "active_flag", "maybe", "valid_type", "projects.csv"),
    }
    assert (result.rows_in, result.loaded, result.rejected) == (5, 1, 4)
    with engine.connect() as conn:
        flags = dict(conn.execute(sa.text("SELECT project_id, active_flag FROM stg_ows_project")).all())
    assert {k: bool(v) for k, v in flags.items()} == {2: False}
    stage_rows(engine, "ows_project", frames["ows_project"], batch_id="b-p2", as_of=AS_OF)

    feed = frames["ows_feed"].astype(object)
    feed.loc[len(feed)] = [13, 1, "gl_src", "dup", None, "SOURCE", None, "Y", T0, T1]  # same (project, code) as 10
    feed.loc[len(feed)] = [14, 9, "ORPHAN", "x", None, "TARGET", None, "Y", T0, T1]  # project 9 is not staged
    feed.loc[len(feed)] = [15, 2, "SIDEWAYS", "x", None, "MIDDLE", None, "Y", T0, T1]
    stage_rows(engine, "ows_feed", feed, batch_id="b-f", as_of=AS_OF)
    got = {(r.row_number, r.field, r.value, r.rule) for r in _errors(engine, "b-f")}
    assert got == {
        (1, "project_id,feed_code", "1,GL_SRC", "unique_feed_code"),
        (4, "project_id,feed_code", "1,GL_SRC", "unique_feed_code"),
        (5, "project_id", "9", "feed_project_exists"),
        (6, "side", "MIDDLE", "allowed_side"),
    }


def test_incremental_upsert_replaces_the_key_and_counts_staged_open_runs(engine):
    _stage_valid_parents(engine, "ows_workflow_run")
    runs = valid_frames()["ows_workflow_run"]
    stage_rows(engine, "ows_workflow_run", runs, batch_id="r1", as_of=AS_OF)
    # Run 19 is open as RUN-018; a new open run with that key conflicts with the staged one,
    # while run 20 closing and coming back updated is a plain upsert.
    later = pd.DataFrame([runs.iloc[19].to_dict(), runs.iloc[0].to_dict()]).astype(object)
    later.loc[0, ["end_date", "status", "result_code"]] = [T1, "COMPLETE", "MATCHED"]
    later.loc[1, ["run_id", "run_key", "end_date", "status"]] = [21, "RUN-018", None, "ACTIVE"]
    result = stage_rows(engine, "ows_workflow_run", later, batch_id="r2", as_of=AS_OF)
    assert [(r.row_number, r.rule) for r in _errors(engine, "r2")] == [(2, "one_open_run_per_key")]
    assert (result.loaded, result.rejected, result.staged_rows) == (1, 1, 20)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, _batch_id FROM stg_ows_workflow_run WHERE run_id = 20")).one()
    assert tuple(row) == ("COMPLETE", "r2")


def test_missing_column_names_the_table_and_columns(engine):
    frame = valid_frames()["ows_project"].drop(columns=["owner"])
    with pytest.raises(ValueError, match=r"ows_project: missing column\(s\) owner"):
        stage_rows(engine, "ows_project", frame, batch_id="b", as_of=AS_OF)


def test_every_suite_has_the_generic_rules_and_known_kinds():
    kinds = {"not_null", "valid_type", "max_length", "unique", "allowed_values", "code_format", "min_value",
             "not_before", "not_in_future", "references", "one_open_per_key", "display_length"}
    for name, rules in SUITES.items():
        assert {"valid_type", "not_null", "max_length", "unique_key"} <= {r.name for r in rules}, name
        assert {r.kind for r in rules} <= kinds
        assert all(r.severity in ("ERROR", "WARN") for r in rules)
        assert all(r.severity == "WARN" for r in rules if r.kind == "display_length")

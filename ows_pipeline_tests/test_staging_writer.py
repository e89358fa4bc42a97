"""The column-wise bulk writer round-trips every staging type, nulls and COPY's special characters."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from ows_pipeline.staging.clean import clean_frame
from ows_pipeline.staging.quarantine import stage_rows
from ows_pipeline.warehouse.schema import create_warehouse_tables

UTC = dt.timezone.utc


def _statuses() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": [1, 2, 3], "step_id": [10, 10, 11],
        "activity_status": ["COMPLETE", "ERROR", "ACTIVE"],
        "result_code": ["MATCHED", None, None],
        "assigned_user": ["o'brien", None, "back\\slash"],
        "error_name": [None, "E_TAB", None],
        "error_message": [None, "line one\nline two\ttabbed\r\nend", ""],
        "begin_date": ["2026-11-19T08:00:00.123456Z", "2026-11-19T10:00:00+01:00", None],
        "end_date": ["2026-11-19T09:00:00Z", "2026-11-19T09:30:00Z", None],
        "last_update_date": ["2026-11-19T09:00:00Z"] * 3,
    })


def _round_trip(engine: sa.Engine) -> None:
    create_warehouse_tables(engine)
    frame = _statuses()
    # The referential rules need the parent run and step rows.
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO stg_ows_workflow_step (step_id, workflow_id, step_label, step_type, seq, "
                             "updated_at, _batch_id) VALUES (10, 1, 's', 'LOAD', 1, '2026-01-01', 'x'), "
                             "(11, 1, 't', 'LOAD', 2, '2026-01-01', 'x')"))
        conn.execute(sa.text("INSERT INTO stg_ows_workflow_run (run_id, workflow_id, run_key, business_date, status, "
                             "begin_date, last_update_date, _batch_id) VALUES "
                             "(1, 1, 'a', '2026-11-19', 'COMPLETE', '2026-11-19', '2026-11-19', 'x'), "
                             "(2, 1, 'b', '2026-11-19', 'COMPLETE', '2026-11-19', '2026-11-19', 'x'), "
                             "(3, 1, 'c', '2026-11-19', 'COMPLETE', '2026-11-19', '2026-11-19', 'x')"))
    result = stage_rows(engine, "ows_run_step_status", frame, batch_id="w1", as_of=dt.datetime(2026, 11, 20, tzinfo=UTC))
    assert (result.loaded, result.rejected) == (3, 0), result.errors.to_dict("records")
    table = sa.Table("stg_ows_run_step_status", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.run_id)).mappings().all()
    assert rows[0]["assigned_user"] == "o'brien" and rows[2]["assigned_user"] == "back\\slash"
    assert rows[1]["error_message"] == "line one\nline two\ttabbed\r\nend"
    assert rows[2]["error_message"] is None  # empty text is cleaned to null
    assert rows[1]["result_code"] is None and rows[2]["begin_date"] is None
    begin = rows[0]["begin_date"]
    begin = begin if begin.tzinfo else begin.replace(tzinfo=UTC)
    assert begin == dt.datetime(2026, 11, 19, 8, 0, 0, 123456, tzinfo=UTC)
    second = rows[1]["begin_date"]
    second = second if second.tzinfo else second.replace(tzinfo=UTC)
    assert second == dt.datetime(2026, 11, 19, 9, 0, tzinfo=UTC)  # +01:00 normalised to UTC
    assert {r["_batch_id"] for r in rows} == {"w1"}
    clean, issues = clean_frame(pd.DataFrame(rows), "ows_run_step_status")
    assert not issues and clean["run_id"].tolist() == [1, 2, 3]


def test_round_trip_sqlite(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    try:
        _round_trip(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_round_trip_postgres(pg_url):
    engine = sa.create_engine(pg_url)
    try:
        _round_trip(engine)
    finally:
        engine.dispose()

"""A small, hand-written OWS source for extraction tests (the demo generator makes big ones)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from ows_pipeline.source import schema as s
from ows_pipeline.warehouse.bulk import insert_rows

UTC = dt.timezone.utc


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


def build_small_source(url: str, runs: int = 50, now: dt.datetime | None = None) -> sa.Engine:
    """Create the OWS tables at `url` and fill them with `runs` runs, all updated before `now`."""
    now = now or utc_now()
    start = now - dt.timedelta(days=10)
    engine = sa.create_engine(url)
    s.metadata.create_all(engine)
    rows: dict[sa.Table, list[tuple]] = {
        s.ows_project: [(1, "PRJ_A", "Project A", "Ops", "alice", "Y", start, start),
                        (2, "PRJ_B", "Project =B", "Ops", "bob", "N", start, start)],
        s.ows_feed: [(10, 1, "FEED_SRC", "Source feed", "GL", "SOURCE", "daily 06:00", "Y", start, start),
                     (11, 1, "FEED_TGT", "Target feed", "BANK", "TARGET", "daily 07:00", "Y", start, start)],
        s.ows_match_process: [(100, 1, "MP_1", "GL vs bank", 10, 11, "v1", 1, "Y", start, start)],
        s.ows_workflow: [(1000, 1, "WF_DAILY", 1, "Daily match", start, None, start)],
        s.ows_workflow_step: [(5000, 1000, "Load GL", "LOAD", 10, None, 1, start),
                              (5001, 1000, "Match", "MATCH", None, 100, 2, start)],
    }
    runs_rows, status_rows, hist_rows = [], [], []
    hist_id = 0
    for i in range(runs):
        begin = start + dt.timedelta(minutes=10 * i)
        end = begin + dt.timedelta(minutes=5)
        updated = end + dt.timedelta(seconds=i)
        runs_rows.append((i + 1, 1000, f"RK{i:05d}", None, begin.date(), "COMPLETE", "MATCHED",
                          100, 90, 5, 5, begin, end, updated))
        for step in (5000, 5001):
            status_rows.append((i + 1, step, "COMPLETE", "OK", "ows", None, "line\twith\\tab\nnewline" if i == 0 else None,
                                begin, end, updated))
            hist_id += 1
            hist_rows.append((hist_id, i + 1, step, "ACTIVE", "COMPLETE", "OK", end, "ows"))
    rows[s.ows_workflow_run] = runs_rows
    rows[s.ows_run_step_status] = status_rows
    rows[s.ows_run_step_history] = hist_rows
    with engine.begin() as conn:
        for table, values in rows.items():
            insert_rows(conn, table, [c.name for c in table.columns], values)
    return engine


def add_run(engine: sa.Engine, run_id: int, last_update: dt.datetime, hist_id: int | None = None) -> None:
    """Insert one more run (and a history row) as a source transaction would commit it."""
    begin = last_update - dt.timedelta(minutes=5)
    with engine.begin() as conn:
        insert_rows(conn, s.ows_workflow_run, [c.name for c in s.ows_workflow_run.columns],
                    [(run_id, 1000, f"RK{run_id:05d}", None, begin.date(), "ACTIVE", None,
                      0, 0, 0, 0, begin, None, last_update)])
        if hist_id is not None:
            insert_rows(conn, s.ows_run_step_history, [c.name for c in s.ows_run_step_history.columns],
                        [(hist_id, run_id, 5000, None, "ACTIVE", None, last_update, "ows")])

"""Killing the process during a merge (a real `kill -9` of a subprocess, at several points) leaves
the invariants true and the dimension exactly as it was before that merge; the next merge works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ows_pipeline.scd2 import invariant_violations, merge_scd2, scd2_batches
from ows_pipeline_tests.test_scd2_model import (
    SPEC,
    Batch,
    clear_tables,
    create_tables,
    engine_history,
    hours,
    reference_history,
)

ROOT = Path(__file__).resolve().parents[1]

BEFORE = [
    Batch(10, True, ((1, "a", 1), (2, "b", 1), (3, "c", None))),
    Batch(30, True, ((1, "a", 2), (2, "b", 1), (4, "d", 0))),
]
IN_ORDER = Batch(40, True, ((1, "z", 2), (3, "c", None), (5, "e", 1)))
LATE = Batch(20, True, ((1, "x", 9), (4, "d", 0)))

CHILD = r"""
import sys, time
import sqlalchemy as sa
from ows_pipeline.scd2 import merge_scd2
from ows_pipeline_tests.test_scd2_model import SPEC, Batch, hours

url, when, pattern, as_of, full, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1", eval(sys.argv[6])
engine = sa.create_engine(url)

def pause(label):
    print("PAUSED " + label, flush=True)
    time.sleep(120)

if when == "after":
    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().startswith(pattern):
            pause(pattern)
else:
    @sa.event.listens_for(engine, "commit")
    def _commit(conn):
        pause("commit")

batch = Batch(as_of, full, rows)
merge_scd2(engine, SPEC, batch.records(), hours(as_of), full=full, batch_id="crash")
print("FINISHED", flush=True)
"""

POINTS = [
    ("in_order", "after", "INSERT INTO _scd2_changes"),
    ("in_order", "after", "UPDATE dim_thing"),
    ("in_order", "after", "INSERT INTO dim_thing"),
    ("in_order", "commit", ""),
    ("out_of_order", "after", "INSERT INTO _scd2_hist"),
    ("out_of_order", "after", "DELETE FROM dim_thing"),
    ("out_of_order", "after", "INSERT INTO dim_thing"),
    ("out_of_order", "commit", ""),
]


def _state(engine):
    with engine.connect() as conn:
        return (
            engine_history(conn),
            conn.execute(sa.select(scd2_batches.c.batch_id).where(scd2_batches.c.dimension == SPEC.name).order_by(scd2_batches.c.batch_id)).all(),
            conn.execute(sa.select(SPEC.seen_table)).all(),
        )


def _kill_during_merge(url: str, path: str, when: str, pattern: str):
    engine = sa.create_engine(url)
    create_tables(engine)
    clear_tables(engine)
    for b in BEFORE:
        merge_scd2(engine, SPEC, b.records(), hours(b.as_of), full=b.full, batch_id=f"b{b.as_of}")
    before = _state(engine)
    batch = IN_ORDER if path == "in_order" else LATE
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, when, pattern, str(batch.as_of), "1" if batch.full else "0", repr(batch.rows)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("PAUSED"), (line, child.stderr.read() if child.poll() is not None else "")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    time.sleep(0.2)
    engine.dispose()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert not any(invariant_violations(conn, SPEC).values())
    assert _state(engine) == before, f"the killed merge ({path}, {when} {pattern}) left changes behind"
    # the same merge then runs to completion and gives the reference history
    merge_scd2(engine, SPEC, batch.records(), hours(batch.as_of), full=batch.full, batch_id="crash")
    with engine.connect() as conn:
        assert engine_history(conn) == reference_history(BEFORE + [batch])
    engine.dispose()


@pytest.mark.parametrize("path,when,pattern", POINTS)
def test_kill_9_during_merge_sqlite(tmp_path, path, when, pattern):
    _kill_during_merge(f"sqlite:///{tmp_path / 'crash.db'}", path, when, pattern)


@pytest.mark.postgres
@pytest.mark.parametrize("path,when,pattern", [POINTS[2], POINTS[3], POINTS[5], POINTS[7]])
def test_kill_9_during_merge_postgres(pg_url, path, when, pattern):
    _kill_during_merge(pg_url, path, when, pattern)

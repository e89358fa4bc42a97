"""Property-based tests: random sequences of full and partial batches (deletes, resurrections,
duplicate keys, NULLs, out-of-order as-of times, several batches sharing one as-of, re-runs of
committed batches in any position) give the reference model's history, on SQLite and PostgreSQL
(one PostgreSQL session in a non-UTC time zone); every load order gives the model's history of
that order, the same history whenever batches sharing an as-of keep their order; re-running any
batch changes nothing anywhere (dimension, logs, `data_errors`, `etl_batches`)."""

from __future__ import annotations

import itertools
import random

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ows_pipeline.scd2 import invariant_violations, merge_scd2, scd2_batches
from ows_pipeline.warehouse.schema import data_errors, etl_batches
from ows_pipeline_tests.test_scd2_model import (
    SPEC,
    Batch,
    clear_tables,
    create_tables,
    fast_sqlite_engine,
    engine_history,
    hours,
    load_order,
    reference_history,
)

row = st.tuples(
    st.integers(0, 5),
    st.sampled_from([None, "x", "y", "Y"]),
    st.sampled_from([None, 0, 1, 2]),
)
batch_rows = st.lists(row, min_size=0, max_size=7).map(tuple)


@st.composite
def batch_sequences(draw, max_batches=6):
    n = draw(st.integers(1, max_batches))
    times = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n, unique=True))
    return [Batch(t, draw(st.booleans()), draw(batch_rows)) for t in times]


def load(engine: sa.Engine, batches) -> None:
    for b in batches:
        merge_scd2(engine, SPEC, b.records(), hours(b.as_of), full=b.full, batch_id=b.batch_id)


def assert_matches_reference(engine: sa.Engine, batches) -> None:
    with engine.connect() as conn:
        got = engine_history(conn)
        violations = invariant_violations(conn, SPEC)
    assert got == reference_history(batches)
    assert not any(violations.values()), violations


_settings = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check_any_order(engine, batches):
    clear_tables(engine)
    load(engine, batches)
    assert_matches_reference(engine, batches)
    # re-running the last batch changes nothing
    with engine.connect() as conn:
        before = engine_history(conn)
    load(engine, batches[-1:])
    with engine.connect() as conn:
        assert engine_history(conn) == before


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory):
    engine = fast_sqlite_engine(f"sqlite:///{tmp_path_factory.mktemp('scd2') / 'prop.db'}")
    yield engine
    engine.dispose()


@settings(max_examples=60, **_settings)
@given(batches=batch_sequences())
def test_history_equals_reference_in_any_order_sqlite(sqlite_engine, batches):
    _check_any_order(sqlite_engine, batches)


@pytest.mark.slow
@settings(max_examples=600, **_settings)
@given(batches=batch_sequences(max_batches=9))
def test_history_equals_reference_many_examples_sqlite(sqlite_engine, batches):
    _check_any_order(sqlite_engine, batches)


@pytest.fixture(scope="module")
def pg_engine():
    from ows_pipeline_tests.conftest import create_pg_database, drop_pg_database

    url = create_pg_database("ows_scd2_prop")
    engine = sa.create_engine(url)
    create_tables(engine)
    yield engine
    engine.dispose()
    drop_pg_database(url)


@pytest.mark.postgres
@settings(max_examples=15, **_settings)
@given(batches=batch_sequences())
def test_history_equals_reference_in_any_order_postgres(pg_engine, batches):
    _check_any_order(pg_engine, batches)


@pytest.mark.postgres
@pytest.mark.slow
@settings(max_examples=150, **_settings)
@given(batches=batch_sequences(max_batches=9))
def test_history_equals_reference_many_examples_postgres(pg_engine, batches):
    _check_any_order(pg_engine, batches)


def _check_shuffled(engine, batches, seed):
    clear_tables(engine)
    load(engine, sorted(batches, key=lambda b: b.as_of))
    with engine.connect() as conn:
        in_order = engine_history(conn)
    shuffled = list(batches)
    random.Random(seed).shuffle(shuffled)
    clear_tables(engine)
    load(engine, shuffled)
    with engine.connect() as conn:
        assert engine_history(conn) == in_order


@settings(max_examples=25, **_settings)
@given(batches=batch_sequences(max_batches=8), seed=st.integers(0, 10_000))
def test_shuffled_order_gives_identical_tables_sqlite(sqlite_engine, batches, seed):
    _check_shuffled(sqlite_engine, batches, seed)


@pytest.mark.postgres
@settings(max_examples=8, **_settings)
@given(batches=batch_sequences(max_batches=8), seed=st.integers(0, 10_000))
def test_shuffled_order_gives_identical_tables_postgres(pg_engine, batches, seed):
    _check_shuffled(pg_engine, batches, seed)


# ---------------------------------------------------------------- batches sharing an as-of, re-runs


@st.composite
def shared_as_of_sequences(draw, max_batches=6, reruns=2):
    """Batches on a few as-of times (so several share one), duplicates among their rows, and
    re-runs of committed batches inserted anywhere after their first load."""
    n = draw(st.integers(1, max_batches))
    batches = [Batch(draw(st.integers(1, 3)) * 10, draw(st.booleans()), draw(batch_rows), tag=f"_{i}") for i in range(n)]
    seq = list(batches)
    for r in draw(st.lists(st.integers(0, n - 1), max_size=reruns)):
        first = seq.index(batches[r])
        seq.insert(draw(st.integers(first + 1, len(seq))), batches[r])
    return seq


def _everything(engine) -> tuple:
    """The dimension and every log the merges write, for "changes nothing anywhere"."""
    with engine.connect() as conn:
        return (
            engine_history(conn),
            conn.execute(sa.select(scd2_batches.c.batch_id, scd2_batches.c.as_of, scd2_batches.c.is_full)
                         .where(scd2_batches.c.dimension == SPEC.name).order_by(scd2_batches.c.batch_id)).all(),
            sorted(conn.execute(sa.select(SPEC.seen_table)).all()),
            conn.execute(sa.select(data_errors.c.batch_id, data_errors.c.row_number, data_errors.c.rule)
                         .where(data_errors.c.asset_key == SPEC.name)
                         .order_by(data_errors.c.batch_id, data_errors.c.row_number)).all(),
            conn.execute(sa.select(etl_batches.c.batch_id, etl_batches.c.rows_in, etl_batches.c.rows_rejected)
                         .where(etl_batches.c.asset_key == SPEC.name).order_by(etl_batches.c.batch_id)).all(),
        )


def _check_shared_as_of(engine, seq, rerun_at):
    clear_tables(engine)
    load(engine, seq)
    assert_matches_reference(engine, seq)
    state = _everything(engine)
    loaded = load_order(seq)
    assert [r[0] for r in state[1]] == sorted(b.batch_id for b in loaded)
    expected_errors = sum(len([k for k, _, _ in b.rows if k in b.duplicated()]) for b in loaded)
    assert len(state[3]) == expected_errors, "each quarantined row is in data_errors exactly once"
    # re-running any committed batch changes nothing anywhere
    load(engine, [loaded[rerun_at % len(loaded)]])
    assert _everything(engine) == state


@settings(max_examples=30, **_settings)
@given(seq=shared_as_of_sequences(), rerun_at=st.integers(0, 10))
def test_batches_sharing_an_as_of_and_reruns_sqlite(sqlite_engine, seq, rerun_at):
    _check_shared_as_of(sqlite_engine, seq, rerun_at)


@pytest.fixture(scope="module")
def pg_engine_local_time():
    """A PostgreSQL warehouse whose sessions run in a time zone far from UTC."""
    from ows_pipeline_tests.conftest import create_pg_database, drop_pg_database

    url = create_pg_database("ows_scd2_tz")
    engine = sa.create_engine(url, connect_args={"options": "-c timezone=Asia/Kolkata"})
    create_tables(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Kolkata"
    yield engine
    engine.dispose()
    drop_pg_database(url)


@pytest.mark.postgres
@settings(max_examples=12, **_settings)
@given(seq=shared_as_of_sequences(), rerun_at=st.integers(0, 10))
def test_batches_sharing_an_as_of_and_reruns_postgres_local_time(pg_engine_local_time, seq, rerun_at):
    _check_shared_as_of(pg_engine_local_time, seq, rerun_at)


def _check_every_permutation(engine, batches):
    by_order: dict = {}
    for perm in itertools.permutations(batches):
        clear_tables(engine)
        load(engine, perm)
        assert_matches_reference(engine, list(perm))
        with engine.connect() as conn:
            history = engine_history(conn)
        # batches sharing an as-of are applied in load order: orders that keep it give one history
        signature = tuple(b.batch_id for b in sorted(perm, key=lambda b: b.as_of))
        assert by_order.setdefault(signature, history) == history


@settings(max_examples=6, **_settings)
@given(seq=shared_as_of_sequences(max_batches=4, reruns=0))
def test_every_permutation_gives_the_reference_history_sqlite(sqlite_engine, seq):
    _check_every_permutation(sqlite_engine, seq)


@pytest.mark.postgres
@settings(max_examples=3, **_settings)
@given(seq=shared_as_of_sequences(max_batches=3, reruns=0))
def test_every_permutation_gives_the_reference_history_postgres(pg_engine_local_time, seq):
    _check_every_permutation(pg_engine_local_time, seq)

"""Property-based tests: random sequences of full and partial batches (deletes, resurrections,
duplicate keys, NULLs, out-of-order as-of times) give the reference model's history, on SQLite and
PostgreSQL; any load order gives the same dimension; re-running a batch changes nothing."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ows_pipeline.scd2 import invariant_violations, merge_scd2
from ows_pipeline_tests.test_scd2_model import (
    SPEC,
    Batch,
    clear_tables,
    create_tables,
    fast_sqlite_engine,
    engine_history,
    hours,
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
        merge_scd2(engine, SPEC, b.records(), hours(b.as_of), full=b.full, batch_id=f"b{b.as_of}")


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

"""Values round-trip exactly through the SCD2 merge on SQLite and PostgreSQL, whatever their pandas
dtype: text that looks like NULL or holds separators, integers above 2^53 next to NULLs, decimals of
different scales, aware and naive timestamps, and a PostgreSQL session in a non-UTC time zone. The
stored `row_hash` equals the Python `row_hashes` of the same values, and the same values given in
another dtype open no version."""

from __future__ import annotations

import datetime as dt
import decimal

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ows_pipeline.scd2 import declare_dimension, merge_scd2, row_hashes
from ows_pipeline.warehouse.schema import create_warehouse_tables

UTC = dt.timezone.utc
values_metadata = sa.MetaData()
VALUES = declare_dimension(
    name="dim_value",
    sk="value_sk",
    key_columns=[sa.Column("value_id", sa.Integer)],
    attribute_columns=[
        sa.Column("text", sa.Text),
        sa.Column("big", sa.BigInteger),
        sa.Column("flag", sa.Boolean),
        sa.Column("amount", sa.Numeric(20, 6)),
        sa.Column("at", sa.TIMESTAMP(timezone=True)),
    ],
    tracked=("text", "big", "flag", "amount", "at"),
    updated_at=None,
    metadata=values_metadata,
)
HOSTILE = ["\\N", "NULL", "", "\t", "a\tb", "line\nbreak", "cr\rlf\r\n", "back\\slash", '"quoted"', "'single'",
           "semi;colon,comma", "ünïcødé ✓ 日本", "\x1f", "3:abc", None]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'values.db'}")
        url = None
    else:
        from ows_pipeline_tests.conftest import create_pg_database

        url = create_pg_database("ows_scd2_values")
        engine = sa.create_engine(url, connect_args={"options": "-c timezone=America/Los_Angeles"})
    create_warehouse_tables(engine)
    values_metadata.create_all(engine)
    yield engine
    engine.dispose()
    if url:
        from ows_pipeline_tests.conftest import drop_pg_database

        drop_pg_database(url)


def _stored(engine):
    d = VALUES.table
    with engine.connect() as conn:
        rows = conn.execute(sa.select(d.c.value_id, d.c.text, d.c.big, d.c.flag, d.c.amount, d.c.at, d.c.row_hash)
                            .where(d.c.is_current).order_by(d.c.value_id)).all()
    return [(r[0], r[1], r[2], None if r[3] is None else bool(r[3]),
             None if r[4] is None else decimal.Decimal(str(r[4])).normalize(),
             None if r[5] is None else (r[5].replace(tzinfo=UTC) if r[5].tzinfo is None else r[5].astimezone(UTC)),
             r[6]) for r in rows]


def _frame(n):
    """Rows 1..n with hostile text, big integers beside NULLs, decimals, timestamps after many NULLs."""
    big = [None if i % 3 == 0 else 2**53 + i for i in range(n)]
    at = [None] * 60 + [dt.datetime(2026, 3, 1, 12, 30, 15, 123456) + dt.timedelta(hours=i) for i in range(n - 60)]
    return pd.DataFrame({
        "value_id": range(1, n + 1),
        "text": [HOSTILE[i % len(HOSTILE)] for i in range(n)],
        "big": pd.array(big, dtype="Int64"),
        "flag": pd.array([None if i % 4 == 0 else i % 2 == 0 for i in range(n)], dtype="boolean"),
        "amount": [None if i % 5 == 0 else decimal.Decimal(f"{i}.50") for i in range(n)],
        "at": at[:n],
    })


def _expected(frame):
    out = []
    hashes = row_hashes(frame, VALUES.tracked, VALUES.table)
    for r, h in zip(frame.astype(object).where(frame.notna(), None).itertuples(index=False), hashes):
        amount = None if r.amount is None else decimal.Decimal(r.amount).normalize()
        at = None if r.at is None else pd.Timestamp(r.at).to_pydatetime().replace(tzinfo=UTC)
        out.append((r.value_id, r.text, None if r.big is None else int(r.big), r.flag, amount, at, h))
    return out


def test_values_round_trip_exactly_and_hash_as_in_python(engine):
    frame = _frame(80)
    merge_scd2(engine, VALUES, frame, dt.datetime(2026, 4, 1, tzinfo=UTC))
    assert _stored(engine) == _expected(frame)


def _other_dtypes(frame):
    """The same values as a caller with other readers would pass them."""
    return pd.DataFrame({
        "value_id": frame["value_id"].astype(object),
        "text": frame["text"].astype("string"),
        "big": frame["big"].astype(object).where(frame["big"].notna(), None),
        "flag": frame["flag"].astype(object).where(frame["flag"].notna(), None),
        "amount": [None if v is None else float(v) if i % 2 else decimal.Decimal(v).quantize(decimal.Decimal("0.000"))
                   for i, v in enumerate(frame["amount"])],
        "at": pd.to_datetime(frame["at"]).dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin"),
    })


def test_the_same_values_in_other_dtypes_open_no_version(engine):
    frame = _frame(80)
    merge_scd2(engine, VALUES, frame, dt.datetime(2026, 4, 1, tzinfo=UTC))
    again = merge_scd2(engine, VALUES, _other_dtypes(frame), dt.datetime(2026, 4, 2, tzinfo=UTC))
    assert (again.opened, again.closed, again.unchanged) == (0, 0, 80)
    assert _stored(engine) == _expected(frame)


def test_a_change_beyond_2_53_beside_nulls_is_seen_and_stored_exactly(engine):
    rows = pd.DataFrame({"value_id": [1, 2], "big": pd.array([2**53, None], dtype="Int64"), "text": ["a", None],
                         "flag": [True, None], "amount": [None, None], "at": [None, None]})
    merge_scd2(engine, VALUES, rows, dt.datetime(2026, 4, 1, tzinfo=UTC))
    rows["big"] = pd.array([2**53 + 1, None], dtype="Int64")
    stats = merge_scd2(engine, VALUES, rows, dt.datetime(2026, 4, 2, tzinfo=UTC))
    assert stats.opened == 1
    assert [r[2] for r in _stored(engine)] == [2**53 + 1, None]


def test_a_float_above_2_53_in_an_integer_column_is_refused_with_the_row():
    from ows_pipeline.scd2 import Scd2Error

    rows = pd.DataFrame({"value_id": [1, 2], "big": [1.0, float(2**60)]})
    with pytest.raises(Scd2Error, match=r"row 2, column big: .*above 2\^53.*Int64"):
        row_hashes(rows, ["big"], VALUES.table)


@st.composite
def texts(draw):
    return draw(st.one_of(st.sampled_from(HOSTILE), st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                                                                     blacklist_characters="\x00"),
                                                         max_size=30)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(texts(), min_size=1, max_size=12))
def test_any_text_round_trips_and_hashes_as_in_python(engine, values):
    with engine.begin() as conn:
        for t in (VALUES.table, VALUES.seen_table):
            conn.execute(t.delete())
        conn.exec_driver_sql("DELETE FROM scd2_batches WHERE dimension = 'dim_value'")
    n = len(values)
    frame = pd.DataFrame({"value_id": range(1, n + 1), "text": pd.Series(values, dtype=object), "big": [None] * n,
                          "flag": [None] * n, "amount": [None] * n, "at": [None] * n})
    merge_scd2(engine, VALUES, frame, dt.datetime(2026, 4, 1, tzinfo=UTC))
    stored = _stored(engine)
    assert [r[1] for r in stored] == values
    assert [r[6] for r in stored] == row_hashes(frame, VALUES.tracked, VALUES.table)

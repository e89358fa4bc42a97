"""The one bulk path: every value round-trips exactly through every reader and writer, on both warehouses.

Expected values are computed here from the Python inputs (UTC instants, exact integers, text
unchanged), never read back from the code under test.
"""

from __future__ import annotations

import datetime as dt
import decimal

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from ows_pipeline.extract.extraction import ExtractOptions, extract_table
from ows_pipeline.source import schema as s
from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.warehouse.bulk import arrow_schema, insert_rows, read_batches, write_arrow, write_frame
from ows_pipeline.warehouse.schema import RAW_TABLES, create_warehouse_tables

UTC = dt.timezone.utc
BIG = 2**53 + 1
LONG = ("x\\N\t\n\"'é" * 12_500)[:100_000]
TEXTS = ["\\N", "NULL", "", "a\tb", "line1\nline2\r\nline3", "back\\slash", 'say "hi"', "it's", "\\.", "né € 😀 日本",
         " ", "\\", "\r", ",", None]
STAMPS = [
    dt.datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(2026, 3, 29, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
    dt.datetime(1999, 12, 31, 23, 59, 59, 1),  # naive: UTC
    None,
]


def _utc(value):
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _engine(kind: str, sqlite_url: str, pg_url: str) -> sa.Engine:
    return sa.create_engine(sqlite_url if kind == "sqlite" else pg_url)


probe = sa.Table(
    "bulk_probe", sa.MetaData(),
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("txt", sa.Text),
    sa.Column("n", sa.BigInteger),
    sa.Column("ts", sa.TIMESTAMP(timezone=True)),
    sa.Column("day", sa.Date),
    sa.Column("flag", sa.Boolean),
)


def _probe_rows() -> list[tuple]:
    texts = TEXTS + [LONG]
    numbers = [BIG, -BIG, 0, -1, 2**63 - 1, None]
    days = [dt.date(2026, 2, 28), dt.date(1970, 1, 1), None]
    flags = [True, False, None]
    return [
        (i, texts[i % len(texts)], numbers[i % len(numbers)], STAMPS[i % len(STAMPS)], days[i % len(days)], flags[i % len(flags)])
        for i in range(len(texts) * 2)
    ]


def _expected(rows: list[tuple]) -> list[tuple]:
    return [(i, t, n, _utc(ts), d, f) for i, t, n, ts, d, f in rows]


def _read_probe(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(probe).order_by(probe.c.id)).all()
    return [(i, t, n, _utc(ts), d, None if f is None else bool(f)) for i, t, n, ts, d, f in rows]


def _core_insert(engine: sa.Engine, table: sa.Table, rows: list[dict]) -> None:
    """The independent writer: SQLAlchemy Core, one parameter set per row. On SQLite it would drop a
    timestamp's offset (SQLAlchemy stores the wall time), so SQLite sources get UTC values, as OWS has."""
    if engine.dialect.name == "sqlite":
        rows = [{k: _utc(v) if isinstance(v, dt.datetime) else v for k, v in r.items()} for r in rows]
    with engine.begin() as conn:
        conn.execute(sa.insert(table), rows)


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_insert_rows_round_trips_every_value(kind, sqlite_url, pg_url):
    engine = _engine(kind, sqlite_url, pg_url)
    probe.metadata.create_all(engine)
    rows = _probe_rows()
    with engine.begin() as conn:
        if kind == "postgres":  # the session's time zone is never consulted
            conn.exec_driver_sql("SET TIME ZONE 'America/New_York'")
        assert insert_rows(conn, probe, [c.name for c in probe.columns], rows) == len(rows)
    assert _read_probe(engine) == _expected(rows)
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_write_frame_round_trips_every_dtype_with_missing_values(kind, sqlite_url, pg_url):
    engine = _engine(kind, sqlite_url, pg_url)
    probe.metadata.create_all(engine)
    rows = _probe_rows()
    n = len(rows)
    frame = pd.DataFrame({
        "id": pd.array([r[0] for r in rows], dtype="Int64"),
        "txt": pd.array([r[1] for r in rows], dtype="string"),
        "n": pd.array([r[2] for r in rows], dtype="Int64"),
        "ts": pd.to_datetime([_utc(r[3]) for r in rows], utc=True),
        "day": pd.to_datetime([r[4] for r in rows]),
        "flag": pd.array([r[5] for r in rows], dtype="boolean"),
    })
    assert frame["n"].iloc[0] == BIG  # nullable Int64 keeps 2^53 + 1
    kinds = {"id": "int", "txt": "str", "n": "int", "ts": "timestamp", "day": "date"}
    with engine.begin() as conn:
        if kind == "postgres":
            conn.exec_driver_sql("SET TIME ZONE 'Asia/Kolkata'")
        assert write_frame(conn, probe, frame, kinds, {"flag": True}) == n
    assert _read_probe(engine) == [(i, t, v, ts, d, True) for i, t, v, ts, d, _ in _expected(rows)]
    with engine.begin() as conn:
        conn.execute(sa.delete(probe))
        # object columns, naive timestamps (UTC) and a boolean with missing values
        plain = pd.DataFrame({
            "id": [r[0] for r in rows], "txt": pd.Series([r[1] for r in rows], dtype=object),
            "n": pd.Series([r[2] for r in rows], dtype=object),
            "ts": pd.Series([None if r[3] is None else _utc(r[3]).replace(tzinfo=None) for r in rows], dtype="datetime64[us]"),
            "day": pd.Series([r[4] for r in rows], dtype=object), "flag": pd.array([r[5] for r in rows], dtype="boolean"),
        })
        write_frame(conn, probe, plain, {**kinds, "flag": "flag"})
    assert _read_probe(engine) == _expected(rows)
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("source_kind,target_kind", [("sqlite", "postgres"), ("postgres", "sqlite"),
                                                     ("sqlite", "sqlite"), ("postgres", "postgres")])
def test_read_batches_into_write_arrow_copies_every_value(source_kind, target_kind, sqlite_url, sqlite_url_2, pg_url, pg_url_2):
    """The generic path (Arrow batches from any reader, written by the one writer), with tiny batches."""
    urls = {("sqlite", 0): sqlite_url, ("sqlite", 1): sqlite_url_2, ("postgres", 0): pg_url, ("postgres", 1): pg_url_2}
    source, target = sa.create_engine(urls[source_kind, 0]), sa.create_engine(urls[target_kind, 1])
    for engine in (source, target):
        probe.metadata.create_all(engine)
    rows = _probe_rows()
    _core_insert(source, probe, [dict(zip(probe.columns.keys(), r)) for r in rows])
    with source.connect() as sconn, target.begin() as tconn:
        batches = list(read_batches(sconn, sa.select(probe), arrow_schema(probe), batch_rows=4))
        assert len(batches) == -(-len(rows) // 4) or source_kind == "postgres"  # COPY batches by bytes
        assert all(b.schema == arrow_schema(probe) for b in batches)
        assert write_arrow(tconn, probe, iter(batches)) == len(rows)
    assert _read_probe(target) == _expected(rows)
    source.dispose()
    target.dispose()


def test_arrow_schema_types_every_value_once():
    schema = arrow_schema(probe)
    assert schema.field("n").type == pa.int64()
    assert schema.field("ts").type == pa.timestamp("us", "UTC")
    assert schema.field("day").type == pa.date32()


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_decimals_and_temporary_tables(kind, sqlite_url, pg_url):
    engine = _engine(kind, sqlite_url, pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE tmp_keys (k BIGINT, amount NUMERIC(20, 4), note TEXT)")
        insert_rows(conn, "tmp_keys", ["k", "amount", "note"],
                    [(BIG, decimal.Decimal("1.5000"), "\\N"), (None, None, None), (-BIG, decimal.Decimal("-0.0001"), "")])
        got = conn.exec_driver_sql("SELECT k, amount, note FROM tmp_keys ORDER BY k").all()
    got = sorted(got, key=lambda r: (r[0] is None, r[0] or 0))
    assert [r[0] for r in got] == [-BIG, BIG, None]
    assert [None if r[1] is None else decimal.Decimal(str(r[1])) for r in got] == [
        decimal.Decimal("-0.0001"), decimal.Decimal("1.5"), None]
    assert [r[2] for r in got] == ["", "\\N", None]
    engine.dispose()


# ---------------------------------------------------------------- extraction through the generic path

STATUS = SOURCE_TABLES_BY_NAME["ows_run_step_status"]
LONG_2000 = ("tab\there \\N \"q\" é\n" * 200)[:2000]  # the column's declared length


def _fits(text: str | None, length: int) -> str | None:
    return text if text is None or len(text) <= length else None


def _status_rows() -> list[dict]:
    texts = TEXTS + [LONG_2000]
    ids = [0, -1, 2**31 - 1, -(2**31), 7]
    return [
        {
            "run_id": ids[i % len(ids)], "step_id": i, "activity_status": "COMPLETE", "result_code": _fits(text, 30),
            "assigned_user": _fits(texts[-1 - i], 100), "error_name": _fits(text, 100), "error_message": text,
            "begin_date": STAMPS[i % len(STAMPS)], "end_date": STAMPS[(i + 1) % len(STAMPS)],
            "last_update_date": dt.datetime(2026, 1, 1, 12, 0, i, 123456, tzinfo=UTC),
        }
        for i, text in enumerate(texts)
    ]


def _raw_status(engine: sa.Engine) -> list[tuple]:
    raw = RAW_TABLES["ows_run_step_status"]
    cols = [c for c in raw.columns if not c.name.startswith("_")]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*cols).order_by(raw.c.run_id, raw.c.step_id)).all()
    return [tuple(_utc(v) if isinstance(v, dt.datetime) else v for v in row) for row in rows]


@pytest.mark.postgres
def test_generic_extraction_gives_the_rows_of_the_postgres_copy_path(sqlite_url, sqlite_url_2, pg_url, pg_url_2, tmp_path):
    """SQLite -> PostgreSQL and PostgreSQL -> SQLite (Arrow batches) equal PostgreSQL -> PostgreSQL (COPY pipe)."""
    rows = _status_rows()
    expected = sorted(
        (tuple(_utc(r[c.name]) if isinstance(r[c.name], dt.datetime) else r[c.name] for c in s.ows_run_step_status.columns)
         for r in rows),
        key=lambda r: (r[0], r[1]),
    )
    sources = {}
    for kind, url in (("sqlite", sqlite_url), ("postgres", pg_url)):
        engine = sa.create_engine(url)
        s.ows_run_step_status.create(engine)
        _core_insert(engine, s.ows_run_step_status, rows)
        sources[kind] = engine
    third = f"sqlite:///{tmp_path / 'third.sqlite'}"
    results = {}
    for source_kind, warehouse_url in (("postgres", pg_url_2), ("sqlite", pg_url_2), ("postgres", sqlite_url_2), ("sqlite", third)):
        warehouse = sa.create_engine(warehouse_url)
        create_warehouse_tables(warehouse)
        with warehouse.begin() as conn:
            conn.execute(sa.delete(RAW_TABLES["ows_run_step_status"]))
            conn.exec_driver_sql("DELETE FROM etl_batches")
        result = extract_table(sources[source_kind], warehouse, STATUS, ExtractOptions(chunk_rows=3))
        assert result.rows_loaded == len(rows)
        results[source_kind, warehouse.dialect.name] = _raw_status(warehouse)
        warehouse.dispose()
    copy_path = results["postgres", "postgresql"]
    assert copy_path == expected
    assert results["sqlite", "postgresql"] == copy_path
    assert results["postgres", "sqlite"] == copy_path
    assert results["sqlite", "sqlite"] == copy_path
    for engine in sources.values():
        engine.dispose()

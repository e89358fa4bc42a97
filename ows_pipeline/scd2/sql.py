"""SQL building blocks shared by the merges: locking, key matches, intervals, the batch log's bounds."""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence

import sqlalchemy as sa

from ows_pipeline.scd2.hashing import register_sqlite_functions
from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, Scd2Error, scd2_batches


def dimension_lock_id(name: str) -> int:
    """The PostgreSQL advisory lock id serialising merges of one dimension."""
    return zlib.crc32(f"scd2:{name}".encode())


def _lock(conn: sa.Connection, spec: DimensionSpec) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": dimension_lock_id(spec.name)})
        # whatever the session says: naive timestamps are UTC, float text is exact
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        conn.exec_driver_sql("SET LOCAL extra_float_digits = 1")
        # the merge's statements are short; compiling them (JIT) costs seconds and gains nothing
        conn.exec_driver_sql("SET LOCAL jit = off")
    elif dialect == "sqlite":
        register_sqlite_functions(conn)
        if not conn.in_transaction():
            # The warehouse engine's begin hook emits BEGIN IMMEDIATE (ows_pipeline.resources).
            conn.begin()
        if not conn.connection.dbapi_connection.in_transaction:
            # A plain pysqlite engine begins lazily (and DEFERRED); take the write lock up front instead.
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _utc(value: dt.datetime) -> dt.datetime:
    import pandas as pd
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, dt.datetime):
        raise Scd2Error(f"as_of must be a datetime, not {value!r}")
    return as_utc(value)


def _key_match(a, b, keys: Sequence[str]):
    return sa.and_(*[a.c[k] == b.c[k] for k in keys])


def _in_interval(t, version):
    """`version` (a dim row) covers time `t`."""
    return sa.and_(version.c.valid_from <= t, sa.or_(version.c.valid_to.is_(None), t < version.c.valid_to))


def _observed_by(spec: DimensionSpec, keyed, log):
    """The full batch `log` (a `scd2_batches` row) observed the key of `keyed`: it did not quarantine it."""
    seen = spec.seen_table
    quarantined = sa.exists().where(
        _key_match(seen, keyed, spec.natural_key), seen.c.batch_id == log.c.batch_id, sa.not_(seen.c.observed)
    )
    return ~quarantined.correlate_except(seen)


def _full_observed_at(spec: DimensionSpec, keyed, t):
    """Some full batch at `t` observed the key of `keyed` (batches sharing an as-of are each asked)."""
    log = scd2_batches.alias("log_at")
    return (
        sa.exists()
        .where(log.c.dimension == spec.name, log.c.is_full, log.c.as_of == t, _observed_by(spec, keyed, log))
        .correlate_except(log)
    )


def _log_bound(spec: DimensionSpec, agg, version):
    """min/max as-of of full batches inside `version`'s interval (a correlated scalar subquery)."""
    log = scd2_batches
    return (
        sa.select(agg(log.c.as_of))
        .where(
            log.c.dimension == spec.name,
            log.c.is_full,
            _in_interval(log.c.as_of, version),
            _observed_by(spec, version, log),
        )
        .scalar_subquery()
    )


def _near_full(spec: DimensionSpec, keyed, before: bool, t):
    """The full batch nearest to `t` (before or after it) that observed `keyed`'s key."""
    log = scd2_batches
    agg = sa.func.max if before else sa.func.min
    side = log.c.as_of < t if before else log.c.as_of > t
    return (
        sa.select(agg(log.c.as_of))
        .where(log.c.dimension == spec.name, log.c.is_full, side, _observed_by(spec, keyed, log))
        .scalar_subquery()
    )


def _count(conn: sa.Connection, stmt) -> int:
    result = conn.execute(stmt)
    return max(result.rowcount or 0, 0)

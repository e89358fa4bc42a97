"""`merge_scd2`: merge one batch of one entity into its SCD2 dimension, in one transaction.

History is a function of the *set* of batches, not of their load order; see docs/scd2.md.
A batch newer than everything loaded takes the in-order path (`in_order`), an older one is
slotted into history (`out_of_order`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Optional, Union

import sqlalchemy as sa

from ows_pipeline.scd2.batch import DuplicateKeyError, StagedBatch, _create_temps, _drop_temps, _temps, _Temps, stage_batch
from ows_pipeline.scd2.in_order import _merge_in_order
from ows_pipeline.scd2.out_of_order import _merge_out_of_order
from ows_pipeline.scd2.sql import _lock, _utc
from ows_pipeline.scd2.stats import MergeStats
from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.batches import new_batch_id, record_batch, utc_now
from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.ledger import data_errors, etl_batches
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, Scd2Error, scd2_batches

if TYPE_CHECKING:
    import pandas as pd


def _log_scalars(conn: sa.Connection, spec: DimensionSpec):
    """The newest as-of merged into the dimension, and the newest of a full batch."""
    log = scd2_batches
    mine = log.c.dimension == spec.name
    row = conn.execute(
        sa.select(
            sa.select(sa.func.max(log.c.as_of)).where(mine).scalar_subquery(),
            sa.select(sa.func.max(log.c.as_of)).where(mine, log.c.is_full).scalar_subquery(),
        )
    ).one()
    return [None if v is None else as_utc(v) for v in row]


def _write_errors(conn: sa.Connection, errors: list[dict], batch_id: str, asset_key: str, source_file) -> None:
    """The batch's rejected rows in `data_errors`, replacing any this batch wrote before (a re-run adds none)."""
    rules = sorted({e["rule"] for e in errors})
    conn.execute(
        data_errors.delete().where(
            data_errors.c.batch_id == batch_id, data_errors.c.asset_key == asset_key, data_errors.c.rule.in_(rules)
        )
    )
    now = utc_now()
    rows = [dict(e, batch_id=batch_id, asset_key=asset_key, source_file=source_file, severity="ERROR", created_at=now)
            for e in errors]
    conn.execute(sa.insert(data_errors), rows)


def merge_scd2(
    target: Union[sa.Engine, sa.Connection],
    spec: DimensionSpec,
    rows: Union[sa.Select, pd.DataFrame, Iterable[Mapping]],
    as_of: dt.datetime,
    *,
    full: bool = True,
    batch_id: Optional[str] = None,
    on_duplicate: str = "quarantine",
    source_file: Optional[str] = None,
    asset_key: Optional[str] = None,
    record_etl_batch: bool = True,
    source: Optional[str] = None,
    key_unique: bool = False,
) -> MergeStats:
    """Merge one batch of `spec`'s entity into its SCD2 dimension; see docs/scd2.md.

    `target`: an Engine (the merge commits its own transaction) or a Connection (the merge runs in
    the caller's transaction, which the caller commits). `rows`: a SQLAlchemy `Select` read where it
    lies (e.g. the staging table), or a DataFrame or dicts; columns named like the dimension's,
    carrying the natural key and tracked columns (SCD1 / untracked columns optional). `full=True`:
    keys absent from the batch are deletions. `on_duplicate`: 'quarantine' (duplicate keys go to
    `data_errors`, the rest merges) or 'fail' (raise `DuplicateKeyError`; the errors are still
    recorded). A batch id merged before is a re-run: it changes nothing (`path='rerun'`).
    `key_unique=True`: the query in `rows` cannot hold a key twice or a NULL key (e.g. a staging
    table's unique index), so that search is skipped.
    """
    if on_duplicate not in ("quarantine", "fail"):
        raise Scd2Error(f"on_duplicate must be 'quarantine' or 'fail', not {on_duplicate!r}")
    as_of = _utc(as_of)
    batch_id = batch_id or new_batch_id()
    asset_key = asset_key or spec.asset_key
    stats = MergeStats(batch_id=batch_id)

    def run(conn: sa.Connection) -> None:
        _lock(conn, spec)
        if _check_batch_id(conn, spec, batch_id, as_of, full, stats, asset_key):
            return
        temps = _temps(spec)
        _create_temps(conn, temps, spec)
        batch = stage_batch(conn, spec, temps, rows, key_unique=key_unique and isinstance(rows, sa.Select))
        stats.rows_in, stats.rejected = batch.rows_in, len(batch.errors)
        if batch.errors and on_duplicate == "fail":
            _drop_temps(conn, temps)
            raise DuplicateKeyError(
                f"{spec.name}: batch {batch_id} rejected, {len(batch.errors)} row(s) with a duplicate or missing "
                f"natural key; first: {batch.errors[0]['message']}",
                batch.errors,
            )
        if batch.errors:
            _write_errors(conn, batch.errors, batch_id, asset_key, source_file)
        _merge(conn, spec, temps, batch, as_of, full, batch_id, stats)
        _drop_temps(conn, temps)
        if record_etl_batch:
            exists = conn.execute(sa.select(etl_batches.c.batch_id).where(etl_batches.c.batch_id == batch_id)).first()
            if not exists:
                record_batch(
                    conn,
                    batch_id=batch_id,
                    asset_key=asset_key,
                    source=source or source_file,
                    mode="full" if full else "partial",
                    as_of=as_of,
                    rows_in=stats.rows_in,
                    rows_loaded=stats.rows_in - stats.rejected,
                    rows_rejected=stats.rejected,
                    status="SUCCESS",
                    message=f"{stats.path}: opened {stats.opened}, closed {stats.closed}, "
                    f"tombstoned {stats.tombstoned}, unchanged {stats.unchanged}",
                )

    try:
        if isinstance(target, sa.Engine):
            with target.connect() as conn:
                try:
                    run(conn)
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
        else:
            run(target)
    except DuplicateKeyError as exc:
        # the batch is refused, its errors are kept: in their own transaction, or the caller's
        if isinstance(target, sa.Engine):
            with target.begin() as conn:
                _write_errors(conn, exc.errors, batch_id, asset_key, source_file)
        else:
            _write_errors(target, exc.errors, batch_id, asset_key, source_file)
        raise
    return stats


def _merge(conn: sa.Connection, spec: DimensionSpec, temps: _Temps, batch: StagedBatch, as_of, full: bool,
           batch_id: str, stats: MergeStats) -> None:
    last_any, last_full = _log_scalars(conn, spec)
    if last_any is None or as_of > last_any:
        _merge_in_order(conn, spec, temps, batch, as_of, last_full, full, batch_id, stats)
    else:
        _merge_out_of_order(conn, spec, temps, batch, as_of, full, batch_id, stats)
    _log_batch(conn, spec, temps, batch, batch_id, as_of, full)


def _check_batch_id(conn: sa.Connection, spec: DimensionSpec, batch_id: str, as_of, full: bool, stats: MergeStats,
                    asset_key: str) -> bool:
    """True when this very batch was merged before (a re-run, which changes nothing); a reused id with
    another as-of is refused."""
    log = scd2_batches
    logged = conn.execute(
        sa.select(log.c.as_of, log.c.is_full, log.c.rows_in).where(log.c.dimension == spec.name, log.c.batch_id == batch_id)
    ).first()
    if logged is None:
        return False
    if as_utc(logged.as_of) != as_of or bool(logged.is_full) != full:
        raise Scd2Error(
            f"{spec.name}: batch id {batch_id} was merged before with as-of {logged.as_of} "
            f"({'full' if logged.is_full else 'partial'}); give a different batch a new batch id."
        )
    stats.path = "rerun"
    stats.rows_in = int(logged.rows_in or 0)
    stats.rejected = int(conn.execute(
        sa.select(sa.func.count()).where(data_errors.c.batch_id == batch_id, data_errors.c.asset_key == asset_key)
    ).scalar() or 0)
    return True


def _log_batch(conn, spec, temps: _Temps, batch: StagedBatch, batch_id, as_of, full) -> None:
    """The batch log: full batches observe every key but the ones they quarantined (logged per
    batch); partial batches are remembered key by key."""
    conn.execute(
        sa.insert(scd2_batches).values(
            dimension=spec.name, batch_id=batch_id, as_of=as_of, is_full=full, rows_in=batch.rows_in, merged_at=utc_now()
        )
    )
    if (batch.skipped if full else batch.observed) == 0:
        return
    seen, keys = spec.seen_table, spec.natural_key
    source = temps.skip if full else batch.source
    t = sa.bindparam("t", as_of, type_=TS)
    b = sa.bindparam("batch_id", batch_id, type_=sa.String(40))
    conn.execute(
        seen.insert().from_select(
            list(keys) + ["batch_id", "as_of", "observed"],
            sa.select(*[source.c[k] for k in keys], b, t, sa.literal(not full, sa.Boolean)),
        )
    )

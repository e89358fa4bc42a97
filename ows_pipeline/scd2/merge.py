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

from ows_pipeline.scd2.batch import DuplicateKeyError, _as_frame, _create_temps, _drop_temps, _split_rejects, _stage_rows, _temps, _Temps
from ows_pipeline.scd2.hashing import row_hashes
from ows_pipeline.scd2.in_order import _merge_in_order
from ows_pipeline.scd2.out_of_order import _merge_out_of_order
from ows_pipeline.scd2.sql import _key_match, _lock, _utc
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


def _write_errors(conn: sa.Connection, spec: DimensionSpec, errors: list[dict], batch_id: str, asset_key: str, source_file):
    now = utc_now()
    for e in errors:
        e.update(batch_id=batch_id, asset_key=asset_key, source_file=source_file, severity="ERROR", created_at=now)
    if errors:
        conn.execute(sa.insert(data_errors), errors)


def merge_scd2(
    target: Union[sa.Engine, sa.Connection],
    spec: DimensionSpec,
    rows: Union[pd.DataFrame, Iterable[Mapping]],
    as_of: dt.datetime,
    *,
    full: bool = True,
    batch_id: Optional[str] = None,
    on_duplicate: str = "quarantine",
    source_file: Optional[str] = None,
    asset_key: Optional[str] = None,
    record_etl_batch: bool = True,
    source: Optional[str] = None,
) -> MergeStats:
    """Merge one batch of `spec`'s entity into its SCD2 dimension; see the module docstring.

    `target`: an Engine (the merge commits its own transaction) or a Connection (the merge runs in
    the caller's transaction, which the caller commits). `rows`: a DataFrame or dicts carrying the
    natural key and tracked columns (SCD1 / untracked columns optional). `full=True`: keys absent
    from the batch are deletions. `on_duplicate`: 'quarantine' (duplicate keys go to `data_errors`,
    the rest merges) or 'fail' (raise `DuplicateKeyError`; the errors are still recorded).
    """
    if on_duplicate not in ("quarantine", "fail"):
        raise Scd2Error(f"on_duplicate must be 'quarantine' or 'fail', not {on_duplicate!r}")
    as_of = _utc(as_of)
    batch_id = batch_id or new_batch_id()
    asset_key = asset_key or spec.asset_key
    frame = _as_frame(spec, rows)
    rows_in = len(frame)
    frame, errors, skipped = _split_rejects(spec, frame)
    if errors and on_duplicate == "fail":
        if isinstance(target, sa.Engine):
            with target.begin() as conn:
                _write_errors(conn, spec, errors, batch_id, asset_key, source_file)
        else:
            _write_errors(target, spec, errors, batch_id, asset_key, source_file)
        raise DuplicateKeyError(
            f"{spec.name}: batch {batch_id} rejected, {len(errors)} row(s) with a duplicate or missing natural key; "
            f"first: {errors[0]['message']}"
        )
    frame["row_hash"] = row_hashes(frame, spec.tracked)
    stats = MergeStats(batch_id=batch_id, rows_in=rows_in, rejected=len(errors))

    def run(conn: sa.Connection) -> None:
        _lock(conn, spec)
        _write_errors(conn, spec, errors, batch_id, asset_key, source_file)
        _merge(conn, spec, frame, skipped, as_of, full, batch_id, stats)
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
                    rows_in=rows_in,
                    rows_loaded=rows_in - stats.rejected,
                    rows_rejected=stats.rejected,
                    status="SUCCESS",
                    message=f"{stats.path}: opened {stats.opened}, closed {stats.closed}, "
                    f"tombstoned {stats.tombstoned}, unchanged {stats.unchanged}",
                )

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
    return stats




def _merge(
    conn: sa.Connection,
    spec: DimensionSpec,
    frame: pd.DataFrame,
    skipped: pd.DataFrame,
    as_of,
    full: bool,
    batch_id: str,
    stats: MergeStats,
):
    already = _check_batch_id(conn, spec, batch_id, as_of, full)
    temps = _temps(spec)
    _create_temps(conn, temps, spec)
    _stage_rows(conn, temps.skip, skipped)
    stage_frame = frame[[c.name for c in temps.stage.columns if c.name in frame.columns]]
    last_any, last_full = _log_scalars(conn, spec)
    if last_any is None or as_of > last_any:
        _merge_in_order(conn, spec, temps, stage_frame, as_of, last_full, full, batch_id, stats)
    else:
        _merge_out_of_order(conn, spec, temps, stage_frame, as_of, full, batch_id, stats)
    if not already:
        _log_batch(conn, spec, temps, batch_id, as_of, full, stats.rows_in, observed=len(frame), skipped=len(skipped))
    _drop_temps(conn, temps)


def _check_batch_id(conn: sa.Connection, spec: DimensionSpec, batch_id: str, as_of, full: bool) -> bool:
    """True when this very batch was merged before (a re-run); a reused id with another as-of is refused."""
    log = scd2_batches
    logged = conn.execute(
        sa.select(log.c.as_of, log.c.is_full).where(log.c.dimension == spec.name, log.c.batch_id == batch_id)
    ).first()
    if logged is not None and (as_utc(logged.as_of) != as_of or bool(logged.is_full) != full):
        raise Scd2Error(
            f"{spec.name}: batch id {batch_id} was merged before with as-of {logged.as_of} "
            f"({'full' if logged.is_full else 'partial'}); give a different batch a new batch id."
        )
    return logged is not None


def _log_batch(conn, spec, temps: _Temps, batch_id, as_of, full, rows_in, observed: int, skipped: int) -> None:
    """The batch log: full batches observe every key (but the ones they quarantined); partial
    batches are remembered key by key."""
    conn.execute(
        sa.insert(scd2_batches).values(
            dimension=spec.name, batch_id=batch_id, as_of=as_of, is_full=full, rows_in=rows_in, merged_at=utc_now()
        )
    )
    seen, keys = spec.seen_table, spec.natural_key
    source = temps.skip if full else temps.stage
    if (skipped if full else observed) == 0:
        return
    t = sa.bindparam("t", as_of, type_=TS)
    conn.execute(
        seen.insert().from_select(
            list(keys) + ["as_of", "observed"],
            sa.select(*[source.c[k] for k in keys], t, sa.literal(not full, sa.Boolean)).where(
                ~sa.exists().where(_key_match(seen, source, keys), seen.c.as_of == t)
            ),
        )
    )

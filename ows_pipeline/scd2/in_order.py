"""The in-order merge: a batch newer than everything loaded. Compare hashes, close changed
versions, open new ones and tombstones."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.scd2.batch import _analyze, _stage_keys_and_hashes, _stage_rows, _Temps
from ows_pipeline.scd2.scd1 import scd1_statement
from ows_pipeline.scd2.stats import MergeStats
from ows_pipeline.scd2.sql import _count, _key_match, _not_skipped
from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, scd2_batches


def fast_path_diff_statements(spec: DimensionSpec, temps: _Temps, *, full: bool, one_pass: bool = False):
    """In-order merge, step 1: the keys that are new, changed, back or gone (from the staged hashes).

    `one_pass`: a full extract is compared in one FULL OUTER JOIN (PostgreSQL plans it as one
    hash join; SQLite would loop), else a left join and an anti-join."""
    d = spec.table
    s, df = temps.stage, temps.diff
    keys = spec.natural_key
    cols = list(keys) + ["action", "prev_sk"]
    if full and one_pass:
        cur = sa.select(d).where(d.c.is_current).subquery("cur")
        skip = temps.skip
        missing, absent = cur.c[keys[0]].is_(None), s.c[keys[0]].is_(None)
        action = sa.case((missing, "N"), (absent, "D"), (cur.c.is_deleted, "R"), else_="C")
        differs = (
            sa.select(*[sa.func.coalesce(s.c[k], cur.c[k]) for k in keys], action, cur.c[spec.sk])
            .select_from(s.outerjoin(cur, _key_match(cur, s, keys), full=True))
            .where(
                sa.or_(
                    missing,
                    sa.and_(absent, sa.not_(cur.c.is_deleted), ~sa.exists().where(_key_match(skip, cur, keys))),
                    sa.and_(sa.not_(absent), sa.or_(cur.c.is_deleted, cur.c.row_hash != s.c.row_hash)),
                )
            )
        )
        return [df.insert().from_select(cols, differs)]
    cur = d.alias("cur")
    action = sa.case((cur.c[keys[0]].is_(None), "N"), (cur.c.is_deleted, "R"), else_="C")
    differs = (
        sa.select(*[s.c[k] for k in keys], action, cur.c[spec.sk])
        .select_from(s.outerjoin(cur, sa.and_(_key_match(cur, s, keys), cur.c.is_current)))
        .where(sa.or_(cur.c[keys[0]].is_(None), cur.c.is_deleted, cur.c.row_hash != s.c.row_hash))
    )
    stmts = [df.insert().from_select(cols, differs)]
    if full:
        gone = sa.select(*[d.c[k] for k in keys], sa.literal("D"), d.c[spec.sk]).where(
            d.c.is_current,
            sa.not_(d.c.is_deleted),
            ~sa.exists().where(_key_match(s, d, keys)),
            ~sa.exists().where(_key_match(temps.skip, d, keys)),
        )
        stmts.append(df.insert().from_select(cols, gone))
    return stmts


def fast_path_statements(spec: DimensionSpec, temps: _Temps, *, full: bool, as_of, last_full, batch_id: str):
    """In-order merge, step 2 (the full rows of the differing keys staged in `rows`): business
    times, close, insert (tombstones included). Returns a list of statements."""
    d = spec.table
    s, c, seen, df = temps.rows, temps.changes, spec.seen_table, temps.diff
    keys = spec.natural_key
    t = sa.bindparam("t", as_of, type_=TS)
    cur = d.alias("cur")
    seen_max = (
        sa.select(*[seen.c[k] for k in keys], sa.func.max(seen.c.as_of).label("last_seen"))
        .where(seen.c.observed)
        .group_by(*[seen.c[k] for k in keys])
        .subquery("seen_max")
    )
    vf = t
    if spec.updated_at:
        u = s.c[spec.updated_at]
        conds = [u.is_not(None), u <= t, sa.or_(cur.c.valid_from.is_(None), u > cur.c.valid_from)]
        conds.append(sa.or_(seen_max.c.last_seen.is_(None), u > seen_max.c.last_seen))
        if last_full is not None:
            lf = sa.bindparam("last_full", last_full, type_=TS)
            log = scd2_batches
            last_observed_full = (
                sa.select(sa.func.max(log.c.as_of))
                .where(log.c.dimension == spec.name, log.c.is_full, _not_skipped(spec, df, log.c.as_of))
                .scalar_subquery()
            )
            conds.append(
                sa.case(
                    (u > lf, sa.true()),
                    (_not_skipped(spec, df, lf), sa.false()),
                    else_=sa.or_(last_observed_full.is_(None), u > last_observed_full),
                )
            )
        vf = sa.case((sa.and_(*conds), u), else_=t)
    classify = sa.select(*[df.c[k] for k in keys], df.c.action, vf, df.c.prev_sk).select_from(
        df.outerjoin(s, _key_match(s, df, keys))
        .outerjoin(cur, cur.c[spec.sk] == df.c.prev_sk)
        .outerjoin(seen_max, _key_match(seen_max, df, keys))
    )
    cols = list(keys) + ["action", "valid_from", "prev_sk"]
    stmts = [c.insert().from_select(cols, classify)]
    closing = sa.select(c.c.valid_from).where(c.c.prev_sk == d.c[spec.sk]).scalar_subquery()
    stmts.append(
        d.update()
        .where(d.c.is_current, sa.exists().where(c.c.prev_sk == d.c[spec.sk]))
        .values(valid_to=closing, is_current=False)
    )
    batch = sa.bindparam("batch_id", batch_id, type_=sa.String(40))
    dim_cols = list(keys) + list(spec.attributes) + ["row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id"]
    opened = (
        sa.select(
            *[s.c[n] for n in keys + spec.attributes],
            s.c.row_hash,
            c.c.valid_from,
            sa.null(),
            sa.true(),
            sa.false(),
            batch,
        )
        .select_from(c.join(s, _key_match(s, c, keys)))
        .where(c.c.action.in_(["N", "C", "R"]))
    )
    stmts.append(d.insert().from_select(dim_cols, opened))
    if full:
        prev = d.alias("prev")
        tomb = (
            sa.select(
                *[prev.c[n] for n in keys + spec.attributes],
                prev.c.row_hash,
                c.c.valid_from,
                sa.null(),
                sa.true(),
                sa.true(),
                batch,
            )
            .select_from(c.join(prev, prev.c[spec.sk] == c.c.prev_sk))
            .where(c.c.action == "D")
        )
        stmts.append(d.insert().from_select(dim_cols, tomb))
    return stmts


def _merge_in_order(conn, spec, temps: _Temps, stage_frame, as_of, last_full, full, batch_id, stats: MergeStats):
    """The batch is newer than everything loaded: compare hashes, then close and open versions."""
    import pandas as pd

    stats.path = "in_order"
    if spec.scd1:
        _stage_rows(conn, temps.stage, stage_frame)  # SCD1 columns may change on unchanged keys
    else:  # only keys and hashes for the comparison; full rows follow for the keys that differ
        _stage_keys_and_hashes(conn, temps.stage, stage_frame[list(spec.natural_key) + ["row_hash"]])
    _analyze(conn, temps.stage)
    for stmt in fast_path_diff_statements(spec, temps, full=full, one_pass=conn.dialect.name == "postgresql"):
        conn.execute(stmt)
    keys, df = list(spec.natural_key), temps.diff
    wanted = conn.execute(sa.select(*[df.c[k] for k in keys]).where(df.c.action.in_(["N", "C", "R"]))).all()
    if len(keys) == 1:
        positions = pd.Index(stage_frame[keys[0]]).get_indexer([w[0] for w in wanted])
    else:
        positions = pd.MultiIndex.from_frame(stage_frame[keys]).get_indexer([tuple(w) for w in wanted])
    _stage_rows(conn, temps.rows, stage_frame.iloc[positions])
    _analyze(conn, temps.diff)
    _analyze(conn, temps.rows)
    for stmt in fast_path_statements(spec, temps, full=full, as_of=as_of, last_full=last_full, batch_id=batch_id):
        conn.execute(stmt)
    c = temps.changes
    counts = dict(conn.execute(sa.select(c.c.action, sa.func.count()).group_by(c.c.action)).all())
    stats.opened = counts.get("N", 0) + counts.get("C", 0) + counts.get("R", 0)
    stats.closed = counts.get("C", 0) + counts.get("R", 0) + counts.get("D", 0)
    stats.tombstoned = counts.get("D", 0)
    stats.unchanged = len(stage_frame) - stats.opened
    if spec.scd1 and len(stage_frame):
        stats.scd1_updated = _count(conn, scd1_statement(spec, temps.stage, spec.natural_key, spec.scd1, spec.scd1_scope))

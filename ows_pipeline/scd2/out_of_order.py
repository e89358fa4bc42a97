"""The out-of-order replay: a batch not newer than everything loaded is slotted into history.

The affected keys' observations are rebuilt from the dimension, the batch log and the log of
partial observations; their versions are recomputed with window functions and only the
difference is applied."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.scd2.batch import StagedBatch, _analyze, _Temps
from ows_pipeline.scd2.in_order import hashed
from ows_pipeline.scd2.scd1 import scd1_statement
from ows_pipeline.scd2.stats import MergeStats
from ows_pipeline.scd2.sql import _count, _in_interval, _key_match, _log_bound, _near_full, _observed_by
from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, scd2_batches


def out_of_order_statements(spec: DimensionSpec, temps: _Temps, *, full: bool, as_of, batch_id: str):
    """The late-batch merge: rebuild the affected keys' observations, recompute their versions, apply the difference."""
    d = spec.table
    s, kt, o, h = temps.stage, temps.keys, temps.obs, temps.hist
    seen = spec.seen_table
    keys = list(spec.natural_key)
    attrs = list(spec.attributes)
    t = sa.bindparam("t", as_of, type_=TS)
    batch = sa.bindparam("batch_id", batch_id, type_=sa.String(40))
    obs_cols = keys + ["t", "dead", "row_hash"] + attrs + ["batch_id"]
    stmts = []

    # 1. affected keys: the batch's keys, and for a full extract every key of the dimension.
    stmts.append(kt.insert().from_select(keys, sa.select(*[s.c[k] for k in keys])))
    if full:
        others = (
            sa.select(*[d.c[k] for k in keys])
            .where(d.c.is_current, ~sa.exists().where(_key_match(s, d, keys)))
        )
        stmts.append(kt.insert().from_select(keys, others))

    # 2. the new observations: rows present at t; for a full extract, every other key absent at t.
    stmts.append(
        o.insert().from_select(
            obs_cols,
            sa.select(*[s.c[k] for k in keys], t, sa.false(), s.c.row_hash, *[s.c[a] for a in attrs], batch),
        )
    )
    if full:
        stmts.append(
            o.insert().from_select(
                obs_cols,
                sa.select(*[kt.c[k] for k in keys], t, sa.true(), sa.null(), *[sa.null() for _ in attrs], batch).where(
                    ~sa.exists().where(_key_match(s, kt, keys)),
                    ~sa.exists().where(_key_match(temps.skip, kt, keys)),
                ),
            )
        )

    # 3. the existing observations that can bound a version, per version of an affected key:
    #    first and last full batch inside it, the full batches nearest to t, and every partial observation.
    v = d.alias("v")
    affected = sa.exists().where(_key_match(kt, v, keys))
    candidates = [
        sa.select(v.c[spec.sk].label("sk"), _log_bound(spec, sa.func.min, v).label("t")).where(affected),
        sa.select(v.c[spec.sk].label("sk"), _log_bound(spec, sa.func.max, v).label("t")).where(affected),
        sa.select(v.c[spec.sk].label("sk"), seen.c.as_of.label("t"))
        .select_from(v.join(seen, _key_match(seen, v, keys)))
        .where(affected, seen.c.observed, _in_interval(seen.c.as_of, v)),
    ]
    for before in (True, False):
        near = (
            sa.select(v.c[spec.sk].label("sk"), v.c.valid_from, v.c.valid_to, _near_full(spec, v, before, t).label("t"))
            .where(affected)
            .subquery()
        )
        candidates.append(sa.select(near.c.sk, near.c.t).where(_in_interval(near.c.t, near)))
    cand = sa.union(*candidates).subquery("cand")
    w = d.alias("w")
    existing_at = sa.exists().where(_key_match(o, w, keys), o.c.t == cand.c.t)
    stmts.append(
        o.insert().from_select(
            obs_cols,
            sa.select(*[w.c[k] for k in keys], cand.c.t, w.c.is_deleted, w.c.row_hash, *[w.c[a] for a in attrs], w.c.batch_id)
            .select_from(cand.join(w, w.c[spec.sk] == cand.c.sk))
            .where(cand.c.t.is_not(None), ~existing_at),
        )
    )

    # 4. absent observations before a key's first version: the last full batch before it, and the
    #    full batches nearest to t when they fall before it (or the key has no version yet).
    first = (
        sa.select(*[d.c[k] for k in keys], sa.func.min(d.c.valid_from).label("first_from"))
        .group_by(*[d.c[k] for k in keys])
        .subquery("first")
    )
    log = scd2_batches
    q = (
        sa.select(sa.func.max(log.c.as_of))
        .where(
            log.c.dimension == spec.name,
            log.c.is_full,
            log.c.as_of < first.c.first_from,
            _observed_by(spec, first, log),
        )
        .scalar_subquery()
    )
    absent_sources = [
        sa.select(*[first.c[k] for k in keys], q.label("t")).where(sa.exists().where(_key_match(kt, first, keys)))
    ]
    for before in (True, False):
        near = sa.select(*[kt.c[k] for k in keys], _near_full(spec, kt, before, t).label("t")).subquery()
        absent_sources.append(
            sa.select(*[near.c[k] for k in keys], near.c.t)
            .select_from(near.outerjoin(first, _key_match(first, near, keys)))
            .where(sa.or_(first.c.first_from.is_(None), near.c.t < first.c.first_from))
        )
    absent = sa.union(*absent_sources).subquery("absent")
    log_batch = (
        sa.select(sa.func.max(log.c.batch_id))
        .where(log.c.dimension == spec.name, log.c.is_full, log.c.as_of == absent.c.t)
        .scalar_subquery()
    )
    stmts.append(
        o.insert().from_select(
            obs_cols,
            sa.select(*[absent.c[k] for k in keys], absent.c.t, sa.true(), sa.null(), *[sa.null() for _ in attrs], log_batch).where(
                absent.c.t.is_not(None), ~sa.exists().where(_key_match(o, absent, keys), o.c.t == absent.c.t)
            ),
        )
    )

    # 5. versions = runs of equal state in as-of order (leading absences dropped).
    win = dict(partition_by=[o.c[k] for k in keys], order_by=o.c.t)
    lagged = sa.select(
        o,
        sa.func.lag(o.c.dead).over(**win).label("prev_dead"),
        sa.func.lag(o.c.row_hash).over(**win).label("prev_hash"),
        sa.func.lag(o.c.t).over(**win).label("prev_t"),
    ).subquery("lagged")
    g = lagged.c
    is_start = sa.or_(
        sa.and_(g.prev_t.is_(None), sa.not_(g.dead)),
        sa.and_(
            g.prev_t.is_not(None),
            sa.or_(g.dead != g.prev_dead, sa.and_(sa.not_(g.dead), g.row_hash != g.prev_hash)),
        ),
    )
    vf = g.t
    if spec.updated_at:
        u = g[spec.updated_at]
        vf = sa.case(
            (
                sa.and_(sa.not_(g.dead), u.is_not(None), u <= g.t, sa.or_(g.prev_t.is_(None), u > g.prev_t)),
                u,
            ),
            else_=g.t,
        )
    starts = sa.select(*[g[k] for k in keys], *[g[a] for a in attrs], g.row_hash, g.dead, g.batch_id, vf.label("vf"), g.t).where(
        is_start
    ).subquery("starts")
    st = starts.c
    win2 = dict(partition_by=[st[k] for k in keys], order_by=st.t)

    def carried(col):
        # a tombstone carries the attributes of the version it closes
        return sa.case((st.dead, sa.func.lag(col).over(**win2)), else_=col)

    next_from = sa.func.lead(st.vf).over(**win2)
    hist_select = sa.select(
        *[st[k] for k in keys],
        *[carried(st[a]) for a in attrs],
        carried(st.row_hash),
        st.vf,
        next_from,
        sa.case((next_from.is_(None), sa.true()), else_=sa.false()),
        st.dead,
        st.batch_id,
    )
    hist_cols = keys + attrs + ["row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id"]
    stmts.append(h.insert().from_select(hist_cols, hist_select))

    # 6. apply the difference for the affected keys (a version is kept when key, start, state agree).
    def same_version(x, y):
        return sa.and_(
            _key_match(x, y, keys),
            x.c.valid_from == y.c.valid_from,
            x.c.is_deleted == y.c.is_deleted,
            x.c.row_hash == y.c.row_hash,
        )

    in_scope = sa.exists().where(_key_match(kt, d, keys))
    stmts.append(("removed", d.delete().where(in_scope, ~sa.exists().where(same_version(h, d)))))
    new_to = sa.select(h.c.valid_to).where(same_version(h, d)).scalar_subquery()
    stmts.append(
        (
            "reclosed",
            d.update()
            .where(
                in_scope,
                sa.exists().where(
                    same_version(h, d),
                    h.c.valid_to.is_not(None),
                    sa.or_(d.c.valid_to.is_(None), d.c.valid_to != h.c.valid_to),
                ),
            )
            .values(valid_to=new_to, is_current=False),
        )
    )
    stmts.append(
        d.update()
        .where(in_scope, sa.not_(d.c.is_current), sa.exists().where(same_version(h, d), h.c.valid_to.is_(None)))
        .values(valid_to=None, is_current=True)
    )
    dim_cols = keys + attrs + ["row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id"]
    stmts.append(
        (
            "inserted",
            d.insert().from_select(
                dim_cols,
                sa.select(*[h.c[n] for n in dim_cols]).where(~sa.exists().where(same_version(d, h))),
            ),
        )
    )
    return stmts


def _merge_out_of_order(conn, spec, temps: _Temps, batch: StagedBatch, as_of, full, batch_id, stats: MergeStats):
    """The batch is not newer than everything loaded: recompute the affected keys' history, apply the difference."""
    stats.path = "out_of_order"
    h = hashed(spec, batch.source, conn.dialect.name)
    conn.execute(temps.stage.insert().from_select([c.name for c in h.columns], sa.select(h)))
    _analyze(conn, temps.stage)
    counted = {}
    for stmt in out_of_order_statements(spec, temps, full=full, as_of=as_of, batch_id=batch_id):
        if not isinstance(stmt, tuple):
            conn.execute(stmt)
            continue
        label, stmt = stmt
        if label == "inserted":
            h, d = temps.hist, spec.table
            same = sa.exists().where(
                _key_match(d, h, spec.natural_key),
                d.c.valid_from == h.c.valid_from,
                d.c.is_deleted == h.c.is_deleted,
                d.c.row_hash == h.c.row_hash,
            )
            for deleted, n in conn.execute(
                sa.select(h.c.is_deleted, sa.func.count()).where(~same).group_by(h.c.is_deleted)
            ).all():
                counted["tombstoned" if deleted else "opened"] = n
        counted[label] = _count(conn, stmt)
    stats.opened = counted.get("opened", 0)
    stats.tombstoned = counted.get("tombstoned", 0)
    stats.closed = counted.get("removed", 0) + counted.get("reclosed", 0)
    stats.unchanged = max(batch.observed - stats.opened, 0)
    if spec.scd1 and spec.scd1_scope == "all" and batch.observed:
        cur = spec.table.alias("latest")
        latest = (
            sa.select(*[cur.c[k] for k in spec.natural_key], *[cur.c[c] for c in spec.scd1])
            .where(cur.c.is_current)
            .subquery()
        )
        stats.scd1_updated = _count(conn, scd1_statement(spec, latest, spec.natural_key, spec.scd1, "all"))

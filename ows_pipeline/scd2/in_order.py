"""The in-order merge: a batch newer than everything loaded. Compare hashes, close changed
versions, open new ones and tombstones."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.scd2.batch import StagedBatch, _analyze, _Temps
from ows_pipeline.scd2.hashing import row_hash_sql
from ows_pipeline.scd2.values import column_kind
from ows_pipeline.scd2.scd1 import scd1_statement
from ows_pipeline.scd2.stats import MergeStats
from ows_pipeline.scd2.sql import _count, _full_observed_at, _key_match, _observed_by
from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, scd2_batches


def hashed(spec: DimensionSpec, source: sa.FromClause, dialect: str, columns=None) -> sa.Subquery:
    """`source`'s rows (keys and `columns`, default all attributes) with their `row_hash`, computed in SQL."""
    columns = list(spec.natural_key) + list(spec.attributes if columns is None else columns)
    return sa.select(
        *[source.c[c] for c in columns], row_hash_sql(spec.table, source, spec.tracked, dialect).label("row_hash")
    ).subquery("hashed")


def differs_from(spec: DimensionSpec, row, version, dialect: str):
    """The tracked columns of `row` differ from `version`'s: the same relation as unequal `row_hash`es
    (values compared by value and instant), without hashing the rows that did not change."""
    def canonical(c, col):
        if dialect == "sqlite" and column_kind(spec.table.c[col].type) == "ts":
            return sa.func.ows_utc_text(c)  # stored text of any ISO form compares by instant
        return c

    return sa.or_(*[canonical(row.c[c], c).is_distinct_from(canonical(version.c[c], c)) for c in spec.tracked])


def fast_path_diff_statements(spec: DimensionSpec, temps: _Temps, *, full: bool, one_pass: bool = False,
                              source: sa.FromClause | None = None, dialect: str = "postgresql"):
    """In-order merge, step 1: the keys that are new, changed, back or gone, comparing the tracked
    columns of `source` (default: the staged rows) with the current versions' (`differs_from`).

    `one_pass`: a full extract is compared in one FULL OUTER JOIN (PostgreSQL plans it as one
    hash join; SQLite would loop), else a left join and an anti-join."""
    d = spec.table
    s, df = temps.stage if source is None else source, temps.diff
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
                    sa.and_(sa.not_(absent), sa.or_(cur.c.is_deleted, differs_from(spec, s, cur, dialect))),
                )
            )
        )
        return [df.insert().from_select(cols, differs)]
    cur = d.alias("cur")
    action = sa.case((cur.c[keys[0]].is_(None), "N"), (cur.c.is_deleted, "R"), else_="C")
    differs = (
        sa.select(*[s.c[k] for k in keys], action, cur.c[spec.sk])
        .select_from(s.outerjoin(cur, sa.and_(_key_match(cur, s, keys), cur.c.is_current)))
        .where(sa.or_(cur.c[keys[0]].is_(None), cur.c.is_deleted, differs_from(spec, s, cur, dialect)))
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


def changed_rows_statement(spec: DimensionSpec, temps: _Temps, source: sa.FromClause, dialect: str):
    """In-order merge, step 1b: the full rows (and hashes) of the keys that open a version, into `rows`."""
    h, df, keys = hashed(spec, source, dialect), temps.diff, spec.natural_key
    wanted = (
        sa.select(*[h.c[c] for c in list(keys) + list(spec.attributes)], h.c.row_hash)
        .select_from(h.join(df, _key_match(df, h, keys)))
        .where(df.c.action.in_(["N", "C", "R"]))
    )
    return temps.rows.insert().from_select(list(keys) + list(spec.attributes) + ["row_hash"], wanted)


def first_load_statement(spec: DimensionSpec, source: sa.FromClause, *, as_of, batch_id: str, dialect: str):
    """The first batch of an empty dimension: every row opens its first version, in one INSERT ... SELECT."""
    h = hashed(spec, source, dialect)
    t = sa.bindparam("t", as_of, type_=TS)
    vf = t
    if spec.updated_at:
        u = h.c[spec.updated_at]
        vf = sa.case((sa.and_(u.is_not(None), u <= t), u), else_=t)
    batch = sa.bindparam("batch_id", batch_id, type_=sa.String(40))
    cols = list(spec.natural_key) + list(spec.attributes)
    select = sa.select(*[h.c[c] for c in cols], h.c.row_hash, vf, sa.null(), sa.true(), sa.false(), batch)
    return spec.table.insert().from_select(cols + DIM_STATE_COLUMNS, select)


DIM_STATE_COLUMNS = ["row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id"]


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
                .where(log.c.dimension == spec.name, log.c.is_full, _observed_by(spec, df, log))
                .scalar_subquery()
            )
            conds.append(
                sa.case(
                    (u > lf, sa.true()),
                    (_full_observed_at(spec, df, lf), sa.false()),
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
    dim_cols = list(keys) + list(spec.attributes) + DIM_STATE_COLUMNS
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


def _merge_in_order(conn, spec, temps: _Temps, batch: StagedBatch, as_of, last_full, full, batch_id, stats: MergeStats):
    """The batch is newer than everything loaded: compare hashes, then close and open versions."""
    stats.path = "in_order"
    dialect, source = conn.dialect.name, batch.source
    first = last_full is None and conn.execute(sa.select(spec.table.c[spec.sk]).limit(1)).first() is None
    if first and not conn.execute(sa.select(scd2_batches.c.batch_id).where(scd2_batches.c.dimension == spec.name).limit(1)).first():
        # an empty table takes its rows faster without its secondary indexes, built again at the end
        # (in the same transaction: a crash leaves the empty table as it was)
        for index in spec.table.indexes:
            index.drop(conn)
        stats.opened = _count(conn, first_load_statement(spec, source, as_of=as_of, batch_id=batch_id, dialect=dialect))
        for index in spec.table.indexes:
            index.create(conn)
        stats.unchanged = batch.observed - stats.opened
        return
    for stmt in fast_path_diff_statements(spec, temps, full=full, one_pass=dialect == "postgresql", source=source,
                                          dialect=dialect):
        conn.execute(stmt)
    _analyze(conn, temps.diff)
    conn.execute(changed_rows_statement(spec, temps, source, dialect))
    _analyze(conn, temps.rows)
    for stmt in fast_path_statements(spec, temps, full=full, as_of=as_of, last_full=last_full, batch_id=batch_id):
        conn.execute(stmt)
    c = temps.changes
    counts = dict(conn.execute(sa.select(c.c.action, sa.func.count()).group_by(c.c.action)).all())
    stats.opened = counts.get("N", 0) + counts.get("C", 0) + counts.get("R", 0)
    stats.closed = counts.get("C", 0) + counts.get("R", 0) + counts.get("D", 0)
    stats.tombstoned = counts.get("D", 0)
    stats.unchanged = batch.observed - stats.opened
    if spec.scd1 and batch.observed:
        stats.scd1_updated = _count(conn, scd1_statement(spec, source, spec.natural_key, spec.scd1, spec.scd1_scope))

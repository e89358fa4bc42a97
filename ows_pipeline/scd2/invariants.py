"""The invariants of an SCD2 dimension (DESIGN.md section 3), counted in SQL."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.warehouse.schema.scd2 import DimensionSpec


def invariant_violations(conn: sa.Connection, spec: DimensionSpec) -> dict[str, int]:
    """Count violations of the DESIGN.md section 3 invariants; all zero when the dimension is sound."""
    d = spec.table
    keys = [d.c[k] for k in spec.natural_key]
    per_key = (
        sa.select(*keys, sa.func.sum(sa.case((d.c.is_current, 1), else_=0)).label("n_current"))
        .group_by(*keys)
        .subquery()
    )
    not_one_current = sa.select(sa.func.count()).select_from(per_key).where(per_key.c.n_current != 1)
    current_closed = sa.select(sa.func.count()).where(d.c.is_current, d.c.valid_to.is_not(None))
    open_not_current = sa.select(sa.func.count()).where(sa.not_(d.c.is_current), d.c.valid_to.is_(None))
    empty_interval = sa.select(sa.func.count()).where(d.c.valid_to.is_not(None), d.c.valid_from >= d.c.valid_to)
    nxt = sa.select(
        d.c.valid_to, sa.func.lead(d.c.valid_from).over(partition_by=keys, order_by=d.c.valid_from).label("next_from")
    ).subquery()
    gaps = sa.select(sa.func.count()).select_from(nxt).where(
        sa.or_(
            sa.and_(nxt.c.next_from.is_not(None), sa.or_(nxt.c.valid_to.is_(None), nxt.c.valid_to != nxt.c.next_from)),
            sa.and_(nxt.c.next_from.is_(None), nxt.c.valid_to.is_not(None)),
        )
    )
    lagged = sa.select(
        d.c.is_deleted,
        d.c.row_hash,
        sa.func.lag(d.c.is_deleted).over(partition_by=keys, order_by=d.c.valid_from).label("prev_deleted"),
        sa.func.lag(d.c.row_hash).over(partition_by=keys, order_by=d.c.valid_from).label("prev_hash"),
        sa.func.row_number().over(partition_by=keys, order_by=d.c.valid_from).label("n"),
    ).subquery()
    l = lagged.c
    repeated = sa.select(sa.func.count()).select_from(lagged).where(
        sa.or_(
            sa.and_(l.n == 1, l.is_deleted),
            sa.and_(l.n > 1, l.is_deleted, l.prev_deleted),
            sa.and_(l.n > 1, sa.not_(l.is_deleted), sa.not_(l.prev_deleted), l.row_hash == l.prev_hash),
        )
    )
    checks = {
        "keys_without_exactly_one_current": not_one_current,
        "current_with_valid_to": current_closed,
        "closed_without_valid_to": open_not_current,
        "valid_from_not_before_valid_to": empty_interval,
        "gaps_or_overlaps": gaps,
        "repeated_or_leading_states": repeated,
    }
    return {name: int(conn.execute(q).scalar() or 0) for name, q in checks.items()}

"""Point-in-time lookups: the version of an SCD2 dimension valid at a timestamp, as SQL expressions.

A version is valid at `at` when `valid_from <= at < valid_to` (`valid_to` null: still current).
`at` may be a column (e.g. the week's end of a fact row), a bind parameter or a datetime.
Works on SQLite, PostgreSQL and (compiled) Oracle.

    from ows_pipeline.dimensions.point_in_time import join_valid_at, sk_at
    dim = DIM_WORKFLOW.table
    q = (sa.select(run.c.run_id, dim.c.workflow_sk)
         .select_from(run.outerjoin(dim, join_valid_at(dim, {"workflow_id": run.c.workflow_id}, week_end))))
    # or, as a scalar column:
    sa.select(run.c.run_id, sk_at(DIM_WORKFLOW, run.c.workflow_id, week_end).label("workflow_sk"))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Union

import sqlalchemy as sa

from ows_pipeline.scd2 import DimensionSpec
from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.bulk import as_utc

Timestamp = Union[sa.ColumnElement, dt.datetime]


def _table(dim) -> sa.FromClause:
    return dim.table if isinstance(dim, DimensionSpec) else dim


def _at(at: Timestamp) -> sa.ColumnElement:
    if isinstance(at, dt.datetime):
        return sa.bindparam(None, as_utc(at), type_=TS)
    return at


def valid_at(dim, at: Timestamp, include_deleted: bool = True) -> sa.ColumnElement:
    """`dim`'s rows valid at `at`: `valid_from <= at AND (valid_to IS NULL OR at < valid_to)`.

    `include_deleted=False` also leaves out tombstones (keys deleted at that time).
    """
    t = _table(dim)
    at = _at(at)
    cond = sa.and_(t.c.valid_from <= at, sa.or_(t.c.valid_to.is_(None), at < t.c.valid_to))
    if not include_deleted:
        cond = sa.and_(cond, sa.not_(t.c.is_deleted))
    return cond


def join_valid_at(dim, keys: Mapping[str, sa.ColumnElement], at: Timestamp, include_deleted: bool = True) -> sa.ColumnElement:
    """ON clause joining facts to `dim`'s version valid at `at`; `keys` maps natural key columns to fact columns."""
    t = _table(dim)
    return sa.and_(*[t.c[name] == expr for name, expr in keys.items()], valid_at(t, at, include_deleted))


def sk_at(spec: DimensionSpec, key: Union[sa.ColumnElement, Mapping[str, sa.ColumnElement]], at: Timestamp,
          include_deleted: bool = True) -> sa.ScalarSelect:
    """Scalar subquery: the surrogate key of the version of `key` valid at `at` (NULL when none)."""
    keys = key if isinstance(key, Mapping) else {spec.natural_key[0]: key}
    dim = spec.table.alias(f"{spec.name}_at")
    return sa.select(dim.c[spec.sk]).where(join_valid_at(dim, keys, at, include_deleted)).limit(1).scalar_subquery()


def versions_at(spec: DimensionSpec, at: Timestamp, include_deleted: bool = True, name: str | None = None) -> sa.Subquery:
    """Subquery of the dimension as it was at `at` (one row per key), ready to join on the natural key."""
    t = spec.table
    return sa.select(t).where(valid_at(t, at, include_deleted)).subquery(name or f"{spec.name}_asof")

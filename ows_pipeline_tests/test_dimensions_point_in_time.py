"""Point-in-time lookups: facts joined to the version valid at a timestamp column or a bound time,
on SQLite and PostgreSQL, and compiled for Oracle."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import oracle

from ows_pipeline.dimensions.point_in_time import join_valid_at, sk_at, valid_at, versions_at
from ows_pipeline.scd2 import merge_scd2
from ows_pipeline.warehouse.schema.dimensions import DIM_WORKFLOW
from ows_pipeline.warehouse.schema import create_warehouse_tables

UTC = dt.timezone.utc
T = lambda d: dt.datetime(2026, 2, d, tzinfo=UTC)  # noqa: E731

facts_md = sa.MetaData()
facts = sa.Table(
    "pit_facts",
    facts_md,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("workflow_id", sa.Integer),
    sa.Column("week_end", sa.TIMESTAMP(timezone=True)),
)


def workflow(wid, name):
    return dict(
        workflow_id=wid, project_id=1, workflow_code=f"W{wid}", version=1, workflow_name=name,
        begin_date=T(1), end_date=None, updated_at=T(1),
    )


def build(engine):
    create_warehouse_tables(engine)
    facts_md.create_all(engine)
    merge_scd2(engine, DIM_WORKFLOW, [workflow(1, "v1"), workflow(2, "other")], T(3))
    merge_scd2(engine, DIM_WORKFLOW, [workflow(1, "v2")], T(10))  # 2 deleted at T(10)
    with engine.begin() as conn:
        conn.execute(facts.insert(), [
            dict(run_id=1, workflow_id=1, week_end=T(8)),
            dict(run_id=2, workflow_id=1, week_end=T(15)),
            dict(run_id=3, workflow_id=2, week_end=T(8)),
            dict(run_id=4, workflow_id=2, week_end=T(15)),
            dict(run_id=5, workflow_id=1, week_end=T(2)),  # before the first extract: the version opened at updated_at, T(1)
            dict(run_id=6, workflow_id=9, week_end=T(8)),  # unknown workflow
        ])


def lookups(engine):
    d = DIM_WORKFLOW.table
    joined = (
        sa.select(facts.c.run_id, d.c.workflow_name, d.c.is_deleted)
        .select_from(facts.outerjoin(d, join_valid_at(d, {"workflow_id": facts.c.workflow_id}, facts.c.week_end)))
        .order_by(facts.c.run_id)
    )
    live_only = (
        sa.select(facts.c.run_id, sk_at(DIM_WORKFLOW, facts.c.workflow_id, facts.c.week_end, include_deleted=False))
        .order_by(facts.c.run_id)
    )
    snapshot = versions_at(DIM_WORKFLOW, T(8))
    with engine.connect() as conn:
        return (
            [tuple(r) for r in conn.execute(joined)],
            [r[1] is not None for r in conn.execute(live_only)],
            sorted(tuple(r) for r in conn.execute(sa.select(snapshot.c.workflow_id, snapshot.c.workflow_name))),
            conn.execute(sa.select(sa.func.count()).select_from(d).where(valid_at(d, T(15)))).scalar(),
        )


EXPECTED = (
    [(1, "v1", False), (2, "v2", False), (3, "other", False), (4, "other", True), (5, "v1", False), (6, None, None)],
    [True, True, True, False, True, False],
    [(1, "v1"), (2, "other")],
    2,
)


def test_point_in_time_sqlite(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    build(engine)
    assert lookups(engine) == EXPECTED


@pytest.mark.postgres
def test_point_in_time_postgres(pg_url):
    engine = sa.create_engine(pg_url)
    build(engine)
    assert lookups(engine) == EXPECTED
    engine.dispose()


def test_point_in_time_compiles_for_oracle():
    d = DIM_WORKFLOW.table
    q = sa.select(facts.c.run_id, sk_at(DIM_WORKFLOW, facts.c.workflow_id, sa.bindparam("week_end")))
    sql = str(q.compile(dialect=oracle.dialect()))
    assert "valid_from <=" in sql and "FETCH FIRST" in sql
    str(sa.select(d).where(valid_at(d, T(1))).compile(dialect=oracle.dialect()))

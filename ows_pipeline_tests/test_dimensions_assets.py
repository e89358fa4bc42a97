"""The dimension assets: built from the staged full extracts at their as-of time, with the blocking
`scd2_invariants` check, merge counts as metadata, and project metadata uploads joined into dim_project."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from ows_pipeline.defs.dimensions.assets import dimension_assets
from ows_pipeline.warehouse.schema.dimensions import DIM_FEED, DIM_PROJECT
from ows_pipeline.resources import WarehouseResource
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.warehouse.batches import record_batch
from ows_pipeline.warehouse.schema import etl_batches

UTC = dt.timezone.utc
T = lambda d, h=0: dt.datetime(2026, 3, d, h, tzinfo=UTC)  # noqa: E731


def stage(engine, table: str, rows: list[dict], batch_id: str, as_of: dt.datetime) -> None:
    """Replace stg_<table> with `rows` (a full extract) and record its staging batch."""
    stg = STAGING_TABLES[table]
    with engine.begin() as conn:
        conn.execute(stg.delete())
        if rows:
            conn.execute(stg.insert(), [dict(r, _batch_id=batch_id) for r in rows])
        record_batch(conn, batch_id=batch_id, asset_key=f"stg_{table}", as_of=as_of, status="SUCCESS", mode="full")


def project(pid, name="Project", owner="ann", updated=None):
    return dict(
        project_id=pid, project_code=f"PRJ{pid}", project_name=name, business_unit="BU", owner=owner,
        active_flag=True, created_at=T(1), updated_at=updated or T(1),
    )


def feed(fid, name="Feed"):
    return dict(
        feed_id=fid, project_id=1, feed_code=f"F{fid}", feed_name=name, source_system="GL", side="SOURCE",
        expected_schedule="daily", active_flag=True, created_at=T(1), updated_at=T(1),
    )


@pytest.fixture
def warehouse(sqlite_url):
    return WarehouseResource(url=sqlite_url)


def run(warehouse, *names):
    selected = [a for a in dimension_assets if a.key.path[0] in names]
    return dg.materialize(selected, resources={"warehouse": warehouse}, raise_on_error=False)


def meta(result, name):
    mats = [m for m in result.get_asset_materialization_events() if m.asset_key.path[0] == name]
    return {k: v.value for k, v in mats[-1].materialization.metadata.items()}


def checks(result):
    return {(e.asset_key.path[0], e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def test_definitions_expose_the_four_dimensions_with_blocking_checks():
    specs = {a.key.path[0]: a for a in dimension_assets}
    assert set(specs) == {"dim_project", "dim_feed", "dim_match_process", "dim_workflow"}
    for name, asset in specs.items():
        assert asset.group_names_by_key[asset.key] == "ows_dimensions"
        (check,) = list(asset.check_specs)
        assert check.name == "scd2_invariants" and check.blocking
        assert dg.AssetKey("stg_ows_" + name.removeprefix("dim_")) in asset.asset_deps[asset.key]
    assert dg.AssetKey("ref_project_metadata") in specs["dim_project"].asset_deps[specs["dim_project"].key]


def test_dimensions_build_from_staging_and_track_history(warehouse):
    engine = warehouse.get_engine()
    stage(engine, "ows_project", [project(1), project(2)], "stg-p1", T(2))
    stage(engine, "ows_feed", [feed(1), feed(2), feed(3)], "stg-f1", T(2))
    first = run(warehouse, "dim_project", "dim_feed")
    assert first.success
    assert checks(first) == {("dim_project", "scd2_invariants"): True, ("dim_feed", "scd2_invariants"): True}
    m = meta(first, "dim_feed")
    assert (m["versions_opened"], m["versions_closed"], m["versions_tombstoned"]) == (3, 0, 0)
    assert m["staged_batch"] == "stg-f1" and m["as_of"] == T(2).isoformat()

    stage(engine, "ows_feed", [feed(1, name="Feed renamed"), feed(3)], "stg-f2", T(9))
    second = run(warehouse, "dim_feed")
    m = meta(second, "dim_feed")
    assert (m["versions_opened"], m["versions_closed"], m["versions_tombstoned"], m["rows_unchanged"]) == (1, 2, 1, 1)
    assert m["current_rows"] == 3 and m["dagster/row_count"] == 5
    d = DIM_FEED.table
    with engine.connect() as conn:
        gone = conn.execute(sa.select(d.c.valid_from, d.c.is_deleted).where(d.c.feed_id == 2, d.c.is_current)).one()
        ledger = conn.execute(sa.select(sa.func.count()).where(etl_batches.c.asset_key == "dim_feed")).scalar()
    assert gone.is_deleted and gone.valid_from == T(9).replace(tzinfo=None)
    assert ledger == 2
    changed = m["what_changed"]  # the keys as staged above: feed 1 renamed, feed 2 gone
    assert "| 1 | changed |" in changed and "feed_name: Feed -> Feed renamed" in changed
    assert "| 2 | retired |" in changed and "| 3 |" not in changed

    again = run(warehouse, "dim_feed")  # same staged batch: nothing changes
    m = meta(again, "dim_feed")
    assert (m["versions_opened"], m["versions_closed"], m["versions_tombstoned"]) == (0, 0, 0)


def test_dim_project_takes_uploaded_project_metadata_as_scd1(warehouse):
    engine = warehouse.get_engine()
    stage(engine, "ows_project", [project(1), project(2)], "stg-p1", T(2))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS ref_project_metadata")
        conn.exec_driver_sql(
            "CREATE TABLE ref_project_metadata (project_code VARCHAR(30) PRIMARY KEY, business_unit VARCHAR(50), "
            "cost_centre VARCHAR(30), owner VARCHAR(100))"
        )
        conn.exec_driver_sql("INSERT INTO ref_project_metadata VALUES ('PRJ1', 'Markets', 'CC-100', NULL)")
    assert run(warehouse, "dim_project").success
    d = DIM_PROJECT.table
    with engine.connect() as conn:
        rows = conn.execute(sa.select(d.c.project_id, d.c.business_unit, d.c.cost_centre, d.c.owner).order_by(d.c.project_id)).all()
    assert [tuple(r) for r in rows] == [(1, "Markets", "CC-100", "ann"), (2, "BU", None, "ann")]
    # a new upload overwrites in place: no new version
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE ref_project_metadata SET cost_centre = 'CC-200'")
    stage(engine, "ows_project", [project(1), project(2)], "stg-p2", T(5))
    m = meta(run(warehouse, "dim_project"), "dim_project")
    assert m["versions_opened"] == 0 and m["scd1_updated"] == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(d.c.cost_centre).where(d.c.project_id == 1)).scalars().all() == ["CC-200"]


def test_empty_staging_merges_nothing(warehouse):
    engine = warehouse.get_engine()
    stage(engine, "ows_feed", [feed(1)], "stg-f1", T(2))
    run(warehouse, "dim_feed")
    stage(engine, "ows_feed", [], "stg-f2", T(3))
    result = run(warehouse, "dim_feed")
    assert result.success and "empty" in meta(result, "dim_feed")["note"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(DIM_FEED.table.c.is_deleted)).scalar() == 0


def test_invariants_check_fails_on_a_broken_dimension(warehouse):
    engine = warehouse.get_engine()
    stage(engine, "ows_feed", [feed(1)], "stg-f1", T(2))
    run(warehouse, "dim_feed")
    stage(engine, "ows_feed", [feed(1, name="v2")], "stg-f2", T(3))
    run(warehouse, "dim_feed")
    with engine.begin() as conn:  # open a gap between the two versions
        conn.execute(DIM_FEED.table.update().where(sa.not_(DIM_FEED.table.c.is_current)).values(valid_to=T(2)))
    stage(engine, "ows_feed", [], "stg-f3", T(4))  # nothing to merge: the check sees the damage as it is
    result = run(warehouse, "dim_feed")
    assert checks(result) == {("dim_feed", "scd2_invariants"): False}
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.metadata["gaps_or_overlaps"].value == 1

"""The SCD2 merge engine: change detection, business time, deletions, duplicates, SCD1, the batch
ledger, serialised concurrent merges, and SQL that compiles for Oracle."""

from __future__ import annotations

import datetime as dt
import threading

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import oracle

from ows_pipeline import scd2
from ows_pipeline.scd2 import batch, in_order, out_of_order, scd1
from ows_pipeline.scd2 import (
    DuplicateKeyError,
    apply_scd1,
    invariant_violations,
    merge_scd2,
    row_hashes,
)
from ows_pipeline.warehouse.schema.dimensions import DIM_PROJECT
from ows_pipeline.warehouse.schema import create_warehouse_tables, data_errors, etl_batches
from ows_pipeline_tests.test_scd2_model import SPEC, create_tables, engine_history, fast_sqlite_engine, hours

UTC = dt.timezone.utc


def project(pid, name="P", code=None, bu="BU1", owner="ann", active=True, updated=None):
    return dict(
        project_id=pid,
        project_code=code or f"P{pid}",
        project_name=name,
        business_unit=bu,
        owner=owner,
        active_flag=active,
        created_at=hours(0),
        updated_at=updated or hours(0),
    )


@pytest.fixture
def engine(sqlite_url):
    engine = fast_sqlite_engine(sqlite_url)
    yield engine
    engine.dispose()


def dim_rows(engine, spec=DIM_PROJECT, *cols):
    d = spec.table
    cols = cols or ("project_id", "project_name", "valid_from", "valid_to", "is_current", "is_deleted")
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*[d.c[c] for c in cols]).order_by(d.c[spec.natural_key[0]], d.c.valid_from))]


# ---------------------------------------------------------------- hashing


def test_row_hash_is_typed_null_safe_and_ignores_untracked_columns():
    a = pd.DataFrame([{"x": 1, "y": None, "z": "a"}, {"x": 1, "y": "", "z": "a"}, {"x": 1.0, "y": None, "z": "a"}])
    h = row_hashes(a, ["x", "y", "z"])
    assert h[0] != h[1], "NULL and '' must hash differently"
    assert h[0] == h[2], "1 and 1.0 are the same number"
    wider = a.assign(new_source_column=["q", "r", "s"])
    assert row_hashes(wider, ["x", "y", "z"]) == h, "a new untracked column must not re-version rows"
    assert row_hashes(pd.DataFrame([{"x": "1"}]), ["x"]) != row_hashes(pd.DataFrame([{"x": 1}]), ["x"])
    assert len(h[0]) == 32 and all(c in "0123456789abcdef" for c in h[0])


def test_row_hash_same_from_dicts_and_from_database_types():
    rows = [{"x": True, "y": dt.datetime(2026, 1, 1, 12, tzinfo=UTC), "z": None}]
    naive = [{"x": True, "y": dt.datetime(2026, 1, 1, 12), "z": None}]
    assert row_hashes(pd.DataFrame(rows), ["x", "y", "z"]) == row_hashes(pd.DataFrame(naive), ["x", "y", "z"])


# ---------------------------------------------------------------- merge semantics


def test_change_close_insert_tombstone_and_resurrection(engine):
    s1 = merge_scd2(engine, DIM_PROJECT, [project(1), project(2)], hours(10))
    assert (s1.opened, s1.closed, s1.tombstoned, s1.unchanged) == (2, 0, 0, 0)
    s2 = merge_scd2(engine, DIM_PROJECT, [project(1, name="P-renamed", updated=hours(15))], hours(20))
    assert (s2.opened, s2.closed, s2.tombstoned, s2.unchanged) == (1, 2, 1, 0)
    s3 = merge_scd2(engine, DIM_PROJECT, [project(1, name="P-renamed", updated=hours(15)), project(2)], hours(30))
    assert (s3.opened, s3.closed, s3.tombstoned, s3.unchanged) == (1, 1, 0, 1)
    assert dim_rows(engine) == [
        (1, "P", hours(0).replace(tzinfo=None), hours(15).replace(tzinfo=None), False, False),
        (1, "P-renamed", hours(15).replace(tzinfo=None), None, True, False),
        (2, "P", hours(0).replace(tzinfo=None), hours(20).replace(tzinfo=None), False, False),
        (2, "P", hours(20).replace(tzinfo=None), hours(30).replace(tzinfo=None), False, True),
        (2, "P", hours(30).replace(tzinfo=None), None, True, False),
    ]
    with engine.connect() as conn:
        assert not any(invariant_violations(conn, DIM_PROJECT).values())


def test_updated_at_that_did_not_move_falls_back_to_the_as_of_time(engine):
    merge_scd2(engine, DIM_PROJECT, [project(1, updated=hours(5))], hours(10))
    # the name changed but updated_at is older than the previous extract: business time unknown
    merge_scd2(engine, DIM_PROJECT, [project(1, name="new", updated=hours(8))], hours(20))
    # updated_at in the future of the extract is not believed either
    merge_scd2(engine, DIM_PROJECT, [project(1, name="newer", updated=hours(99))], hours(30))
    froms = [r[2] for r in dim_rows(engine)]
    assert froms == [hours(5).replace(tzinfo=None), hours(20).replace(tzinfo=None), hours(30).replace(tzinfo=None)]


def test_rerunning_a_batch_changes_nothing(engine):
    rows = [project(1), project(2, name="x")]
    merge_scd2(engine, DIM_PROJECT, rows, hours(10), batch_id="b1")
    before = dim_rows(engine, DIM_PROJECT, "project_sk", "project_id", "valid_from", "valid_to", "is_current")
    again = merge_scd2(engine, DIM_PROJECT, rows, hours(10), batch_id="b1")
    assert (again.opened, again.closed, again.tombstoned) == (0, 0, 0)
    assert dim_rows(engine, DIM_PROJECT, "project_sk", "project_id", "valid_from", "valid_to", "is_current") == before


def test_late_full_extract_is_slotted_into_history_with_its_deletions(engine):
    merge_scd2(engine, DIM_PROJECT, [project(1), project(2)], hours(10))
    merge_scd2(engine, DIM_PROJECT, [project(1, name="B"), project(2)], hours(30))
    late = merge_scd2(engine, DIM_PROJECT, [project(1, name="A")], hours(20))
    assert late.path == "out_of_order"
    assert dim_rows(engine) == [
        (1, "P", hours(0).replace(tzinfo=None), hours(20).replace(tzinfo=None), False, False),
        (1, "A", hours(20).replace(tzinfo=None), hours(30).replace(tzinfo=None), False, False),
        (1, "B", hours(30).replace(tzinfo=None), None, True, False),
        (2, "P", hours(0).replace(tzinfo=None), hours(20).replace(tzinfo=None), False, False),
        (2, "P", hours(20).replace(tzinfo=None), hours(30).replace(tzinfo=None), False, True),
        (2, "P", hours(30).replace(tzinfo=None), None, True, False),
    ]


def test_duplicate_keys_are_quarantined_and_the_rest_merges(engine):
    rows = [project(1), project(2, name="a"), project(3), project(2, name="b")]
    stats = merge_scd2(engine, DIM_PROJECT, rows, hours(10), batch_id="dup1", source_file="projects.csv")
    assert stats.rejected == 2 and stats.opened == 2
    assert [r[0] for r in dim_rows(engine)] == [1, 3]
    with engine.connect() as conn:
        errors = conn.execute(sa.select(data_errors).where(data_errors.c.batch_id == "dup1")).mappings().all()
    assert sorted(e["row_number"] for e in errors) == [2, 4]
    e = errors[0]
    assert e["rule"] == "duplicate_natural_key" and e["asset_key"] == "dim_project" and e["field"] == "project_id"
    assert e["record_key"] == "2" and e["source_file"] == "projects.csv" and e["severity"] == "ERROR"
    assert "rows 2, 4" in e["message"] and "Keep one row per key" in e["message"]


def test_duplicate_keys_fail_the_batch_when_configured(engine):
    merge_scd2(engine, DIM_PROJECT, [project(1)], hours(5))
    before = dim_rows(engine)
    with pytest.raises(DuplicateKeyError, match=r"project_id=2 appears 2 times"):
        merge_scd2(engine, DIM_PROJECT, [project(2), project(2)], hours(10), on_duplicate="fail", batch_id="dupf")
    assert dim_rows(engine) == before
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(data_errors.c.batch_id == "dupf")).scalar() == 2


def test_missing_tracked_column_is_a_clear_error(engine):
    with pytest.raises(scd2.Scd2Error, match=r"lacks column\(s\) \['project_name'\]"):
        merge_scd2(engine, DIM_PROJECT, [{"project_id": 1, "project_code": "A", "active_flag": True}], hours(1))


def test_each_merge_is_recorded_in_etl_batches(engine):
    merge_scd2(engine, DIM_PROJECT, [project(1)], hours(5), batch_id="led1")
    with engine.connect() as conn:
        row = conn.execute(sa.select(etl_batches).where(etl_batches.c.batch_id == "led1")).mappings().one()
    assert row["asset_key"] == "dim_project" and row["status"] == "SUCCESS" and row["mode"] == "full"
    assert row["rows_in"] == 1 and row["as_of"] == hours(5).replace(tzinfo=None)


# ---------------------------------------------------------------- SCD1


def test_scd1_columns_are_overwritten_in_place_without_new_versions(engine):
    merge_scd2(engine, DIM_PROJECT, [project(1, bu="OLD"), project(2, bu="OLD")], hours(5))
    merge_scd2(engine, DIM_PROJECT, [project(1, name="v2", bu="OLD"), project(2, bu="OLD")], hours(6))
    s = merge_scd2(engine, DIM_PROJECT, [project(1, name="v2", bu="NEW"), project(2, bu="OLD")], hours(7))
    assert s.opened == 0 and s.scd1_updated == 1
    assert dim_rows(engine, DIM_PROJECT, "project_id", "project_name", "business_unit") == [
        (1, "P", "OLD"),
        (1, "v2", "NEW"),
        (2, "P", "OLD"),
    ]
    n = apply_scd1(engine, DIM_PROJECT, [{"project_code": "P1", "cost_centre": "CC9", "owner": "bob", "business_unit": "X"}],
                   match_on=["project_code"], scope="all")
    assert n == 2
    assert dim_rows(engine, DIM_PROJECT, "project_id", "cost_centre", "owner", "business_unit") == [
        (1, "CC9", "bob", "X"),
        (1, "CC9", "bob", "X"),
        (2, None, "ann", "OLD"),
    ]


# ---------------------------------------------------------------- concurrency and Oracle


def _concurrent_merges(engine):
    merge_scd2(engine, SPEC, [{"thing_id": 1, "label": "a", "size": 1}], hours(1))
    errors = []

    def worker(i):
        try:
            rows = [{"thing_id": k, "label": f"w{i}", "size": i} for k in range(50)]
            merge_scd2(engine, SPEC, rows, hours(10 + i), batch_id=f"w{i}")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with engine.connect() as conn:
        assert not any(invariant_violations(conn, SPEC).values())
        hist = engine_history(conn)
    current = {r[0]: r[1] for r in hist if r[5]}
    assert current == {k: "w3" for k in range(50)}


def test_concurrent_merges_are_serialised_sqlite(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'c.db'}", connect_args={"timeout": 60})
    create_tables(engine)
    _concurrent_merges(engine)


@pytest.mark.postgres
def test_concurrent_merges_are_serialised_postgres(pg_url):
    engine = sa.create_engine(pg_url)
    create_tables(engine)
    _concurrent_merges(engine)
    engine.dispose()


def test_merge_sql_compiles_for_oracle():
    temps = batch._temps(DIM_PROJECT)
    statements = in_order.fast_path_diff_statements(DIM_PROJECT, temps, full=True)
    statements += in_order.fast_path_diff_statements(DIM_PROJECT, temps, full=True, one_pass=True)
    statements += in_order.fast_path_statements(DIM_PROJECT, temps, full=True, as_of=hours(1), last_full=hours(0), batch_id="b")
    statements += [s[1] if isinstance(s, tuple) else s for s in
                   out_of_order.out_of_order_statements(DIM_PROJECT, temps, full=True, as_of=hours(1), batch_id="b")]
    statements.append(scd1.scd1_statement(DIM_PROJECT, temps.stage, ["project_id"], ["owner"], "current"))
    for stmt in statements:
        sql = str(stmt.compile(dialect=oracle.dialect()))
        assert " NOT IN " not in sql.upper()
    assert any("LAG(" in str(s.compile(dialect=oracle.dialect())).upper() for s in statements)


@pytest.mark.postgres
def test_same_history_on_postgres(pg_url):
    engine = sa.create_engine(pg_url)
    create_warehouse_tables(engine)
    merge_scd2(engine, DIM_PROJECT, [project(1), project(2)], hours(10))
    merge_scd2(engine, DIM_PROJECT, [project(1, name="B")], hours(30))
    merge_scd2(engine, DIM_PROJECT, [project(1, name="A"), project(2)], hours(20))
    with engine.connect() as conn:
        got = [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in conn.execute(sa.text(
            "select project_id, project_name, valid_from, valid_to, is_current, is_deleted from dim_project "
            "order by project_id, valid_from"))]
        assert not any(invariant_violations(conn, DIM_PROJECT).values())
    engine.dispose()
    assert got == [
        (1, "P", hours(0), hours(20), False, False),
        (1, "A", hours(20), hours(30), False, False),
        (1, "B", hours(30), None, True, False),
        (2, "P", hours(0), hours(30), False, False),
        (2, "P", hours(30), None, True, True),
    ]

"""The Oracle path: extraction SQL compiled with SQLAlchemy's Oracle dialect, URL checks, live tests."""

from __future__ import annotations

import datetime as dt
import os

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import oracle

from ows_pipeline.extract.extraction import ExtractOptions, extract_query, extract_table
from ows_pipeline.resources import SourceConfigError, check_oracle_url, make_engine
from ows_pipeline.source.schema import SOURCE_TABLES, metadata

LOWER = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
UPPER = dt.datetime(2026, 11, 8, tzinfo=dt.timezone.utc)


def compile_oracle(statement) -> str:
    return str(statement.compile(dialect=oracle.dialect()))


@pytest.mark.parametrize("source", SOURCE_TABLES, ids=lambda s: s.name)
def test_extraction_queries_compile_for_oracle(source):
    lower = 100 if source.mode == "append" else LOWER
    sql = compile_oracle(extract_query(source, "oracle", lower, UPPER))
    assert "LIMIT" not in sql.upper()
    assert f"FROM {source.name}" in sql  # lower-case names are not quoted
    timestamp_columns = [c.name for c in source.table.columns if isinstance(c.type, sa.TIMESTAMP)]
    for name in timestamp_columns:
        assert f"sys_extract_utc({source.name}.{name}) AS {name}" in sql
    if source.mode == "incremental":
        assert f"{source.name}.last_update_date > :wm_lower" in sql
        assert f"{source.name}.last_update_date <= :wm_upper" in sql
    elif source.mode == "append":
        assert f"{source.name}.hist_id > :wm_lower" in sql
    else:
        assert "WHERE" not in sql


def test_schema_translation_qualifies_oracle_tables():
    query = extract_query(SOURCE_TABLES[5], "oracle", LOWER, UPPER)
    compiled = query.compile(dialect=oracle.dialect(), schema_translate_map={None: "ows_app"})
    sql = compiled.preparer._render_schema_translates(str(compiled), {None: "ows_app"})
    assert "FROM ows_app.ows_workflow_run" in sql


def test_configured_schema_must_be_an_identifier():
    with pytest.raises(SourceConfigError, match="OWS_SOURCE_SCHEMA"):
        ExtractOptions(schema="ows; drop table x")
    assert ExtractOptions(schema="OWS_APP").schema == "OWS_APP"


def test_source_ddl_compiles_for_oracle():
    ddl = "\n".join(str(sa.schema.CreateTable(t).compile(dialect=oracle.dialect())) for t in metadata.sorted_tables)
    assert "TIMESTAMP WITH TIME ZONE" in ddl
    assert '"' not in ddl


def test_first_rows_preview_uses_fetch_first_not_limit():
    sql = compile_oracle(extract_query(SOURCE_TABLES[0], "oracle").limit(5))
    assert "FETCH FIRST" in sql and "LIMIT" not in sql


def test_sid_path_is_refused_with_the_fix():
    with pytest.raises(SourceConfigError, match=r"\?service_name=OWS"):
        check_oracle_url(sa.make_url("oracle+oracledb://scott:tiger@db.example:1521/OWS"))
    check_oracle_url(sa.make_url("oracle+oracledb://scott:tiger@db.example:1521/?service_name=OWS"))


def test_sid_error_does_not_show_the_password():
    with pytest.raises(SourceConfigError) as info:
        check_oracle_url(sa.make_url("oracle+oracledb://scott:s3cr3t-pw@db.example:1521/OWS"))
    assert "s3cr3t-pw" not in str(info.value)


def test_thick_driver_is_refused():
    with pytest.raises(SourceConfigError, match="oracle\\+oracledb"):
        check_oracle_url(sa.make_url("oracle+cx_oracle://scott:tiger@db.example:1521/?service_name=OWS"))


def test_oracle_engine_uses_thin_mode_and_large_arraysize():
    engine = make_engine("oracle+oracledb://scott@db.example:1521/?service_name=OWS")
    assert engine.dialect.driver == "oracledb"
    assert engine.dialect.arraysize >= 1000


@pytest.mark.oracle
@pytest.mark.skipif(not os.environ.get("OWS_TEST_ORACLE_URL"), reason="live Oracle tests need OWS_TEST_ORACLE_URL")
def test_live_oracle_extract(sqlite_url):
    """Against a real Oracle: create the OWS tables, fill a few rows, extract them."""
    from ows_pipeline.warehouse.schema import create_warehouse_tables
    from ows_pipeline_tests.small_source import build_small_source

    source = build_small_source(os.environ["OWS_TEST_ORACLE_URL"], runs=5)
    try:
        warehouse = make_engine(sqlite_url, role="warehouse")
        create_warehouse_tables(warehouse)
        for table in SOURCE_TABLES:
            extract_table(source, warehouse, table, ExtractOptions())
        with warehouse.connect() as conn:
            assert conn.execute(sa.text("select count(*) from raw_ows_workflow_run")).scalar_one() == 5
    finally:
        metadata.drop_all(source)


def test_oracle_extract_compiles_with_schema_and_processed_binds():
    from ows_pipeline.warehouse.bulk import compile_for

    run = SOURCE_TABLES[5]
    sql, params = compile_for(oracle.dialect(), extract_query(run, "oracle", LOWER, UPPER), {None: "ows_app"})
    assert "FROM ows_app.ows_workflow_run" in sql and ":wm_lower" in sql and ":wm_upper" in sql
    assert set(params) == {"wm_lower", "wm_upper"} and params["wm_upper"].replace(tzinfo=dt.timezone.utc) == UPPER


class FetchDfConnection:
    """Stands in for a python-oracledb connection (no Oracle server can run here): `fetch_df_batches`
    answers objects with the Arrow stream interface, in the types python-oracledb uses for these
    columns (NUMBER as decimal or double, DATE as timestamp[s], upper-case names)."""

    def __init__(self, tables):
        self.tables, self.calls = tables, []

    def fetch_df_batches(self, statement, parameters=None, size=None):
        self.calls.append((statement, parameters, size))
        yield from self.tables


@pytest.mark.postgres
@pytest.mark.parametrize("warehouse", ["sqlite", "postgres"])
def test_oracle_batches_take_the_shared_arrow_path(warehouse, sqlite_url, pg_url):
    import pyarrow as pa

    from ows_pipeline.source.schema import ows_workflow_run
    from ows_pipeline.warehouse.bulk import arrow_schema, driver_batches, write_arrow

    def oracle_table(ids):
        n = len(ids)
        return pa.table({
            "RUN_ID": pa.array(ids, pa.decimal128(38, 0)),
            "WORKFLOW_ID": pa.array([1000.0] * n, pa.float64()),
            "RUN_KEY": pa.array([f"RK{i}" if i % 2 else "\\N" for i in ids], pa.large_string()),
            "PARENT_RUN_ID": pa.array([None] * n, pa.decimal128(38, 0)),
            "BUSINESS_DATE": pa.array([dt.datetime(2026, 11, 2)] * n, pa.timestamp("s")),
            "STATUS": pa.array(["COMPLETE"] * n), "RESULT_CODE": pa.array([None if i % 3 else "" for i in ids], pa.string()),
            "RECORDS_LOADED": pa.array([2**31 - 1] * n, pa.decimal128(38, 0)),
            "MATCHED_CNT": pa.array([0] * n, pa.int64()), "SUGGESTED_CNT": pa.array([None] * n, pa.float64()),
            "UNMATCHED_CNT": pa.array([-5] * n, pa.int64()),
            "BEGIN_DATE": pa.array([dt.datetime(2026, 11, 2, 8, 0, 0, 123456)] * n, pa.timestamp("ns")),  # SYS_EXTRACT_UTC
            "END_DATE": pa.array([None] * n, pa.timestamp("ns")),
            "LAST_UPDATE_DATE": pa.array([dt.datetime(2026, 11, 2, 9)] * n, pa.timestamp("us")),
        })

    driver = FetchDfConnection([oracle_table([1, 2, 3]), oracle_table([4, 5])])
    schema = arrow_schema(ows_workflow_run)
    batches = list(driver_batches("oracle", driver, "SELECT ...", {"wm_lower": 1}, schema, 3))
    assert driver.calls == [("SELECT ...", {"wm_lower": 1}, 3)]
    assert [b.num_rows for b in batches] == [3, 2] and all(b.schema == schema for b in batches)
    engine = sa.create_engine(sqlite_url if warehouse == "sqlite" else pg_url)
    ows_workflow_run.create(engine)
    with engine.begin() as conn:
        assert write_arrow(conn, ows_workflow_run, batches) == 5
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ows_workflow_run).order_by(ows_workflow_run.c.run_id)).all()
    utc = dt.timezone.utc
    first = rows[0]
    assert [r.run_id for r in rows] == [1, 2, 3, 4, 5] and first.workflow_id == 1000
    assert [r.run_key for r in rows] == ["RK1", "\\N", "RK3", "\\N", "RK5"]
    assert [r.result_code for r in rows] == [None, None, "", None, None]
    assert first.business_date == dt.date(2026, 11, 2) and first.records_loaded == 2**31 - 1
    assert first.suggested_cnt is None and first.unmatched_cnt == -5 and first.end_date is None
    assert first.begin_date.replace(tzinfo=first.begin_date.tzinfo or utc) == dt.datetime(2026, 11, 2, 8, 0, 0, 123456, tzinfo=utc)
    engine.dispose()

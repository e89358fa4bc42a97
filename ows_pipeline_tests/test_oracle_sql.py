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

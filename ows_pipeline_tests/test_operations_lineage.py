"""Column lineage from the table declarations: raw -> staging -> dimensions -> facts."""

import dagster as dg
import sqlalchemy as sa

from ows_pipeline.warehouse.schema.lineage import column_lineage, column_schema, table_metadata
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.warehouse.schema import RAW_TABLES


def _deps(lineage: dg.TableColumnLineage, column: str) -> set:
    return {(d.asset_key.to_user_string(), d.column_name) for d in lineage.deps_by_column.get(column, [])}


def test_staging_columns_come_from_the_raw_columns_of_the_same_name():
    stg = STAGING_TABLES["ows_workflow_run"]
    lineage = column_lineage(stg, {"raw_ows_workflow_run": RAW_TABLES["ows_workflow_run"]})
    assert _deps(lineage, "status") == {("raw_ows_workflow_run", "status")}
    assert _deps(lineage, "last_update_date") == {("raw_ows_workflow_run", "last_update_date")}
    assert "_batch_id" not in lineage.deps_by_column


def test_renamed_and_joined_columns_through_extra():
    meta = sa.MetaData()
    fact = sa.Table("fct", meta, sa.Column("run_id", sa.Integer), sa.Column("project_sk", sa.Integer),
                    sa.Column("sla_breach", sa.Boolean), sa.Column("batch_id", sa.String))
    dim = sa.Table("dim_project", meta, sa.Column("project_sk", sa.Integer), sa.Column("batch_id", sa.String))
    lineage = column_lineage(
        fact,
        {"stg_ows_workflow_run": STAGING_TABLES["ows_workflow_run"], "dim_project": dim},
        extra={"sla_breach": [("ref_feed_sla", "sla_minutes"), ("stg_ows_workflow_run", "end_date")]},
    )
    assert _deps(lineage, "run_id") == {("stg_ows_workflow_run", "run_id")}
    assert _deps(lineage, "project_sk") == {("dim_project", "project_sk")}
    assert _deps(lineage, "sla_breach") == {("ref_feed_sla", "sla_minutes"), ("stg_ows_workflow_run", "end_date")}
    assert "batch_id" not in lineage.deps_by_column


def test_metadata_is_accepted_by_a_materialization():
    stg = STAGING_TABLES["ows_project"]
    metadata = table_metadata(stg, {"raw_ows_project": RAW_TABLES["ows_project"]})

    @dg.asset(name="stg_ows_project", deps=["raw_ows_project"])
    def stg_asset():
        return dg.MaterializeResult(metadata=metadata)

    result = dg.materialize([stg_asset])
    recorded = result.asset_materializations_for_node("stg_ows_project")[0].metadata
    assert isinstance(recorded["dagster/column_lineage"], dg.TableColumnLineageMetadataValue)
    assert {c.name for c in column_schema(stg).columns} == {c.name for c in stg.columns}


def test_weekly_snapshot_lineage_names_real_columns():
    """Every (asset, column) the snapshot's lineage names exists in that asset's table declaration."""
    from ows_pipeline.warehouse.schema.dimensions import DIMENSIONS
    from ows_pipeline.warehouse.schema.facts import fct_workflow_run_weekly
    from ows_pipeline.warehouse.schema.lineage import WEEKLY_SNAPSHOT_LINEAGE, weekly_snapshot_metadata
    from ows_pipeline.warehouse.schema.uploads import ref_feed_sla

    tables = {f"stg_{k}": t for k, t in STAGING_TABLES.items()}
    tables.update({name: spec.table for name, spec in DIMENSIONS.items()})
    tables["ref_feed_sla"] = ref_feed_sla
    for column, deps in WEEKLY_SNAPSHOT_LINEAGE.items():
        assert column in fct_workflow_run_weekly.columns, column
        for asset, upstream_column in deps:
            assert upstream_column in tables[asset].columns, (column, asset, upstream_column)
    lineage = weekly_snapshot_metadata()["dagster/column_lineage"]
    assert _deps(lineage, "project_sk") == {("dim_project", "project_sk")}
    assert "batch_id" not in lineage.deps_by_column


def test_dimension_and_staging_metadata():
    from ows_pipeline.warehouse.schema.dimensions import DIMENSIONS
    from ows_pipeline.warehouse.schema.lineage import dimension_metadata, staging_metadata
    from ows_pipeline.warehouse.schema.uploads import ref_project_metadata

    project = dimension_metadata(DIMENSIONS["dim_project"].table)["dagster/column_lineage"]
    assert _deps(project, "project_code") == {("stg_ows_project", "project_code")}
    assert ("ref_project_metadata", "cost_centre") in _deps(project, "cost_centre")
    assert "cost_centre" in ref_project_metadata.columns
    assert "row_hash" not in project.deps_by_column
    staged = staging_metadata("ows_feed")["dagster/column_lineage"]
    assert _deps(staged, "feed_code") == {("raw_ows_feed", "feed_code")}

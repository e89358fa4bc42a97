"""Dagster definitions of the dimensions domain: the SCD2 dimensions `dim_*` and their blocking checks."""

import dagster as dg

from ows_pipeline.warehouse.schema.scd2 import DimensionSpec
from ows_pipeline.warehouse.schema.dimensions import DIMENSIONS
from ows_pipeline.defs.policies import DIMENSION_MERGE_POOL
from ows_pipeline.resources import WarehouseResource

INVARIANTS_CHECK = "scd2_invariants"

_DESCRIPTIONS = {
    "dim_project": "Projects, SCD type 2 on code, name and active flag; business unit, cost centre and owner "
    "(from uploaded project metadata when present) are overwritten in place on the current version.",
    "dim_feed": "Feeds (files or extracts from source systems), SCD type 2.",
    "dim_match_process": "Match processes (reconciliation rules pairing two feeds), SCD type 2.",
    "dim_workflow": "Workflow definitions, SCD type 2.",
}


def _dimension_asset(spec: DimensionSpec) -> dg.AssetsDefinition:
    staging_key = dg.AssetKey("stg_ows_" + spec.name.removeprefix("dim_"))

    @dg.asset(
        name=spec.name,
        group_name="ows_dimensions",
        # dim_project also reads the uploaded project metadata (business unit, cost centre, owner)
        deps=[staging_key] + ([dg.AssetKey("ref_project_metadata")] if spec.name == "dim_project" else []),
        pool=DIMENSION_MERGE_POOL,
        kinds={"sqlite", "postgres"},
        owners=["team:data-engineering"],
        description=_DESCRIPTIONS[spec.name]
        + " Merged from the staged full extract at its as-of time: changed rows open a version, keys gone "
        "from the extract get a tombstone; history is replayable and safe for late batches.",
        check_specs=[
            dg.AssetCheckSpec(
                INVARIANTS_CHECK,
                asset=spec.name,
                blocking=True,
                description="Blocking: per key, versions are contiguous (valid_to = next valid_from), "
                "valid_from < valid_to, exactly one current row with valid_to null.",
            )
        ],
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        from ows_pipeline.dimensions.from_staging import build_dimension
        from ows_pipeline.scd2 import invariant_violations
        from ows_pipeline.warehouse.schema.lineage import dimension_metadata

        engine = warehouse.get_engine()
        load = build_dimension(engine, spec)
        metadata: dict = {
            "staging_table": load.staging_table,
            "staged_batch": load.staged_batch or "",
            "as_of": load.as_of.isoformat(),
            "as_of_source": load.as_of_source,
        }
        if load.stats is None:
            context.log.warning(f"{load.staging_table} holds no rows: nothing merged into {spec.name}.")
            metadata["note"] = f"{load.staging_table} is empty; nothing merged"
        else:
            metadata.update(load.stats.as_metadata())
            context.log.info(f"{spec.name}: {load.stats.as_metadata()}")
            metadata["what_changed"] = _what_changed(engine, spec, load.stats.batch_id)
        with engine.connect() as conn:
            violations = invariant_violations(conn, spec)
            d = spec.table
            rows, current = conn.execute(_row_counts(d)).one()
        metadata["dagster/row_count"] = int(rows)
        metadata.update(dimension_metadata(spec.table))
        metadata["current_rows"] = int(current or 0)
        check = dg.AssetCheckResult(
            check_name=INVARIANTS_CHECK,
            passed=not any(violations.values()),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={name: int(n) for name, n in violations.items()},
            description=None if not any(violations.values()) else "SCD2 invariants violated: "
            + ", ".join(f"{k}={v}" for k, v in violations.items() if v),
        )
        return dg.MaterializeResult(metadata=metadata, check_results=[check])

    return _asset


def _what_changed(engine, spec: DimensionSpec, batch_id: str, limit: int = 50) -> dg.MetadataValue:
    """The versions this merge opened, key by key (the first `limit`), as a Markdown table."""
    from ows_pipeline.scd2.changes import batch_changes

    with engine.connect() as conn:
        total, rows = batch_changes(conn, spec, batch_id, limit)
    if not rows:
        return dg.MetadataValue.md("No key opened, changed, retired or reactivated a version.")
    lines = ["| key | change | valid from | detail |", "|---|---|---|---|"]
    lines += [f"| {r['key']} | {r['change']} | {r['valid_from']} | {r['detail'].replace('|', '/')} |" for r in rows]
    if total > len(rows):
        lines.append(f"\n{len(rows)} of {total:,} versions shown.")
    return dg.MetadataValue.md("\n".join(lines))


def _row_counts(table):
    """Rows and current rows of a dimension."""
    import sqlalchemy as sa

    return sa.select(sa.func.count(), sa.func.sum(sa.case((table.c.is_current, 1), else_=0)))


dimension_assets = [_dimension_asset(spec) for spec in DIMENSIONS.values()]

defs = dg.Definitions(assets=dimension_assets)

"""Dagster definitions of the facts domain: the weekly snapshot `fct_workflow_run_weekly`."""

import dagster as dg

from ows_pipeline.facts.weekly_snapshot import build_week, preview_rows, week_for_key, week_summary
from ows_pipeline.partitions import weekly_partitions
from ows_pipeline.resources import WarehouseResource

SNAPSHOT_INPUTS = [
    dg.AssetKey("stg_ows_workflow_run"),
    dg.AssetKey("stg_ows_run_step_history"),
    dg.AssetKey("stg_ows_workflow_step"),
    dg.AssetKey("stg_ows_workflow"),
    dg.AssetKey("dim_project"),
    dg.AssetKey("dim_feed"),
    dg.AssetKey("dim_match_process"),
    dg.AssetKey("dim_workflow"),
    dg.AssetKey("ref_feed_sla"),
]


@dg.asset(
    name="fct_workflow_run_weekly",
    group_name="ows_facts",
    partitions_def=weekly_partitions,
    deps=SNAPSHOT_INPUTS,
    kinds={"sql", "sqlite", "postgres"},
    owners=["team:data-engineering"],
    tags={"ows/layer": "fact"},
)
def fct_workflow_run_weekly(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Weekly snapshot: one row per workflow run active or ended in the week, with its status and
    result as of the week's end (rebuilt from step history, so a past week rebuilt today is exact),
    counts, duration, SLA breach and the dimension keys valid at the week's end.
    Re-materializing a week replaces that week only."""
    week = week_for_key(context.partition_key, weekly_partitions.timezone)
    engine = warehouse.get_engine()
    built = build_week(engine, week, run_id=context.run.run_id)
    with engine.connect() as conn:
        summary = week_summary(conn, week)
        preview = preview_rows(conn, week)
    if not built.with_sla:
        context.log.info("ref_feed_sla does not exist: sla_minutes and sla_breached stay empty.")
    context.log.info(f"Week {week.key} ({week.start_utc:%Y-%m-%d %H:%M}Z to {week.end_utc:%Y-%m-%d %H:%M}Z): {built.rows} runs.")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": built.rows,
            "week_start_utc": dg.MetadataValue.timestamp(week.start_utc),
            "week_end_utc": dg.MetadataValue.timestamp(week.end_utc),
            "batch_id": built.batch_id,
            "seconds": round(built.seconds, 3),
            **{k: v for k, v in summary.items() if k != "runs"},
            "sla_known": built.with_sla,
            "preview": dg.MetadataValue.md(preview),
        }
    )


defs = dg.Definitions(assets=[fct_workflow_run_weekly])

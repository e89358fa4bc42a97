"""Dagster definitions of the facts domain: the weekly snapshot `fct_workflow_run_weekly`."""

import dagster as dg

from ows_pipeline.facts.weekly_snapshot import build_week, preview_rows, unresolved_keys, week_summary
from ows_pipeline.warehouse.schema.lineage import weekly_snapshot_metadata
from ows_pipeline.partitions import weekly_partitions
from ows_pipeline.resources import WarehouseResource
from ows_pipeline.weeks import weeks_of_partitions

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

KEYS_CHECK = "dimension_keys_resolved"


@dg.asset(
    name="fct_workflow_run_weekly",
    group_name="ows_facts",
    partitions_def=weekly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=SNAPSHOT_INPUTS,
    kinds={"sql", "sqlite", "postgres"},
    owners=["team:data-engineering"],
    tags={"ows/layer": "fact"},
    check_specs=[
        dg.AssetCheckSpec(
            KEYS_CHECK,
            asset="fct_workflow_run_weekly",
            description="[WARN] Every run's project, feed, match process and workflow has a dimension version "
            "valid at the week's end (else its names and surrogate keys stay empty).",
        )
    ],
)
def fct_workflow_run_weekly(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Weekly snapshot: one row per workflow run active or ended in the week, with its status and
    result as of the week's end (rebuilt from step history, so a past week rebuilt today is exact),
    counts, duration, SLA breach and the dimension keys valid at the week's end.
    Re-materializing a week replaces that week only; a backfill of many weeks runs in one run."""
    engine = warehouse.get_engine()
    weeks = weeks_of_partitions(weekly_partitions, context.partition_keys)
    builds = []
    for week in weeks:
        built = build_week(engine, week, run_id=context.run.run_id)
        builds.append(built)
        context.log.info(
            f"Week {week.key} ({week.start_utc:%Y-%m-%d %H:%M}Z to {week.end_utc:%Y-%m-%d %H:%M}Z): "
            f"{built.rows} runs in {built.seconds:.2f} s."
        )
    sla_known = builds[-1].with_sla
    if not sla_known:
        context.log.info("No feed SLA list is loaded (ref_feed_sla is empty): SLA minutes and breaches are unknown.")
    with engine.connect() as conn:
        missing = unresolved_keys(conn, weeks)
        summary = week_summary(conn, weeks[0], sla_known=sla_known)
        preview = preview_rows(conn, weeks[0], sla_known=sla_known)
    keys_check = dg.AssetCheckResult(
        check_name=KEYS_CHECK,
        passed=not any(missing.values()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={f"rows_without_{name}": count for name, count in missing.items()},
    )
    if len(builds) > 1:
        return dg.MaterializeResult(metadata=_range_metadata(builds), check_results=[keys_check])
    week, built = weeks[0], builds[0]
    return dg.MaterializeResult(
        check_results=[keys_check],
        metadata={
            "dagster/row_count": built.rows,
            "week_start_utc": dg.MetadataValue.timestamp(week.start_utc),
            "week_end_utc": dg.MetadataValue.timestamp(week.end_utc),
            "batch_id": built.batch_id,
            "seconds": round(built.seconds, 3),
            **{k: v for k, v in summary.items() if k != "runs" and v is not None},
            **({} if built.with_sla else {"sla_breached": dg.MetadataValue.text("unknown: no feed SLA list loaded")}),
            "sla_known": built.with_sla,
            "preview": dg.MetadataValue.md(preview),
            **weekly_snapshot_metadata(),
        }
    )


def _range_metadata(builds) -> dict:
    lines = ["| week | runs | seconds | batch |", "|---|---:|---:|---|"]
    lines += [f"| {b.week.key} | {b.rows} | {b.seconds:.2f} | {b.batch_id} |" for b in builds]
    return {
        "weeks": len(builds),
        "dagster/row_count": sum(b.rows for b in builds),
        "seconds": round(sum(b.seconds for b in builds), 3),
        "weeks_built": dg.MetadataValue.md("\n".join(lines)),
        **weekly_snapshot_metadata(),
    }


defs = dg.Definitions(assets=[fct_workflow_run_weekly])

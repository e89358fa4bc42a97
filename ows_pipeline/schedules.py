"""The weekly job and its schedule: the whole pipeline for one week, every Sunday 02:00 local time.

`ows_weekly_job` targets the raw extracts, staging, dimensions, the weekly snapshot and the report
with its email. Dagster 1.13 lets one asset job hold weekly-partitioned and unpartitioned assets:
a run for week `2026-11-15` refreshes the unpartitioned stages (raw, staging, dimensions) as they
are, then builds that week's partition of the snapshot and report. Every run of the job carries the
tag `ows/week` (its partition key), also when launched from the UI or as a backfill, so the
instance's run queue runs at most one run per week at a time.

`ows_weekly_schedule` fires at 02:00 on Sunday in the partitions' time zone (OWS_TIMEZONE) for the
week that ended at midnight, tagged `ows/trigger=schedule`. Its cron runs in that time zone, so it
stays at 02:00 local time across daylight-saving changes. It is on by default.
"""

import dagster as dg

from ows_pipeline.partitions import weekly_partitions

WEEK_TAG = "ows/week"
TRIGGER_TAG = "ows/trigger"

WEEKLY_GROUPS = ("ows_raw", "ows_staging", "ows_dimensions", "ows_facts", "ows_reports")
"""Asset groups the weekly job materializes (uploads run from their own sensor)."""


def week_tags(partition_key: str) -> dict[str, str]:
    """Tags of every run of the weekly job for one week."""
    return {WEEK_TAG: partition_key}


weekly_run_config = dg.PartitionedConfig(
    partitions_def=weekly_partitions,
    run_config_for_partition_key_fn=lambda _partition_key: {},
    tags_for_partition_key_fn=week_tags,
)

ows_weekly_job = dg.define_asset_job(
    name="ows_weekly_job",
    selection=dg.AssetSelection.groups(*WEEKLY_GROUPS),
    config=weekly_run_config,
    description=(
        "The whole pipeline for one week: raw extracts, staging, dimensions (unpartitioned, refreshed "
        "as they are), then the week's fct_workflow_run_weekly, ows_weekly_report and its email."
    ),
)

ows_weekly_schedule = dg.build_schedule_from_partitioned_job(
    ows_weekly_job,
    name="ows_weekly_schedule",
    description="Sunday 02:00 local time (OWS_TIMEZONE): the week that ended at midnight.",
    minute_of_hour=0,
    hour_of_day=2,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={TRIGGER_TAG: "schedule"},
)

defs = dg.Definitions(jobs=[ows_weekly_job], schedules=[ows_weekly_schedule])

"""The weekly job and its schedule: the whole pipeline for one week, every Sunday 02:00 local time.

`ows_weekly_job` targets the raw extracts, staging, dimensions, the weekly snapshot and the report
with its email. Dagster 1.13 lets one asset job hold weekly-partitioned and unpartitioned assets:
a run for week `2026-11-15` refreshes the unpartitioned stages (raw, staging, dimensions) as they
are, then builds that week's partition of the snapshot and report. Every run of the job carries the
tag `dagster/partition`, so the instance's run queue runs at most one run per week at a time.

`ows_weekly_schedule` fires at 02:00 on Sunday in the partitions' time zone (OWS_TIMEZONE) for the
week that ended at midnight (Dagster tags the run `dagster/schedule_name`). Its cron runs in
that time zone, so it stays at 02:00 local time across daylight-saving changes. It is on by default.
"""

import datetime as dt
import warnings

import dagster as dg

from ows_pipeline.partitions import FIRST_WEEK, weekly_partitions
from ows_pipeline.weeks import week_ended_by

WEEKLY_GROUPS = ("ows_raw", "ows_staging", "ows_dimensions", "ows_facts", "ows_reports")
"""Asset groups the weekly job materializes (uploads run from their own sensor)."""

# The job runs one week per run (the report assets' policy); the snapshot's single-run policy only
# serves backfills of the snapshot alone. Dagster warns about the mix each time it resolves the job.
warnings.filterwarnings(
    "ignore", message="Asset job ows_weekly_job materializes assets with varying BackfillPolicies", category=UserWarning
)

ows_weekly_job = dg.define_asset_job(
    name="ows_weekly_job",
    selection=dg.AssetSelection.groups(*WEEKLY_GROUPS),
    # One process for the whole run: the steps are database-bound, and each extra process would
    # pay the start-up and the Great Expectations import again.
    executor_def=dg.in_process_executor,
    description=(
        "The whole pipeline for one week: raw extracts, staging, dimensions (unpartitioned, refreshed "
        "as they are), then the week's fct_workflow_run_weekly, ows_weekly_report and its email."
    ),
)


def week_just_ended(at: dt.datetime) -> str | None:
    """The partition key of the last week that ended at or before `at` (None before the first week)."""
    week = week_ended_by(at, weekly_partitions.timezone, FIRST_WEEK)
    return week.key if week else None


@dg.schedule(
    name="ows_weekly_schedule",
    cron_schedule="0 2 * * 0",  # Sunday 02:00, in the partitions' time zone
    execution_timezone=weekly_partitions.timezone,
    job=ows_weekly_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sunday 02:00 local time (OWS_TIMEZONE): the whole pipeline for the week that ended at midnight.",
)
def ows_weekly_schedule(context: dg.ScheduleEvaluationContext):
    at = context.scheduled_execution_time or dt.datetime.now(dt.timezone.utc)
    week = week_just_ended(at)
    if week is None:
        first = weekly_partitions.start.strftime("%Y-%m-%d")
        return dg.SkipReason(f"No week has ended yet at {at:%Y-%m-%d %H:%M %Z} (the first week starts {first}).")
    return dg.RunRequest(run_key=week, partition_key=week)


defs = dg.Definitions(jobs=[ows_weekly_job], schedules=[ows_weekly_schedule])

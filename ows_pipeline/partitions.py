"""Weekly partitions: Sunday 00:00 to Sunday 00:00 in OWS_TIMEZONE (default Europe/London)."""

import os

import dagster as dg

from ows_pipeline.settings import Settings

FIRST_WEEK = os.environ.get("OWS_FIRST_WEEK") or "2025-01-05"

weekly_partitions = dg.WeeklyPartitionsDefinition(
    start_date=FIRST_WEEK,
    day_offset=0,
    timezone=Settings.from_env().timezone,
)

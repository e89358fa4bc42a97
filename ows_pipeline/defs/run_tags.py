"""Run tags a data team filters on: the week a run is about and what triggered it.

`ows/week` holds the weekly partition key (the Sunday the week starts, `YYYY-MM-DD`);
`ows/trigger` is one of `schedule`, `sensor`, `backfill`, `manual`. The weekly schedule and the
sensors set them through `run_tags`; `ows_run_tags_sensor` stamps runs launched from the UI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

WEEK_TAG = "ows/week"
TRIGGER_TAG = "ows/trigger"
TRIGGERS = ("schedule", "sensor", "backfill", "manual")

PARTITION_TAG = "dagster/partition"
SCHEDULE_TAG = "dagster/schedule_name"
SENSOR_TAG = "dagster/sensor_name"
BACKFILL_TAG = "dagster/backfill"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def run_tags(trigger: str, week: Optional[str] = None) -> dict[str, str]:
    """Tags for a run request: `run_tags("schedule", week="2026-11-15")`."""
    if trigger not in TRIGGERS:
        raise ValueError(f"Unknown run trigger {trigger!r}; use one of {', '.join(TRIGGERS)}.")
    tags = {TRIGGER_TAG: trigger}
    if week:
        tags[WEEK_TAG] = week
    return tags


def trigger_of(tags: Mapping[str, str]) -> str:
    """What launched a run, read from the tags Dagster itself sets."""
    if tags.get(TRIGGER_TAG) in TRIGGERS:
        return tags[TRIGGER_TAG]
    if SCHEDULE_TAG in tags:
        return "schedule"
    if SENSOR_TAG in tags:
        return "sensor"
    if BACKFILL_TAG in tags:
        return "backfill"
    return "manual"


def week_of(tags: Mapping[str, str]) -> Optional[str]:
    """The week a run is about: its `ows/week` tag, else its partition key (or range, `start..end`)."""
    if tags.get(WEEK_TAG):
        return tags[WEEK_TAG]
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}..{end}"
    return None


def missing_run_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The `ows/*` tags a run lacks, derived from its other tags (empty when nothing is missing)."""
    missing = {}
    if TRIGGER_TAG not in tags:
        missing[TRIGGER_TAG] = trigger_of(tags)
    week = week_of(tags)
    if WEEK_TAG not in tags and week:
        missing[WEEK_TAG] = week
    return missing

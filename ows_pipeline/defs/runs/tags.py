"""What a run is about, read from the tags Dagster itself sets on it.

The week is the partition key (`dagster/partition`, or the range of a backfill run); the trigger
is `schedule`, `sensor`, `backfill` or `manual` from `dagster/schedule_name`,
`dagster/sensor_name` and `dagster/backfill`. Nothing is re-stamped on runs: filter the Runs page
on those tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

PARTITION_TAG = "dagster/partition"
SCHEDULE_TAG = "dagster/schedule_name"
SENSOR_TAG = "dagster/sensor_name"
BACKFILL_TAG = "dagster/backfill"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def trigger_of(tags: Mapping[str, str]) -> str:
    """What launched a run: `schedule`, `sensor`, `backfill` or `manual`."""
    if SCHEDULE_TAG in tags:
        return "schedule"
    if SENSOR_TAG in tags:
        return "sensor"
    if BACKFILL_TAG in tags:
        return "backfill"
    return "manual"


def week_of(tags: Mapping[str, str]) -> Optional[str]:
    """The week a run is about: its partition key, or the range `start..end` of a backfill run."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}..{end}"
    return None

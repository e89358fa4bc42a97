"""The reporting week: Sunday 00:00 to the next Sunday 00:00 in OWS_TIMEZONE.

One `Week` serves the snapshot, the report and the schedule. It is built from a partition's
time window (`Week.from_window`, what Dagster hands an asset) or from a partition key
(`Week.from_key`); both give the same bounds, daylight-saving changes included. No Dagster
import here: a time window is anything with aware `start` and `end` datetimes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc
SEVEN_DAYS = dt.timedelta(days=7)


@dataclass(frozen=True)
class Week:
    """One weekly partition: its key (the Sunday it starts), its bounds as UTC instants, its time zone."""

    key: str  # YYYY-MM-DD, the local Sunday the week starts
    start_utc: dt.datetime
    end_utc: dt.datetime  # exclusive
    timezone: str

    @classmethod
    def from_key(cls, key: str, timezone: str) -> "Week":
        """The week of partition key `key` (a Sunday, `YYYY-MM-DD`) in `timezone`."""
        try:
            day = dt.date.fromisoformat(key)
        except ValueError:
            raise ValueError(f"Week key {key!r} is not a date; use the Sunday the week starts, as YYYY-MM-DD.") from None
        if day.weekday() != 6:
            raise ValueError(f"Week key {key!r} is a {day:%A}; weeks start on Sunday (e.g. the Sunday before it).")
        tz = ZoneInfo(timezone)
        start = dt.datetime.combine(day, dt.time(), tz)
        end = dt.datetime.combine(day + SEVEN_DAYS, dt.time(), tz)
        return cls(key, start.astimezone(UTC), end.astimezone(UTC), timezone)

    @classmethod
    def from_window(cls, window, timezone: str) -> "Week":
        """The week of a partition time window (aware `start` and `end`, e.g. `context.partition_time_window`)."""
        local = window.start.astimezone(ZoneInfo(timezone))
        week = cls.from_key(local.date().isoformat(), timezone)
        if week.start_utc != window.start.astimezone(UTC) or week.end_utc != window.end.astimezone(UTC):
            raise ValueError(f"Time window {window.start} to {window.end} is not a Sunday-to-Sunday week in {timezone}.")
        return week

    @property
    def start(self) -> dt.date:
        """The Sunday the week starts (the `week_start` column of the snapshot)."""
        return dt.date.fromisoformat(self.key)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def previous(self, weeks: int = 1) -> "Week":
        return Week.from_key((self.start - weeks * SEVEN_DAYS).isoformat(), self.timezone)

    def next(self) -> "Week":
        return Week.from_key((self.start + SEVEN_DAYS).isoformat(), self.timezone)

    def contains(self, instant: dt.datetime) -> bool:
        """Whether the aware (or naive UTC) `instant` falls in [start, end)."""
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        return self.start_utc <= instant < self.end_utc

    def local(self, instant: dt.datetime) -> dt.datetime:
        """`instant` (aware, or naive UTC) on the week's local clock."""
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        return instant.astimezone(self.tz)

    def describe(self) -> str:
        return f"Sunday {self.key} 00:00 to the next Sunday 00:00, {self.timezone}"


def week_containing(instant: dt.datetime, timezone: str) -> Week:
    """The week whose [start, end) holds `instant`."""
    local = (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(ZoneInfo(timezone))
    sunday = local.date() - dt.timedelta(days=(local.weekday() + 1) % 7)
    return Week.from_key(sunday.isoformat(), timezone)


def week_ended_by(instant: dt.datetime, timezone: str, first_week: Optional[str] = None) -> Optional[Week]:
    """The last week that ended at or before `instant` (None before `first_week` has ended)."""
    week = week_containing(instant, timezone).previous()
    if first_week is not None and week.start < dt.date.fromisoformat(first_week):
        return None
    return week


def weeks_of_partitions(partitions_def, keys) -> list[Week]:
    """The weeks of partition `keys` of a weekly partitions definition, from each key's time window."""
    timezone = partitions_def.timezone or "UTC"
    return [Week.from_window(partitions_def.time_window_for_partition_key(key), timezone) for key in keys]

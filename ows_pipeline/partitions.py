"""Weekly partitions: Sunday 00:00 to Sunday 00:00 in OWS_TIMEZONE (default Europe/London).

The first week is OWS_FIRST_WEEK (a Sunday, default 2025-01-05). Both settings are read when
the code location loads; a value that cannot work stops the load with the fix in the message.
"""

import datetime as dt
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

from ows_pipeline.settings import Settings


def first_week() -> str:
    """OWS_FIRST_WEEK, checked to be a Sunday (`YYYY-MM-DD`)."""
    value = os.environ.get("OWS_FIRST_WEEK") or "2025-01-05"
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"OWS_FIRST_WEEK={value!r} is not a date; use the Sunday of the first week, e.g. 2025-01-05."
        ) from None
    if day.weekday() != 6:
        sunday = day - dt.timedelta(days=(day.weekday() + 1) % 7)
        raise ValueError(f"OWS_FIRST_WEEK={value!r} is a {day:%A}; weeks start on Sunday: use {sunday.isoformat()}.")
    return value


def week_timezone() -> str:
    """OWS_TIMEZONE, checked to be a known IANA time zone."""
    name = Settings.from_env().timezone
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"OWS_TIMEZONE={name!r} is not a known time zone; use an IANA name such as Europe/London."
        ) from None
    return name


FIRST_WEEK = first_week()

weekly_partitions = dg.WeeklyPartitionsDefinition(
    start_date=FIRST_WEEK,
    day_offset=0,
    timezone=week_timezone(),
)

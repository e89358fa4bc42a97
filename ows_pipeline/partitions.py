"""Weekly partitions: Sunday 00:00 to Sunday 00:00 in OWS_TIMEZONE (default Europe/London).

The first week is OWS_FIRST_WEEK (a Sunday, default 2025-01-05). Both settings are read when
the code location loads; a value that cannot work stops the load with the fix in the message.
"""

import dagster as dg

from ows_pipeline.settings import Settings

_settings = Settings.from_env()
FIRST_WEEK = _settings.first_week

weekly_partitions = dg.WeeklyPartitionsDefinition(
    start_date=FIRST_WEEK,
    day_offset=0,
    timezone=_settings.timezone,
)

"""Run behaviour shared by every domain: retries on extraction, the dimension-merge pool, report freshness.

- `EXTRACTION_RETRY_POLICY`: extraction steps retry transient source errors (network, listener,
  lost connection) three times with exponential backoff and jitter (about 15 s, 30 s, 60 s).
- `retry_only_transient(what)`: wrap a source call so permanent errors (bad SQL, wrong password,
  bad settings) fail at once instead of being retried.
- `DIMENSION_MERGE_POOL`: the concurrency pool of the SCD2 merges; the instance (`dagster.yaml`,
  `concurrency.pools.default_limit: 1`) lets one merge run at a time across all runs.
- `weekly_report_freshness_policy()`: the weekly report is due every Monday 09:00 local time and
  must have been written since the Sunday-morning schedule; a missed week shows in the UI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from ows_pipeline.redaction import redact

EXTRACTION_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3,
    delay=15,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)

# The weekly report's email: a transient SMTP error (connection, timeout, 4xx) is tried again
# three times, 5 s, 10 s, 20 s later; a permanent one fails at once (`Failure(allow_retries=False)`).
EMAIL_RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)

DIMENSION_MERGE_POOL = "ows_dimension_merge"

WEEKLY_REPORT_DEADLINE_CRON = "0 9 * * 1"
WEEKLY_REPORT_LOWER_BOUND = dt.timedelta(days=1, hours=7)

# Error texts of connection problems that are worth a retry (python-oracledb, PostgreSQL, sockets).
TRANSIENT_MARKERS = (
    "DPY-4011",  # the database or network closed the connection
    "DPY-6005",  # cannot connect (listener down, closed port)
    "DPY-6000",  # listener refused the connection
    "ORA-03113",  # end-of-file on communication channel
    "ORA-03114",  # not connected
    "ORA-03135",  # connection lost contact
    "ORA-12170",  # connect timeout
    "ORA-12514",  # listener does not know the service (yet)
    "ORA-12541",  # no listener
    "ORA-12543",  # destination host unreachable
    "ORA-00060",  # deadlock detected
    "connection refused",
    "could not connect to server",
    "server closed the connection unexpectedly",
    "connection timed out",
    "timeout expired",
    "the database system is starting up",
    "the database system is shutting down",
    "database is locked",
    "deadlock detected",
)

# Error texts that no retry can fix.
PERMANENT_MARKERS = (
    "ORA-01017",  # invalid username/password
    "ORA-28000",  # account locked
    "ORA-00942",  # table or view does not exist
    "ORA-00904",  # invalid identifier
    "password authentication failed",
    "no such table",
    "does not exist",
)


def is_transient_source_error(exc: BaseException) -> bool:
    """True when `exc` (or its cause) is a connection problem that a later attempt may not meet."""
    seen = 0
    while exc is not None and seen < 5:
        text = f"{type(exc).__name__}: {exc}"
        lowered = text.lower()
        if any(marker.lower() in lowered for marker in PERMANENT_MARKERS):
            return False
        if any(marker.lower() in lowered for marker in TRANSIENT_MARKERS):
            return True
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


@contextmanager
def retry_only_transient(what: str) -> Iterator[None]:
    """Let transient source errors propagate (the RetryPolicy retries them); turn others into a final failure."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        if is_transient_source_error(exc):
            raise
        raise dg.Failure(
            description=redact(f"{what} failed: {type(exc).__name__}: {exc}"),
            allow_retries=False,
        ) from exc


def weekly_report_freshness_policy(timezone: str | None = None) -> dg.FreshnessPolicy:
    """Freshness of `ows_weekly_report`: written between Sunday 02:00 and Monday 09:00 local time."""
    from ows_pipeline.settings import Settings

    return dg.FreshnessPolicy.cron(
        deadline_cron=WEEKLY_REPORT_DEADLINE_CRON,
        lower_bound_delta=WEEKLY_REPORT_LOWER_BOUND,
        timezone=timezone or Settings.from_env().timezone,
    )

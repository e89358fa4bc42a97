"""Every setting read from the environment (DESIGN.md section 5), in one place, with the embedded
defaults. A value that cannot work raises `SettingsError` naming the variable and the fix.

Secrets (`OWS_SOURCE_PASSWORD`, `OWS_WAREHOUSE_PASSWORD`, `OWS_SMTP_PASSWORD`) are not held
here: the resources read them through Dagster's `EnvVar` at run time.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Europe/London"
DEFAULT_FIRST_WEEK = "2025-01-05"
DEFAULT_MAX_REJECTION_RATE = 0.05
DEFAULT_STAGING_CHUNK_ROWS = 250_000
FALSE_WORDS = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A setting that cannot work, with the fix in the message."""


def ows_home(environ: Optional[Mapping[str, str]] = None) -> Path:
    """Folder holding all local state of the embedded default (`OWS_HOME`, default `./.ows`)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("OWS_HOME") or ".ows").resolve()


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _first_week(value: str) -> str:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise SettingsError(
            f"OWS_FIRST_WEEK={value!r} is not a date; use the Sunday of the first week, e.g. 2025-01-05."
        ) from None
    if day.weekday() != 6:
        sunday = day - dt.timedelta(days=(day.weekday() + 1) % 7)
        raise SettingsError(
            f"OWS_FIRST_WEEK={value!r} is a {day:%A}; weeks start on Sunday: use {sunday.isoformat()}."
        )
    return value


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"OWS_TIMEZONE={name!r} is not a known time zone; use an IANA name such as Europe/London."
        ) from None
    return name


def _rate(value: Optional[str]) -> float:
    if not value:
        return DEFAULT_MAX_REJECTION_RATE
    try:
        rate = float(value)
    except ValueError:
        raise SettingsError(f"OWS_MAX_REJECTION_RATE={value!r} is not a number; use e.g. 0.05 for 5%.") from None
    if not 0 <= rate <= 1:
        raise SettingsError(f"OWS_MAX_REJECTION_RATE={value!r} is not a share between 0 and 1; use e.g. 0.05 for 5%.")
    return rate


def _chunk_rows(value: Optional[str]) -> int:
    if not value:
        return DEFAULT_STAGING_CHUNK_ROWS
    try:
        rows = int(value.replace("_", ""))
    except ValueError:
        rows = 0
    if rows < 1:
        raise SettingsError(f"OWS_STAGING_CHUNK_ROWS={value!r} is not a whole number of rows; use e.g. 250000.")
    return rows


@dataclass(frozen=True)
class Settings:
    """The environment, read once per call of `from_env`, checked and typed."""

    home: Path
    source_url: str
    source_schema: Optional[str]
    warehouse_url: str
    landing_dir: Path
    report_dir: Path
    data_docs_dir: Path
    timezone: str
    first_week: str
    max_rejection_rate: float
    staging_chunk_rows: int
    ui_url: Optional[str]
    smtp_starttls: bool

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        environ = os.environ if environ is None else environ
        env = environ.get
        home = ows_home(environ)
        return cls(
            home=home,
            source_url=env("OWS_SOURCE_URL") or _sqlite_url(home / "ows_source.db"),
            source_schema=env("OWS_SOURCE_SCHEMA") or None,
            warehouse_url=env("OWS_WAREHOUSE_URL") or _sqlite_url(home / "warehouse.db"),
            landing_dir=Path(env("OWS_LANDING_DIR") or home / "landing"),
            report_dir=Path(env("OWS_REPORT_DIR") or home / "reports"),
            data_docs_dir=Path(env("OWS_DATA_DOCS_DIR")).resolve() if env("OWS_DATA_DOCS_DIR") else home / "data_docs",
            timezone=_timezone(env("OWS_TIMEZONE") or DEFAULT_TIMEZONE),
            first_week=_first_week(env("OWS_FIRST_WEEK") or DEFAULT_FIRST_WEEK),
            max_rejection_rate=_rate(env("OWS_MAX_REJECTION_RATE")),
            staging_chunk_rows=_chunk_rows(env("OWS_STAGING_CHUNK_ROWS")),
            ui_url=(env("OWS_UI_URL") or "").rstrip("/") or None,
            smtp_starttls=(env("OWS_SMTP_STARTTLS") or "true").strip().lower() not in FALSE_WORDS,
        )


def ensure_sqlite_parent(url: str) -> None:
    """Create the folder of a SQLite file URL so a first run on a fresh machine just works."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:"):
        Path(url[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)

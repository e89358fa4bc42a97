"""Settings read from the environment (DESIGN.md section 5), with the embedded defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def ows_home() -> Path:
    """Folder holding all local state of the embedded default (`OWS_HOME`, default `./.ows`)."""
    return Path(os.environ.get("OWS_HOME") or ".ows").resolve()


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    home: Path
    source_url: str
    source_schema: str | None
    warehouse_url: str
    landing_dir: Path
    report_dir: Path
    timezone: str

    @classmethod
    def from_env(cls) -> "Settings":
        home = ows_home()
        env = os.environ.get
        return cls(
            home=home,
            source_url=env("OWS_SOURCE_URL") or _sqlite_url(home / "ows_source.db"),
            source_schema=env("OWS_SOURCE_SCHEMA") or None,
            warehouse_url=env("OWS_WAREHOUSE_URL") or _sqlite_url(home / "warehouse.db"),
            landing_dir=Path(env("OWS_LANDING_DIR") or home / "landing"),
            report_dir=Path(env("OWS_REPORT_DIR") or home / "reports"),
            timezone=env("OWS_TIMEZONE") or "Europe/London",
        )


def ensure_sqlite_parent(url: str) -> None:
    """Create the folder of a SQLite file URL so a first run on a fresh machine just works."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:"):
        Path(url[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)

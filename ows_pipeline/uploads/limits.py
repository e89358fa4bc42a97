"""Upload limits, configurable through the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _int_env(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number; set it to e.g. {default}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}; set it to e.g. {default}")
    return value


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be. Every limit is checked before the expensive step it protects."""

    max_bytes: int = 512 * 1024 * 1024  # OWS_UPLOAD_MAX_BYTES: size of the file as uploaded
    max_rows: int = 1_000_000  # OWS_UPLOAD_MAX_ROWS: data rows (records) per file
    max_columns: int = 200  # OWS_UPLOAD_MAX_COLUMNS
    max_unzipped_bytes: int = 2 * 1024 * 1024 * 1024  # OWS_UPLOAD_MAX_UNZIPPED_BYTES: XLSX declared content
    max_zip_ratio: int = 200  # OWS_UPLOAD_MAX_ZIP_RATIO: XLSX entry size / compressed size
    max_yaml_aliases: int = 100  # OWS_UPLOAD_MAX_YAML_ALIASES
    # OWS_UPLOAD_MAX_VALUES: values in a JSON or YAML document, counted while it is read, aliases expanded
    max_values: int = 10_000_000
    max_parse_seconds: int = 120  # OWS_UPLOAD_MAX_PARSE_SECONDS: reading one file (CSV, XLSX, YAML)
    max_problems: int = 10_000  # OWS_UPLOAD_MAX_PROBLEMS: problems listed per file (all are counted)
    settle_seconds: int = 30  # OWS_UPLOAD_SETTLE_SECONDS: a file unchanged this long is complete

    @classmethod
    def from_env(cls) -> "UploadLimits":
        d = cls()
        return cls(
            max_bytes=_int_env("OWS_UPLOAD_MAX_BYTES", d.max_bytes),
            max_rows=_int_env("OWS_UPLOAD_MAX_ROWS", d.max_rows),
            max_columns=_int_env("OWS_UPLOAD_MAX_COLUMNS", d.max_columns),
            max_unzipped_bytes=_int_env("OWS_UPLOAD_MAX_UNZIPPED_BYTES", d.max_unzipped_bytes),
            max_zip_ratio=_int_env("OWS_UPLOAD_MAX_ZIP_RATIO", d.max_zip_ratio),
            max_yaml_aliases=_int_env("OWS_UPLOAD_MAX_YAML_ALIASES", d.max_yaml_aliases),
            max_values=_int_env("OWS_UPLOAD_MAX_VALUES", d.max_values),
            max_parse_seconds=_int_env("OWS_UPLOAD_MAX_PARSE_SECONDS", d.max_parse_seconds),
            max_problems=_int_env("OWS_UPLOAD_MAX_PROBLEMS", d.max_problems),
            settle_seconds=_int_env("OWS_UPLOAD_SETTLE_SECONDS", d.settle_seconds, minimum=0),
        )

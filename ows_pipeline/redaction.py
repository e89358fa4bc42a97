"""Keep credentials out of anything a person reads: messages, logs, metadata, emails."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Optional

MASK = "***"

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s/]+)(?P<at>@)", re.IGNORECASE)
KEY_VALUE_PASSWORD = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd)\s*[=:]\s*['\"]?)(?P<password>[^'\"\s,;&)]+)", re.IGNORECASE
)


def secret_values(environ: Optional[dict] = None, min_length: int = 4) -> list[str]:
    """Values of the environment variables whose names say they hold a secret, longest first."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if SECRET_NAME.search(k) and v and len(v) >= min_length}
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Optional[Iterable[str]] = None) -> str:
    """`text` with URL passwords, `password=...` pairs and known secret values masked."""
    if not text:
        return text
    for value in secret_values() if secrets is None else secrets:
        if value:
            text = text.replace(value, MASK)
    text = URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    return KEY_VALUE_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)

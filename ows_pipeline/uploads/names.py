"""File names as people's tools write them: shown escaped, stored on disk under a safe spelling.

Any name Windows, macOS or Excel produce is accepted ("Feed SLA (copy).csv", accents,
spaces). Only names holding invisible characters (line breaks, tabs, terminal escapes,
direction overrides, bytes that are not text) are refused, because they can forge log lines
or hide what a file is; everywhere a name is logged, stored or shown it goes through
`shown_name`, which writes those characters as visible escapes (`\\n`, `\\x1b`, `\\u202e`).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath
from typing import Optional

from ows_pipeline.uploads.problems import Problem

MAX_SHOWN = 300
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# Names that tools use while a file is still being written or is open in an editor.
_IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".swp", ".filepart")
_IN_PROGRESS_PREFIXES = ("~$", ".~lock", ".#")
# Files operating systems leave in every folder they show: never uploads.
_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", ".directory"}


def _invisible(char: str) -> bool:
    """Control, format (direction overrides, zero-width) and undecodable characters."""
    if "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8 (os.fsdecode's surrogate escape)
        return True
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def _escape(char: str) -> str:
    if "\udc80" <= char <= "\udcff":
        return f"\\x{ord(char) - 0xDC00:02x}"
    special = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if char in special:
        return special[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def shown_name(name: str, limit: int = MAX_SHOWN) -> str:
    """`name` safe to log, store and display: invisible characters escaped, length bounded."""
    text = "".join(_escape(c) if _invisible(c) or c == "\\" and _has_invisible(name) else c for c in name)
    if len(text) > limit:
        text = f"{text[: limit - 40]}...({len(text) - limit + 40} more characters){PurePath(text).suffix[:20]}"
    return text


def _has_invisible(name: str) -> bool:
    return any(_invisible(c) for c in name)


def is_ignored(name: str) -> bool:
    """Copies in progress, editor lock files and operating-system files: left alone, never registered."""
    lower = name.lower()
    return (
        lower.endswith(_IN_PROGRESS_SUFFIXES)
        or name.startswith(_IN_PROGRESS_PREFIXES)
        or lower in _SYSTEM_FILES
        or name.startswith("._")  # macOS resource forks beside copied files
    )


def safe_name(name: str) -> str:
    """The name a file gets on disk in the archives: ASCII letters, digits, '.', '-', '_', extension kept.

    `Feed SLA (copy).csv` -> `Feed_SLA_copy.csv`, `Übersicht März.xlsx` -> `Ubersicht_Marz.xlsx`.
    """
    if _SAFE.fullmatch(name) and ".." not in name:
        return name
    path = PurePath(name.replace("\\", "_"))
    stem, suffix = path.stem, path.suffix
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix):
        stem, suffix = name, ""

    def ascii_only(text: str) -> str:
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("._-")

    return (ascii_only(stem)[:150] or "upload") + suffix.lower()


def name_problem(name: str) -> Optional[Problem]:
    """Why a file name is refused, or None: only names holding invisible characters are."""
    if not _has_invisible(name):
        return None
    return Problem(
        "file_name",
        f"the file name '{shown_name(name)}' holds invisible characters (line breaks, tabs, control or "
        "direction characters, or bytes that are not text)",
        f"rename the file to '{safe_name(name)}' and upload it again",
        value=shown_name(name),
    )

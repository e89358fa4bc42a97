"""Typing one uploaded value by its declared column type, exactly as written or not at all.

Text is kept verbatim (a leading tab, a trailing line break and inner spaces included). A
value is only ever normalised where the column's meaning requires it (a code upper-cased,
blanks around a code, a time's zero seconds, `7:05` as `07:05`), and then `Typed.note` says
what changed so that the caller can warn about that very value. Anything that would lose
information (seconds of a time, digits of a number) is refused instead.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Optional

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INT = re.compile(r"[+-]?\d+")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
MAX_DIGITS = 15


class CellError(ValueError):
    """A value that does not fit its column: `rule`, a message and the fix."""

    def __init__(self, rule: str, message: str, fix: str):
        super().__init__(message)
        self.rule, self.message, self.fix = rule, message, fix


@dataclass(frozen=True)
class Typed:
    """A typed value, and what normalising it changed (None when it is as written)."""

    value: object
    note: Optional[str] = None


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def blank_note(value) -> Optional[str]:
    return "a value of only blanks was read as empty" if isinstance(value, str) and value else None


def text(value, max_length: Optional[int]) -> Typed:
    if _is_blank(value):
        return Typed(None, blank_note(value))
    if isinstance(value, bool):
        raise CellError("wrong_type", "a true/false value where text is expected", "write the text (quote it in YAML)")
    if isinstance(value, (dt.date, dt.time)):
        raise CellError(
            "wrong_type", "a date or time where text is expected", "format the column as Text in Excel, or quote it"
        )
    if isinstance(value, float):
        value = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    written = str(value)
    if _CONTROL.search(written):
        raise CellError(
            "control_character",
            "the text holds invisible control characters",
            "delete the invisible characters (retype the value)",
        )
    if max_length is not None and len(written) > max_length:
        raise CellError(
            "too_long",
            f"the text has {len(written)} characters, more than the column's {max_length}",
            f"shorten it to at most {max_length} characters",
        )
    return Typed(written)


def code(value, max_length: Optional[int], pattern: Optional[str], what: str) -> Typed:
    """A code: blanks around it removed and upper-cased (each said in the note), then its format checked."""
    typed = text(value, None)
    if typed.value is None:
        return typed
    written = typed.value
    changes = []
    stripped = written.strip()
    if stripped != written:
        changes.append("the blanks or line breaks around it were removed")
    upper = stripped.upper()
    if upper != stripped:
        changes.append("it was upper-cased")
    note = f"{', and '.join(changes)}: stored as '{upper}'" if changes else None
    if pattern is not None and not re.fullmatch(pattern, upper):
        odd = next((c for c in upper if not re.fullmatch(r"[A-Z0-9_.\-]", c)), None)
        detail = f" (it holds '{odd}', U+{ord(odd):04X})" if odd and odd.isprintable() and odd != " " else (
            " (it holds a space)" if odd == " " else ""
        )
        raise CellError(
            "code_format",
            f"this can never match an {what}: codes use only the capital letters A-Z, the digits 0-9 and "
            f"'_', '.', '-', starting with a letter or digit{detail}",
            f"write the {what} exactly as OWS shows it, e.g. SAP_GL_01",
        )
    if max_length is not None and len(upper) > max_length:
        raise CellError(
            "too_long",
            f"the code has {len(upper)} characters; an {what} has at most {max_length}",
            f"write the {what} exactly as OWS shows it (at most {max_length} characters)",
        )
    return Typed(upper, note)


def integer(value, minimum: Optional[int], maximum: Optional[int]) -> Typed:
    if _is_blank(value):
        return Typed(None, blank_note(value))
    if isinstance(value, bool):
        raise CellError("wrong_type", "a true/false value where a whole number is expected", "write a number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise CellError("wrong_type", "a decimal where a whole number is expected", "write a whole number")
        number = int(value)
    elif isinstance(value, str):
        written = value.strip()
        if _THOUSANDS.fullmatch(written):
            written = written.replace(",", "")
        if written.endswith(".0") and _INT.fullmatch(written[:-2]):
            written = written[:-2]
        if not _INT.fullmatch(written):
            raise CellError("wrong_type", "not a whole number", "write digits only, e.g. 30")
        if len(written.lstrip("+-")) > MAX_DIGITS:
            raise CellError(
                "out_of_range",
                f"the number has {len(written.lstrip('+-')):,} digits, far more than this column accepts",
                f"use a value between {minimum} and {maximum}" if maximum is not None else "write a smaller number",
            )
        number = int(written)
    else:
        raise CellError("wrong_type", "not a whole number", "write a whole number, e.g. 30")
    if minimum is not None and number < minimum:
        raise CellError("out_of_range", f"{number} is below the minimum {minimum}", f"use a value >= {minimum}")
    if maximum is not None and number > maximum:
        raise CellError("out_of_range", f"{number} is above the maximum {maximum}", f"use a value <= {maximum}")
    return Typed(number)


def clock_time(value) -> Typed:
    """A time of day stored as `HH:MM`; seconds other than :00 are refused, never cut."""
    if _is_blank(value):
        return Typed(None, blank_note(value))
    if isinstance(value, dt.datetime):
        value = value.time()
    if isinstance(value, dt.time):
        seconds = value.second + value.microsecond / 1e6
        stamp = dt.datetime.combine(dt.date(2000, 1, 1), value.replace(second=0, microsecond=0))
        if round(seconds) == 60:  # Excel's 07:29:59.9999 for 07:30
            stamp += dt.timedelta(minutes=1)
        elif round(seconds) != 0:
            raise _seconds_refused(f"{value.hour:02d}:{value.minute:02d}:{round(seconds):02d}")
        return Typed(f"{stamp.hour:02d}:{stamp.minute:02d}")
    if isinstance(value, (int, float)) or not isinstance(value, str):
        raise CellError("wrong_type", "a number where a time of day is expected", "write the time as HH:MM, e.g. 07:30")
    match = _CLOCK.fullmatch(value.strip())
    if not match:
        raise CellError("wrong_type", "not a time of day", "write the time as HH:MM (24-hour clock), e.g. 07:30")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise CellError("impossible_time", f"{value.strip()} is not a time of day", "use 00:00 to 23:59")
    if second:
        raise _seconds_refused(value.strip())
    stored = f"{hour:02d}:{minute:02d}"
    return Typed(stored, None if stored == value else f"written as '{value}', stored as '{stored}' (HH:MM)")


def _seconds_refused(written: str) -> CellError:
    hour_minute = written[:-3]
    return CellError(
        "time_with_seconds",
        f"{written} has seconds, but the column keeps hours and minutes only: the seconds would be lost",
        f"write the time as HH:MM (e.g. {hour_minute}), rounded the way you mean it",
    )

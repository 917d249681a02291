"""Lenient parsing of the date and time columns of a user's metadata CSV.

Dates are parsed per column: ``28/05/2020`` is day-first and ``05/28/2020`` month-first,
and the order is decided for the whole column from the values that are unambiguous (a
first part above 12 means day-first). A column whose slashed dates are all ambiguous
needs an explicit order (``dmy`` or ``mdy``). Results are ISO 8601 strings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

ISO_DATE = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(?P<zone>Z|[+-]\d{2}:?\d{2})?$"
)


COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


PARTS_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


TIME = re.compile(r"^(\d{1,2})[-:.hH](\d{2})(?:[-:.mM](\d{2}))?\s*([aApP][mM])?$")


NAMED_FORMATS = ("%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y", "%d-%b-%Y")


ORDERS = ("dmy", "mdy")


@dataclass(frozen=True)
class ParsedDate:
    """A parsed cell: the ISO text, or the reason it could not be parsed."""

    iso: str | None
    error: str | None = None


def infer_order(values: list[str]) -> str | None:
    """Day-first or month-first for a column's ``A/B/YYYY`` values, when the values say.

    Returns ``"dmy"``, ``"mdy"``, or ``None`` when no value decides it (all parts <= 12)
    or when values contradict each other.
    """
    day_first = month_first = False
    for value in values:
        match = PARTS_DATE.match(value.strip())
        if match:
            first, second = int(match.group(1)), int(match.group(2))
            day_first |= first > 12
            month_first |= second > 12
    if day_first != month_first:
        return "dmy" if day_first else "mdy"
    return None


def needs_order(values: list[str]) -> bool:
    """True when the column has ``A/B/YYYY`` dates whose order cannot be inferred."""
    has_parts = any(PARTS_DATE.match(v.strip()) for v in values if v)
    return has_parts and infer_order(values) is None


def parse_date(value: str, order: str | None) -> ParsedDate:
    """Parse one date cell (optionally with a time) into ISO text."""
    text = value.strip()
    if not text:
        return ParsedDate(None, "empty date")
    for pattern, groups in ((ISO_DATE, "ymd"), (COMPACT_DATE, "ymd"), (PARTS_DATE, order)):
        match = pattern.match(text)
        if not match:
            continue
        if groups is None:
            return ParsedDate(
                None,
                f"'{text}' is ambiguous (day-first or month-first?): choose the date order "
                "(day first, dmy, or month first, mdy)",
            )
        zone = match.groupdict().get("zone")
        if zone:
            return ParsedDate(
                None,
                f"'{text}' has a time-zone suffix ('{zone}'); times are stored as local clock times, "
                "so write them without it (converted to the place's local time)",
            )
        parts = [int(g) if g else 0 for g in match.groups()]
        if groups == "ymd":
            year, month, day = parts[:3]
        elif groups == "dmy":
            day, month, year = parts[:3]
        else:
            month, day, year = parts[:3]
        hour, minute, second = (parts[3:6] + [0, 0, 0])[:3]
        with_time = pattern.groups >= 4 and match.group(4) is not None
        return _build(text, (year, month, day), (hour, minute, second), with_time)
    for fmt in NAMED_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return ParsedDate(parsed.date().isoformat())
    return ParsedDate(None, f"'{text}' is not a date I can read (use e.g. 2020-05-28 or 28/05/2020)")


def _build(text: str, ymd: tuple[int, int, int], hms: tuple[int, int, int], with_time: bool) -> ParsedDate:
    try:
        if with_time:
            return ParsedDate(datetime(*ymd, *hms).isoformat())
        return ParsedDate(date(*ymd).isoformat())
    except ValueError as error:
        return ParsedDate(None, f"'{text}' is not a valid date ({error})")


def parse_time(value: str) -> tuple[tuple[int, int, int] | None, str | None]:
    """Parse ``18-20``, ``18:20``, ``18:20:05``, ``6.20 pm`` into (hour, minute, second)."""
    text = value.strip()
    match = TIME.match(text)
    if not match:
        return None, f"'{text}' is not a time I can read (use e.g. 18:20 or 18-20)"
    hour, minute = int(match.group(1)), int(match.group(2))
    second = int(match.group(3) or 0)
    meridiem = (match.group(4) or "").lower()
    if meridiem:
        if not 1 <= hour <= 12:
            return None, f"'{text}': hour must be 1-12 with am/pm"
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None, f"'{text}' is not a valid time of day"
    return (hour, minute, second), None


def combine(date_iso: str, time_parts: tuple[int, int, int]) -> str:
    """Join a parsed date (a time already in it is replaced) and a separate time column."""
    day = date.fromisoformat(date_iso[:10])
    return datetime(day.year, day.month, day.day, *time_parts).isoformat()


def readable_time(iso: str | None) -> str:
    """A stored timestamp as people write it: ``2020-05-28T18:20:00`` -> ``28 May 2020 18:20``
    (no time part when there is none); empty for no value, the text itself when it is not ISO."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return str(iso)
    day = f"{moment.day} {moment:%b %Y}"
    return day if len(iso) <= 10 else f"{day} {moment:%H:%M}"

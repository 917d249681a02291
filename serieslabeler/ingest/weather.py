"""Daily temperatures and accumulated degree-days (ADD).

ADD is the forensic time measure: decomposition runs on heat, not on
calendar days, so stages are compared across seasons and sites by the
heat a subject has received since placement.

Convention used throughout (inclusive of the placement day):

    contribution(t) = max(0, T_mean(t) - base)
    ADD(d)          = sum of contribution(t) for t = d0, d0 + 1, ..., d

where d0 is the placement day and d the photo day. The ADD at the
placement day is that day's own contribution: a photo taken on the day of
placement counts that day. T_mean is the ``mean`` column when the file has
one, else (min + max) / 2. Temperatures are degrees Celsius.

Missing days are never filled: a gap inside the needed range is an error
naming the weather key and the first missing day. :func:`gaps` lists them
up front.

Weather files are CSV (UTF-8, a byte-order mark is fine) with a header
line. Dates are ISO ``yyyy-mm-dd``, or ``dd/mm/yyyy`` when the file shows
it is day-first (some day above 12); otherwise the slash dates are
ambiguous and refused. Every error from reading names the file, the line
(1-based as in a text editor, the header is line 1) and the field.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

PLAUSIBLE_CELSIUS = (-60.0, 60.0)
# Daily means, unlike single readings, stay under about 40 °C even in the hottest places on
# record: a table whose typical day is above that is in Fahrenheit (a cool spring, 45-59 °F).
PLAUSIBLE_MEDIAN_DAILY_MEAN = 40.0
MEAN_NAMES = ("mean", "tmean", "mean_temp", "temperature", "temp")
MIN_NAMES = ("min", "tmin")
MAX_NAMES = ("max", "tmax")
DEFAULT_DATE_COLUMN = "date"

_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_SLASH_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")

DateLike = np.datetime64 | dt.date | str


class WeatherError(ValueError):
    """A weather file or table that cannot give the degree-days asked for."""


@dataclass(frozen=True)
class WeatherTable:
    """One daily mean temperature per (key, date).

    dates: datetime64[D] array; keys: str array ("" when the file has no
    key column, e.g. one site only); mean: daily mean temperature in °C;
    source: where the table came from (file path), used in messages.
    """

    dates: np.ndarray
    keys: np.ndarray
    mean: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        dates = np.asarray(self.dates, dtype="datetime64[D]")
        keys = np.asarray(self.keys, dtype=str)
        mean = np.asarray(self.mean, dtype=float)
        if not (dates.ndim == keys.ndim == mean.ndim == 1) or not (
            len(dates) == len(keys) == len(mean)
        ):
            raise WeatherError(
                f"{self.source}: dates, keys and mean must be 1-D of equal length, "
                f"got shapes {dates.shape}, {keys.shape}, {mean.shape}"
            )
        if np.any(np.isnat(dates)) or not np.all(np.isfinite(mean)):
            raise WeatherError(f"{self.source}: dates or mean temperatures contain missing values")
        duplicate = _first_duplicate(keys, dates)
        if duplicate is not None:
            raise WeatherError(
                f"{self.source}: more than one temperature for key '{keys[duplicate]}' "
                f"on {dates[duplicate]}"
            )
        object.__setattr__(self, "dates", dates)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "mean", mean)


# --------------------------------------------------------------------------- reading


def read_weather_csv(
    path: str | os.PathLike,
    date_column: str = DEFAULT_DATE_COLUMN,
    key_column: str | None = None,
    mean_column: str | None = None,
    min_column: str | None = None,
    max_column: str | None = None,
) -> WeatherTable:
    """Read a daily weather CSV into a :class:`WeatherTable`.

    Column names match case-insensitively. Without ``mean_column``,
    ``min_column`` or ``max_column`` the mean is taken from the first of
    mean/tmean/mean_temp/temperature/temp present, else from min/tmin and
    max/tmax as (min + max) / 2. An explicit ``mean_column`` wins over
    min/max. Without ``key_column`` every row gets the key "".
    Raises :class:`WeatherError` naming file, line and field.
    """
    source = os.fspath(path)
    header, rows = _read_rows(source)
    columns = _resolve_columns(source, header, date_column, key_column, mean_column, min_column, max_column)
    if not rows:
        raise WeatherError(f"{source}, line 2: no data rows after the header (empty table)")
    dates = _parse_dates(source, rows, columns["date"])
    keys = [_field(source, line, row, columns["key"]) if columns["key"] else "" for line, row in rows]
    mean = _mean_temperatures(source, rows, columns)
    _refuse_duplicates(source, rows, keys, dates, columns)
    return WeatherTable(
        dates=np.array(dates, dtype="datetime64[D]"),
        keys=np.array(keys, dtype=str),
        mean=np.array(mean, dtype=float),
        source=source,
    )


Column = tuple[str, int]  # (name as in the header, index)
Row = tuple[int, list[str]]  # (line number, fields)


def _read_rows(source: str) -> tuple[list[str], list[Row]]:
    try:
        with open(source, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader if any(f.strip() for f in row)]
    except UnicodeDecodeError as error:
        raise WeatherError(f"{source}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except csv.Error as error:
        raise WeatherError(f"{source}: not a readable CSV file ({error})") from error
    if header is None or not any(name.strip() for name in header):
        raise WeatherError(f"{source}, line 1: no header line (empty file)")
    return [name.strip() for name in header], rows


def _resolve_columns(
    source: str,
    header: list[str],
    date_column: str,
    key_column: str | None,
    mean_column: str | None,
    min_column: str | None,
    max_column: str | None,
) -> dict[str, Column | None]:
    by_name = {}
    for index, name in enumerate(header):
        by_name.setdefault(name.lower(), (name, index))

    def required(wanted: str) -> Column:
        if wanted.strip().lower() not in by_name:
            raise WeatherError(
                f"{source}, line 1, field '{wanted}': no such column (columns are: {', '.join(header)})"
            )
        return by_name[wanted.strip().lower()]

    def detected(candidates: Sequence[str]) -> Column | None:
        return next((by_name[c] for c in candidates if c in by_name), None)

    columns: dict[str, Column | None] = {
        "date": required(date_column),
        "key": required(key_column) if key_column is not None else None,
        "mean": None, "min": None, "max": None,
    }
    if mean_column is not None:
        columns["mean"] = required(mean_column)
        return columns
    if min_column is None and max_column is None:
        columns["mean"] = detected(MEAN_NAMES)
        if columns["mean"] is not None:
            return columns
    columns["min"] = required(min_column) if min_column is not None else detected(MIN_NAMES)
    columns["max"] = required(max_column) if max_column is not None else detected(MAX_NAMES)
    missing = [kind for kind in ("min", "max") if columns[kind] is None]
    if missing:
        raise WeatherError(
            f"{source}, line 1, field '{'/'.join(missing)}': no temperature column: need a mean column "
            f"({'/'.join(MEAN_NAMES)}) or both min ({'/'.join(MIN_NAMES)}) and max ({'/'.join(MAX_NAMES)}); "
            f"columns are: {', '.join(header)}"
        )
    return columns


def _field(source: str, line: int, row: list[str], column: Column) -> str:
    name, index = column
    value = row[index].strip() if index < len(row) else ""
    if value == "":
        raise WeatherError(f"{source}, line {line}, field '{name}': empty value")
    return value


def _parse_dates(source: str, rows: list[Row], column: Column) -> list[dt.date]:
    texts = [(line, _field(source, line, row, column)) for line, row in rows]
    day_first_proven = any(
        (m := _SLASH_DATE.match(text)) and int(m.group(1)) > 12 for _, text in texts
    )
    return [_parse_date(source, line, column[0], text, day_first_proven) for line, text in texts]


def _parse_date(source: str, line: int, name: str, text: str, day_first_proven: bool) -> dt.date:
    where = f"{source}, line {line}, field '{name}'"
    iso, slash = _ISO_DATE.match(text), _SLASH_DATE.match(text)
    if iso:
        year, month, day = (int(g) for g in iso.groups())
    elif slash:
        day, month, year = (int(g) for g in slash.groups())
        if month > 12:
            raise WeatherError(
                f"{where}: date '{text}' is not dd/mm/yyyy (month {month}; looks like mm/dd/yyyy); "
                f"write dates as ISO yyyy-mm-dd"
            )
        if not day_first_proven and day != month:
            raise WeatherError(
                f"{where}: date '{text}' is ambiguous (dd/mm/yyyy or mm/dd/yyyy? no day above 12 "
                f"in the file); write dates as ISO yyyy-mm-dd"
            )
    else:
        raise WeatherError(f"{where}: cannot read date '{text}'; write dates as ISO yyyy-mm-dd")
    try:
        return dt.date(year, month, day)
    except ValueError as error:
        raise WeatherError(f"{where}: '{text}' is not a valid date ({error}); "
                           f"write dates as ISO yyyy-mm-dd") from error


def _mean_temperatures(source: str, rows: list[Row], columns: dict[str, Column | None]) -> list[float]:
    means = _read_daily_means(source, rows, columns)
    typical = float(np.median(means)) if means else 0.0
    if typical > PLAUSIBLE_MEDIAN_DAILY_MEAN:
        fields = columns["mean"][0] if columns["mean"] is not None else f"{columns['min'][0]}/{columns['max'][0]}"
        raise WeatherError(
            f"{source}, field '{fields}': the median daily mean is {typical:g}, above {PLAUSIBLE_MEDIAN_DAILY_MEAN:g} °C, "
            "which no climate holds for long; looks like Fahrenheit; give degrees Celsius"
        )
    return means


def _read_daily_means(source: str, rows: list[Row], columns: dict[str, Column | None]) -> list[float]:
    if columns["mean"] is not None:
        return [_temperature(source, line, row, columns["mean"]) for line, row in rows]
    means = []
    for line, row in rows:
        low = _temperature(source, line, row, columns["min"])
        high = _temperature(source, line, row, columns["max"])
        if low > high:
            raise WeatherError(
                f"{source}, line {line}, field '{columns['min'][0]}': "
                f"min {low:g} is above max {high:g} (field '{columns['max'][0]}')"
            )
        means.append((low + high) / 2.0)
    return means


def _temperature(source: str, line: int, row: list[str], column: Column) -> float:
    text = _field(source, line, row, column)
    where = f"{source}, line {line}, field '{column[0]}'"
    try:
        value = float(text)
    except ValueError:
        raise WeatherError(f"{where}: '{text}' is not a number (use '.' as decimal point)") from None
    if not np.isfinite(value):
        raise WeatherError(f"{where}: '{text}' is not a finite temperature")
    low, high = PLAUSIBLE_CELSIUS
    if not low <= value <= high:
        raise WeatherError(
            f"{where}: {value:g} is outside {low:g}..{high:g}; looks like Fahrenheit or Kelvin; "
            f"give degrees Celsius"
        )
    return value


def _refuse_duplicates(
    source: str, rows: list[Row], keys: list[str], dates: list[dt.date], columns: dict[str, Column | None]
) -> None:
    first_line: dict[tuple[str, dt.date], int] = {}
    for (line, _), key, date in zip(rows, keys, dates, strict=True):
        if (key, date) in first_line:
            fields = f"{columns['key'][0]}'/'{columns['date'][0]}" if columns["key"] else columns["date"][0]
            raise WeatherError(
                f"{source}, line {line}, field '{fields}': duplicate row for "
                f"{_key_text(key)}date {date.isoformat()} (first at line {first_line[key, date]})"
            )
        first_line[key, date] = line


def _key_text(key: str) -> str:
    return f"key '{key}' and " if key else ""


def _first_duplicate(keys: np.ndarray, dates: np.ndarray) -> int | None:
    if len(keys) < 2:
        return None
    order = np.lexsort((dates, keys))
    same = (keys[order][1:] == keys[order][:-1]) & (dates[order][1:] == dates[order][:-1])
    hits = np.flatnonzero(same)
    return int(order[hits[0] + 1]) if len(hits) else None


# --------------------------------------------------------------------------- gaps


def gaps(table: WeatherTable) -> list[tuple[str, dt.date, dt.date]]:
    """Missing days per key between its first and last date.

    Each gap is (key, first missing day, last missing day), both inclusive,
    sorted by key then date.
    """
    found = []
    for key in np.unique(table.keys):
        days = np.sort(table.dates[table.keys == key])
        steps = np.diff(days).astype(int)
        for i in np.flatnonzero(steps > 1):
            first_missing = days[i] + np.timedelta64(1, "D")
            last_missing = days[i + 1] - np.timedelta64(1, "D")
            found.append((str(key), first_missing.item(), last_missing.item()))
    return found


# --------------------------------------------------------------------------- degree-days


def accumulated_degree_days(
    table: WeatherTable,
    key: str,
    start: DateLike,
    dates: Sequence[DateLike] | np.ndarray,
    base: float = 0.0,
) -> np.ndarray:
    """ADD at each of ``dates`` for a subject placed on day ``start``.

    ADD(d) = sum over days start..d inclusive of max(0, mean - base); see
    the module docstring. Raises :class:`WeatherError` for a photo before
    the placement day, and for the first day in start..max(dates) without
    a temperature for ``key``.
    """
    placement = _as_day(start)
    days = np.asarray(dates, dtype="datetime64[D]")
    if days.ndim != 1:
        raise WeatherError(f"dates must be 1-D, got shape {days.shape}")
    if len(days) == 0:
        return np.zeros(0)
    if np.any(np.isnat(days)):
        raise WeatherError(f"key '{key}': dates contain a missing value (NaT)")
    if np.any(days < placement):
        raise WeatherError(
            f"key '{key}': photo before placement: {days.min()} is before placement day {placement}"
        )
    contributions = _daily_means(table, key, placement, days.max()) - base
    cumulative = np.cumsum(np.maximum(contributions, 0.0))
    return cumulative[(days - placement).astype(int)]


def add_for_images(
    table: WeatherTable,
    keys: Sequence[str] | np.ndarray,
    subject_ids: Sequence[object] | np.ndarray,
    dates: Sequence[DateLike] | np.ndarray,
    base: float = 0.0,
) -> np.ndarray:
    """ADD per image, with each subject placed on the date of its first photo.

    ``keys`` (weather key per image), ``subject_ids`` and ``dates`` are
    per-image arrays of equal length. All images of a subject must share
    one weather key. Raises :class:`WeatherError` naming the subject.
    """
    image_keys = np.asarray(keys, dtype=str)
    subjects = np.asarray(subject_ids)
    days = np.asarray(dates, dtype="datetime64[D]")
    if not (image_keys.shape == subjects.shape == days.shape and days.ndim == 1):
        raise WeatherError(
            f"keys, subject_ids and dates must be 1-D of equal length, got shapes "
            f"{image_keys.shape}, {subjects.shape}, {days.shape}"
        )
    result = np.zeros(len(days))
    for subject in _unique_in_order(subjects):
        mine = subjects == subject
        subject_keys = np.unique(image_keys[mine])
        if len(subject_keys) > 1:
            raise WeatherError(f"subject '{subject}': images have different weather keys {subject_keys.tolist()}")
        try:
            result[mine] = accumulated_degree_days(table, subject_keys[0], days[mine].min(), days[mine], base)
        except WeatherError as error:
            raise WeatherError(f"subject '{subject}': {error}") from error
    return result


def _daily_means(table: WeatherTable, key: str, first: np.datetime64, last: np.datetime64) -> np.ndarray:
    """Mean temperature for every day first..last of ``key``; error on the first missing day."""
    mine = table.keys == key
    if not np.any(mine):
        raise WeatherError(f"{_in_source(table)}no temperatures for key '{key}'")
    order = np.argsort(table.dates[mine])
    known_days, known_means = table.dates[mine][order], table.mean[mine][order]
    needed = np.arange(first, last + np.timedelta64(1, "D"), dtype="datetime64[D]")
    at = np.minimum(np.searchsorted(known_days, needed), len(known_days) - 1)
    present = known_days[at] == needed
    if not np.all(present):
        missing = needed[np.argmin(present)]
        raise WeatherError(
            f"{_in_source(table)}no temperature for {missing} (key '{key}'), needed for degree-days "
            f"from {first} to {last}; missing days are not filled in, add them to the weather file"
        )
    return known_means[at]


def _in_source(table: WeatherTable) -> str:
    return f"{table.source}: " if table.source else ""


def _as_day(value: DateLike) -> np.datetime64:
    day = np.datetime64(value, "D")
    if np.isnat(day):
        raise WeatherError(f"placement day is missing (got {value!r})")
    return day


def _unique_in_order(values: np.ndarray) -> list[object]:
    _, first_index = np.unique(values, return_index=True)
    return [values[i] for i in np.sort(first_index)]

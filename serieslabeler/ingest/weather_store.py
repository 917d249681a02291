"""ingest.weather_store: the workspace's weather table and each image's accumulated degree-days.

``store_weather`` reads a daily weather CSV (:func:`serieslabeler.ingest.weather.read_weather_csv`),
checks that it gives every image its degree-days (a missing day inside a subject's time span
is an error naming the key and the day: gaps are reported, never filled), and only then
replaces the catalog's ``weather`` table. ``--key ATTR`` names the image attribute whose value
selects a row group of the table (e.g. ``site``); the table's key column has the same name.
Without it the table is one site for every image.

:func:`degree_days` gives ADD per image (see :mod:`serieslabeler.ingest.weather` for the
convention: each subject is placed on the day of its first photo, that day counts).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.ingest.weather import (
    WeatherError,
    WeatherTable,
    add_for_images,
    gaps,
    read_weather_csv,
)
from serieslabeler.store.workspace import Workspace

KEY_SETTING = "weather_key"
BASE_SETTING = "weather_base"
SOURCE_SETTING = "weather_source"


@dataclass
class WeatherReport:
    """What ``weather`` stored: days and keys, the gaps found, the ADD range over the images."""

    source: str
    key: str | None
    base: float
    days: int
    keys: list[str]
    gaps: list[dict] = field(default_factory=list)
    max_add: float = 0.0

    def to_dict(self) -> dict:
        return {"source": self.source, "key": self.key, "base": self.base, "days": self.days, "keys": self.keys,
                "gaps": self.gaps, "max_add": round(self.max_add, 2)}


def has_weather(workspace: Workspace) -> bool:
    return workspace.get_meta(BASE_SETTING) is not None


def store_weather(workspace: Workspace, path: str | os.PathLike, key: str | None = None, base: float = 0.0) -> WeatherReport:
    """Read, check and store a weather table (replacing any earlier one); nothing is written on error."""
    base = float(base)
    if not np.isfinite(base):
        raise PipelineError(f"--base must be a temperature in °C, not {base}")
    try:
        table = read_weather_csv(path, key_column=key)
        found_gaps = gaps(table)
        add = _add_for_all_images(workspace, table, key, base)
    except WeatherError as error:
        raise PipelineError(str(error)) from None
    with workspace.transaction():
        workspace.db.execute("DELETE FROM weather")
        workspace.db.executemany(
            "INSERT INTO weather(key, day, mean) VALUES (?,?,?)",
            [(str(k), str(d), float(m)) for k, d, m in zip(table.keys, table.dates, table.mean)],
        )
        workspace.set_meta(KEY_SETTING, key or "")
        workspace.set_meta(BASE_SETTING, repr(base))
        workspace.set_meta(SOURCE_SETTING, os.fspath(path))
    return WeatherReport(
        os.fspath(path), key, base, len(table.dates), sorted(set(table.keys.tolist())),
        [{"key": k, "first": str(a), "last": str(b)} for k, a, b in found_gaps], max(add.values(), default=0.0),
    )


def load_weather(workspace: Workspace) -> tuple[WeatherTable, str | None, float]:
    """The stored table, the key attribute (None: one site) and the base temperature."""
    if not has_weather(workspace):
        raise PipelineError(f"{workspace.root} has no weather table; add one with 'serieslabeler weather --table CSV'")
    rows = workspace.db.execute("SELECT key, day, mean FROM weather ORDER BY key, day").fetchall()
    table = WeatherTable(
        np.array([r[1] for r in rows], dtype="datetime64[D]"), np.array([r[0] for r in rows], dtype=str),
        np.array([r[2] for r in rows], dtype=float), workspace.get_meta(SOURCE_SETTING, ""),
    )
    return table, workspace.get_meta(KEY_SETTING) or None, float(workspace.get_meta(BASE_SETTING))


def degree_days(workspace: Workspace, image_ids) -> np.ndarray:
    """Accumulated degree-days of each image since its subject's first photo (stored weather)."""
    table, key, base = load_weather(workspace)
    try:
        add = _add_for_all_images(workspace, table, key, base)
    except WeatherError as error:
        raise PipelineError(str(error)) from None
    return np.array([add[int(i)] for i in image_ids], dtype=np.float64)


def _add_for_all_images(workspace: Workspace, table: WeatherTable, key: str | None, base: float) -> dict[int, float]:
    """ADD of every image, by image id (all of a subject's images fix its placement day)."""
    rows = workspace.db.execute(
        "SELECT i.id, s.name, substr(i.taken_at, 1, 10) FROM images i JOIN subjects s ON s.id = i.subject_id ORDER BY i.id"
    ).fetchall()
    ids = [r[0] for r in rows]
    keys = _image_keys(workspace, key, rows)
    add = add_for_images(table, keys, [r[1] for r in rows], [r[2] for r in rows], base)
    return dict(zip(ids, add.tolist()))


def _image_keys(workspace: Workspace, key: str | None, rows) -> list[str]:
    if key is None:
        return [""] * len(rows)
    attribute = workspace.db.execute("SELECT id FROM attributes WHERE name=?", (key,)).fetchone()
    if attribute is None:
        raise PipelineError(f"--key {key}: the images have no attribute '{key}' (ingest it with --attributes)")
    values = dict(workspace.db.execute("SELECT image_id, value FROM image_attributes WHERE attribute_id=?", (attribute[0],)).fetchall())
    missing = next((r for r in rows if values.get(r[0]) in (None, "")), None)
    if missing is not None:
        raise PipelineError(f"--key {key}: image {missing[0]} (subject '{missing[1]}') has no value for '{key}'")
    return [str(values[r[0]]) for r in rows]

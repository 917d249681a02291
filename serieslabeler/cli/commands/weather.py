"""``weather``: store a daily weather table so that ``add`` (accumulated degree-days) becomes a
metadata field like ``days`` (clustering weight, map colour, series axis)."""
from __future__ import annotations

from serieslabeler.cli.base import Result, add_common
from serieslabeler.ingest.weather_store import store_weather
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("weather", help="add a daily temperature table: degree-days ('add') become a metadata field")
    add_common(parser)
    parser.add_argument("--table", required=True, help="CSV with a date column and mean (or min and max) temperature in °C")
    parser.add_argument("--key", metavar="ATTR", help="image attribute (and table column) naming each image's site")
    parser.add_argument("--base", type=float, default=0.0, help="base temperature in °C (default 0)")
    parser.set_defaults(run=run_weather)


def run_weather(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        report = store_weather(workspace, args.table, args.key, args.base)
    lines = [f"stored {report.days} day(s) of weather for {len(report.keys)} key(s) from {report.source} "
             f"(base {report.base:g} °C); degree-days up to {report.max_add:.1f}; use the metadata field 'add'"]
    lines += [f"gap (not filled, outside every subject's photos): key '{g['key']}' {g['first']} .. {g['last']}" for g in report.gaps]
    return Result({"ok": True, **report.to_dict()}, "\n".join(lines))

"""``ingest`` and ``info``: build a workspace from images + a metadata CSV, and describe it."""
from __future__ import annotations

import shutil
from pathlib import Path

from serieslabeler.cli.base import Result, add_common
from serieslabeler.errors import InputError
from serieslabeler.ingest.run import SKIP_HINT, ingest
from serieslabeler.ingest.tables import ColumnMapping, parse_attribute_spec
from serieslabeler.progress import ProgressLine
from serieslabeler.store.summary import format_summary, summarize
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("ingest", help="add images + a metadata CSV to a workspace (created if new)")
    add_common(parser)
    parser.add_argument("--images", required=True, help="a folder of images or a .zip")
    parser.add_argument("--metadata", required=True, help="the metadata CSV (UTF-8)")
    parser.add_argument("--subject", required=True, help="column holding the subject id")
    parser.add_argument("--date", required=True, help="column holding the date (ISO, or day/month-first)")
    parser.add_argument("--time", help="column holding the time of day, if separate (e.g. 18-20 or 18:20)")
    parser.add_argument("--label", help="column holding a ground-truth label (kept apart from labels made here)")
    parser.add_argument(
        "--attributes",
        help="columns to keep as attributes, comma-separated; COL:numeric or COL:categorical fixes a type",
    )
    parser.add_argument("--file", help="column holding the image file name (default: the column that matches)")
    parser.add_argument("--date-order", choices=["dmy", "mdy"], help="order of ambiguous dates like 05/06/2020")
    parser.add_argument("--skip-bad", action="store_true", help="ingest the good part and list the bad part")
    parser.set_defaults(run=run_ingest)

    parser = subparsers.add_parser("info", help="what a workspace holds")
    add_common(parser)
    parser.set_defaults(run=run_info)


def command_line_hints(error: InputError) -> list[str]:
    """The options that fix an ingest error (the library's messages name no options: the app shows them too)."""
    text = str(error)
    hints = []
    if "date order" in text:
        hints.append("Pass --date-order dmy or mdy.")
    if "file names" in error.hint:
        hints.append("Name it with --file COLUMN.")
    if error.hint.startswith(SKIP_HINT):
        hints.append("Pass --skip-bad to ingest the good part.")
    return hints


def run_ingest(args) -> Result:
    names, kinds = parse_attribute_spec(args.attributes)
    mapping = ColumnMapping(
        subject=args.subject,
        date=args.date,
        time=args.time,
        label=args.label,
        attributes=names,
        kinds=kinds,
        file=args.file,
        date_order=args.date_order,
    )
    new = not Path(args.workspace).exists()
    try:
        with Workspace.create(args.workspace) as workspace:
            try:
                report = ingest(workspace, args.images, args.metadata, mapping, args.skip_bad, ProgressLine("checking images"))
            except InputError as error:
                error.hint = " ".join([error.hint, *command_line_hints(error)]).strip()
                raise
    except InputError:
        if new:  # a first ingest that wrote nothing leaves no empty workspace behind
            shutil.rmtree(args.workspace, ignore_errors=True)
        raise
    data = {"ok": True, **report.to_dict()}
    text = (
        f"ingested into {args.workspace}: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged; workspace now has {report.images} images of {report.subjects} subjects"
    )
    if report.skipped:
        text += f"\nskipped {len(report.skipped)}:\n" + "\n".join(f"  {p}" for p in report.skipped)
    return Result(data, text)


def run_info(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        info = summarize(workspace)
    return Result(info, format_summary(info))

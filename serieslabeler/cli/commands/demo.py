"""``demo``: prepare the bundled sample workspace the app opens on."""
from __future__ import annotations

from serieslabeler.cli.base import Result, add_common
from serieslabeler.demo import prepare_sample
from serieslabeler.progress import ProgressLine
from serieslabeler.store.summary import format_summary, summarize


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="prepare the bundled sample workspace (data_samples/)")
    add_common(parser)
    parser.set_defaults(run=run_demo)


def run_demo(args) -> Result:
    with prepare_sample(args.workspace, ProgressLine("sample")) as workspace:
        info = summarize(workspace)
    return Result(info, format_summary(info))

"""``report``: one self-contained HTML file of a workspace's state, for stakeholders."""
from __future__ import annotations

from serieslabeler.cli.base import Result, add_common
from serieslabeler.report import write_report
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write a self-contained HTML report (collection, effort, quality, threshold, examples)")
    add_common(parser)
    parser.add_argument("--out", required=True, help="the .html file to write")
    parser.add_argument("--title", help="the report's title (default: the workspace folder's name)")
    parser.set_defaults(run=run_report)


def run_report(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        size = write_report(workspace, args.out, args.title)
    return Result({"ok": True, "out": str(args.out), "bytes": size}, f"report written to {args.out} ({size // 1024} KiB)")

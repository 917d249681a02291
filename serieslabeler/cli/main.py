"""The command line: ``serieslabeler COMMAND ...`` (or ``python -m serieslabeler``).

Each module in :mod:`serieslabeler.cli.commands` defines ``register(subparsers)`` and adds its
commands; a command's handler takes the parsed arguments and returns a :class:`Result`.
With ``--json`` the result is printed as one JSON object on the last line; otherwise its
readable text is printed. Errors print one clear message and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from serieslabeler.cli.base import Result, report_error
from serieslabeler.cli.commands import (
    cluster,
    demo,
    embed,
    ingest,
    label,
    metrics,
    sample,
    train,
    vae,
)
from serieslabeler.errors import PipelineError

COMMAND_MODULES = (cluster, demo, embed, ingest, label, metrics, sample, train, vae)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serieslabeler",
        description="Metadata-aware clustering and labeling of image series.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: Result = args.run(args)
    except PipelineError as error:
        return report_error(args, error)
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.data, default=str, sort_keys=False))
    elif result.text:
        print(result.text)
    return result.exit_code


def run() -> None:
    """The ``serieslabeler`` console command."""
    sys.exit(main())

"""The command line: ``serieslabeler COMMAND ...`` (or ``python -m serieslabeler``).

Each module in :mod:`serieslabeler.cli.commands` defines ``register(subparsers)`` and adds its
commands; a command's handler takes the parsed arguments and returns a :class:`Result`.
With ``--json`` the result is printed as one JSON object on the last line; otherwise its
readable text is printed. Errors print one clear message and exit with status 2.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from serieslabeler.cli.base import Result, report_error
from serieslabeler.cli.commands import (
    audit,
    cluster,
    demo,
    embed,
    ingest,
    label,
    metrics,
    report,
    sample,
    series,
    train,
    vae,
    weather,
)
from serieslabeler.errors import PipelineError

COMMAND_MODULES = (audit, cluster, demo, embed, ingest, label, metrics, report, sample, series, train, vae, weather)


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
    except OverflowError:
        return report_error(args, PipelineError(f"a number is too large (at most {SQLITE_MAX_INT}); nothing was changed"))
    except OSError as error:
        return report_error(args, PipelineError(os_error_line(error)))
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    try:
        if args.json:
            print(json.dumps(result.data, default=str, sort_keys=False))
        elif result.text:
            print(result.text)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (``| head``): the work is done, the rest unread
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return result.exit_code


SQLITE_MAX_INT = 2**63 - 1


def os_error_line(error: OSError) -> str:
    """One line for a failing file operation: what failed, on which file, and the system's reason."""
    where = f"{error.filename}: " if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"{where}the disk is full (free some space and try again)"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{where}cannot be written ({error.strerror}); read-only commands such as 'info' and 'export' still work"
    return f"{where}{error.strerror or error}"


def run() -> None:
    """The ``serieslabeler`` console command."""
    sys.exit(main())

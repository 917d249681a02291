"""The command line: ``python -m pipeline COMMAND ...``.

Each module in :mod:`pipeline.commands` defines ``register(subparsers)`` and adds its
commands; a command's handler takes the parsed arguments and returns a :class:`Result`.
With ``--json`` the result is printed as one JSON object on the last line; otherwise its
readable text is printed. Errors print one clear message and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Any

from . import commands
from .errors import InputError, PipelineError


@dataclass
class Result:
    """What a command returns: data for ``--json`` and a readable summary."""

    data: dict[str, Any]
    text: str = ""
    exit_code: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def add_common(parser: argparse.ArgumentParser, workspace: bool = True) -> None:
    """The options every command has: ``--workspace`` (when it needs one) and ``--json``."""
    if workspace:
        parser.add_argument("--workspace", required=True, help="workspace folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Metadata-aware clustering and labeling of image series.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
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


def report_error(args: argparse.Namespace, error: PipelineError) -> int:
    print(f"error: {error}", file=sys.stderr)
    if getattr(args, "json", False):
        payload: dict[str, Any] = {"ok": False, "error": str(error)}
        if isinstance(error, InputError):
            payload["problems"] = [{"where": p.where, "message": p.message} for p in error.problems]
        print(json.dumps(payload))
    return 2


def parse_key_values(text: str | None, option: str) -> dict[str, float]:
    """Parse ``a=0.3,b=0.1`` into ``{"a": 0.3, "b": 0.1}`` with a clear message on bad input."""
    out: dict[str, float] = {}
    if not text:
        return out
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise PipelineError(f"{option}: '{part}' is not NAME=NUMBER (e.g. day=0.3,group=0.1)") from None
    return out

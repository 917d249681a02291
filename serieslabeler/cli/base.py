"""cli.base"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from serieslabeler.errors import InputError, PipelineError


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

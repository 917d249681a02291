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


def check_number(option: str, value, *, at_least=None, above=None, below=None, what: str = ""):
    """Refuse an option's number outside its range with one message naming the option (a
    :class:`PipelineError`: exit status 2): ``at_least`` and ``above`` / ``below`` (strict) bounds,
    ``what`` the unit or meaning shown after the rule (e.g. " (0: off)"). None passes; returns ``value``."""
    if value is None:
        return value
    # written as "not (within)" so that NaN is refused too
    if (at_least is not None and not value >= at_least) or (above is not None and not value > above) or (
        below is not None and not value < below
    ):
        if above is not None and below is not None:
            rule = f"strictly between {above:g} and {below:g}"
        elif above is not None:
            rule = "positive" if above == 0 else f"more than {above:g}"
        elif at_least is not None:
            rule = f"at least {at_least:g}"
        else:
            rule = f"less than {below:g}"
        raise PipelineError(f"{option} must be {rule}{what}, not {value:g}")
    return value


def parse_key_values(text: str | None, option: str, example: str = "day=0.3,group=0.1") -> dict[str, float]:
    """Parse ``a=0.3,b=0.1`` into ``{"a": 0.3, "b": 0.1}`` with a clear message on bad input
    (showing ``example``, one of what the option takes)."""
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
            raise PipelineError(f"{option}: '{part}' is not NAME=NUMBER (e.g. {example})") from None
    return out

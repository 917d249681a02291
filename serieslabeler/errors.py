"""Errors the library raises for bad input or bad requests.

The command line prints them as one clear message (no traceback) and exits non-zero;
the app shows them in the page.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


class PipelineError(Exception):
    """A user-facing error: the message says what is wrong and, where possible, how to fix it."""


@dataclass(frozen=True)
class Problem:
    """One bad piece of input: where it is (file, row, field) and what is wrong with it."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class InputError(PipelineError):
    """Input with one or more problems; nothing was written."""

    problems: list[Problem] = field(default_factory=list)
    hint: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"{len(self.problems)} problem(s) in the input; nothing was written:"]
        lines += [f"  {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


# Where the app does what a command does, for messages shown to people rather than to a shell.
COMMAND_PLACES = {
    "ingest": "add images on the Collection page",
    "embed": "embed on the Embed & map page",
    "map": "make a map on the Embed & map page",
    "samples": "see the Sample page",
    "sample": "draw a sample on the Sample page",
    "clusterings": "see the Cluster page",
    "cluster": "cluster on the Cluster page",
    "label": "label on the Label page",
    "train": "train on the Train & route page",
    "predict": "predict on the Train & route page",
    "models": "see the Metrics page",
}
_COMMAND_ASIDE = re.compile(r"\('serieslabeler ([a-z-]+)[^']*'\)")
_COMMAND = re.compile(r"(?:run |with |make one with |train one with |list them with )?'serieslabeler ([a-z-]+)[^']*'")
_OPTIONS_ASIDE = re.compile(r"\s*\((?:e\.g\. )?--[^)]*\)")
_PASS_OPTION = re.compile(r"\bpass --([a-z][a-z-]*)")
_OPTION = re.compile(r"--([a-z][a-z-]*)(?: [A-Z]+\b)?")


def for_people(message: str) -> str:
    """A library message as the app shows it: commands become the page that does the same, and
    command-line options become plain words (the command line keeps the original)."""
    def place(match: re.Match) -> str:
        return COMMAND_PLACES.get(match.group(1), f"the {match.group(1)} step")

    text = _COMMAND_ASIDE.sub(lambda m: f"({place(m)})", message)
    text = _COMMAND.sub(place, text)
    text = _OPTIONS_ASIDE.sub("", text)
    text = _PASS_OPTION.sub(lambda m: f"turn on '{m.group(1).replace('-', ' ')}'", text)
    return _OPTION.sub(lambda m: f"'{m.group(1).replace('-', ' ')}'", text)

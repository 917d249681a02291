"""Errors the library raises for bad input or bad requests.

The command line prints them as one clear message (no traceback) and exits non-zero;
the app shows them in the page.
"""
from __future__ import annotations

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

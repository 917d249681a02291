"""Progress reporting for long work, shared by the command line and the app.

Library functions take ``progress: Progress | None`` and call it as
``progress(done, total)``; the command line passes a :class:`ProgressLine`, the app a
callback that drives ``st.progress``.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

Progress = Callable[[int, int], None]


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Rate:
    """Items per second and time left, from the start time and the count done."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.start = clock()

    def describe(self, done: int, total: int) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        eta_text = format_duration(eta) if eta != float("inf") else "?"
        return f"{rate:.1f}/s, ETA {eta_text}"


class ProgressLine:
    """A one-line progress display on stderr: ``label  120/220 (55%)  33.1/s, ETA 0:03``."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, min_interval: float = 0.2):
        self.label = label
        self.stream = stream
        self.min_interval = min_interval
        self.rate = Rate()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self.min_interval:
            return
        self._last = now
        share = 100.0 * done / total if total else 100.0
        line = f"{self.label} {done}/{total} ({share:.0f}%) {self.rate.describe(done, total)}"
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{line}{end}")
        self.stream.flush()


def human_size(n_bytes: float) -> str:
    """A size in bytes as people read it: ``840 bytes``, ``4.2 kB``, ``12.3 MB``, ``1.5 GB``."""
    if n_bytes < 1000:
        return f"{int(n_bytes)} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        n_bytes /= 1000
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.1f} {unit}"
    raise AssertionError("unreachable")

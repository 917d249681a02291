"""A demo that runs itself: the ground truth plays the expert for a few rounds of the loop.

Every label event of a demo is marked: the oracle's are recorded with author ``demo``, and the
model's pseudo-labels made during it follow them. The demo's first event is remembered in the
catalog's ``meta`` (``demo_after_event``), so :func:`undo_demo` can undo all of it as one action
(as long as nobody labeled anything after it began: their work is never undone with it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import undo
from serieslabeler.labels.records import LabelEvent
from serieslabeler.loop.iterate import (
    IterateConfig,
    IterationResult,
    NothingToIterate,
    iterate,
    last_event_id,
)
from serieslabeler.progress import Progress
from serieslabeler.store.queries import has_ground_truth
from serieslabeler.store.workspace import Workspace

DEMO_AUTHOR = "demo"
DEMO_META = "demo_after_event"
DEMO_AUTHORS = (DEMO_AUTHOR, "model")


def demo_to_undo(workspace: Workspace) -> bool:
    """Whether a demo ran here and is not undone yet."""
    return workspace.get_meta(DEMO_META) is not None


@dataclass
class Demo:
    """The rounds a demo ran (``rounds`` asked for); ``stopped``: why it ended early, if it did."""

    results: list[IterationResult]
    rounds: int
    stopped: str | None = None

    @property
    def stop_note(self) -> str | None:
        """Why the demo ran fewer rounds than asked, in words (None when it ran them all)."""
        return None if self.stopped is None else f"The demo stopped after {len(self.results)} of {self.rounds} rounds: {self.stopped}"

    @property
    def message(self) -> str:
        return "\n".join([r.message for r in self.results] + ([self.stop_note] if self.stop_note else []))

    def to_dict(self) -> dict:
        return {"rounds": [r.to_dict() for r in self.results], "asked": self.rounds, "stopped": self.stopped}


def run_demo(
    workspace: Workspace, config: IterateConfig, rounds: int = 3, on_round: Callable[[int, int], None] | None = None,
    progress: Progress | None = None,
) -> Demo:
    """Run ``rounds`` oracle rounds of :func:`serieslabeler.loop.iterate`; ``on_round(done, rounds)`` after each.
    A small collection can run out of images before the last round: the demo then stops there and
    says so (a first round with nothing to label is an error)."""
    if rounds < 1:
        raise PipelineError(f"a demo needs at least 1 round, not {rounds}")
    if not has_ground_truth(workspace):
        raise PipelineError(f"{workspace.root} has no ground truth for the demo's oracle; ingest a label column with '--label COL'")
    if workspace.get_meta(DEMO_META) is None:
        workspace.set_meta(DEMO_META, str(last_event_id(workspace)))
    demo = Demo([], rounds)
    for done in range(1, rounds + 1):
        try:
            demo.results.append(iterate(workspace, config, oracle=True, progress=progress, author=DEMO_AUTHOR))
        except NothingToIterate as error:
            if not demo.results:
                raise
            demo.stopped = str(error)
            break
        if on_round is not None:
            on_round(done, rounds)
    return demo


def _live_events_after(workspace: Workspace, event_id: int) -> list:
    return workspace.db.execute(
        "SELECT id, author FROM label_events e WHERE e.id > ? AND e.action != 'undo' AND NOT EXISTS "
        "(SELECT 1 FROM label_events u WHERE u.action='undo' AND u.reverses=e.id) ORDER BY e.id", (event_id,),
    ).fetchall()


def undo_demo(workspace: Workspace, author: str = "cli") -> list[LabelEvent]:
    """Undo every event of the demo (newest first) as one action; the demo marker is cleared."""
    start = workspace.get_meta(DEMO_META)
    if not demo_to_undo(workspace):
        raise PipelineError(f"no demo to undo in {workspace.root}")
    events = _live_events_after(workspace, int(start))
    others = [e for e in events if e["author"] not in DEMO_AUTHORS]
    if others:
        raise PipelineError(f"event {others[0]['id']} by {others[0]['author']} came after the demo began; "
                            "undo it first (a demo undo never takes someone's work with it)")
    with workspace.transaction():
        done = undo(workspace, n=len(events), author=author, any_author=True) if events else []
        workspace.db.execute("DELETE FROM meta WHERE key=?", (DEMO_META,))
    return done

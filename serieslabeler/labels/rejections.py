"""labels.rejections: what the expert said an image is *not*.

Three actions say it, and each is in the label log:

- clicking an image out of a cluster named X (``label_cluster``'s ``excluded``): not X;
- rejecting an image's pending pseudo-label X (``reject_pseudo``): not X;
- clicking an image out of a series (``label_series``'s ``excluded``: a stake, a blurred shot,
  another body part): no stage at all.

The model does not know any of this: a misfit clicked out of cluster X lies close to X, so the
model predicts X for it confidently, and routing would hand the expert back the very label they
took away. Routing therefore never makes a pseudo-label the expert rejected
(:func:`serieslabeler.loop.routing.route_predictions`). Only events still in force count (an undone
cluster label rejects nothing), and a later event that takes an image back in (``included``)
lifts its rejection; a rejection follows its label through renames, and is dropped when its
label is merged into another (not A says nothing about A or B).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import _LIVE
from serieslabeler.store.queries import id_array
from serieslabeler.store.workspace import Workspace

REJECTING_ACTIONS = ("label_cluster", "reject_pseudo", "label_series")
_VOCABULARY_ACTIONS = ("vocab_rename", "vocab_merge")


@dataclass(frozen=True)
class Rejections:
    """Per image, the labels the expert rejected; ``everything``: images that are no stage at all."""

    labels: dict[int, frozenset[str]] = field(default_factory=dict)
    everything: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(set(self.labels) | self.everything)

    def rejects(self, image_id: int, label: str) -> bool:
        return int(image_id) in self.everything or str(label) in self.labels.get(int(image_id), frozenset())

    def no_stage(self, image_ids) -> np.ndarray:
        """True for the images clicked out of their series (no stage at all)."""
        return np.isin(np.asarray(image_ids, dtype=np.int64), np.fromiter(self.everything, dtype=np.int64, count=len(self.everything)))

    def mask(self, image_ids, labels) -> np.ndarray:
        """True where giving ``labels[i]`` to ``image_ids[i]`` contradicts the expert."""
        image_ids, labels = np.asarray(image_ids, dtype=np.int64), np.asarray(labels)
        out = self.no_stage(image_ids)
        named = np.flatnonzero(np.isin(image_ids, np.fromiter(self.labels, dtype=np.int64, count=len(self.labels))))
        out[named] |= np.array([self.rejects(image_ids[row], labels[row]) for row in named], dtype=bool)
        return out


def rejected_labels(workspace: Workspace, image_ids=None) -> Rejections:
    """The rejections in force in the label log (see the module docstring), read in event order;
    with ``image_ids`` (a few: a cluster's members, a series), only theirs, so a whole-class
    rejection of many pseudo-labels is not read on every click."""
    db = workspace.db
    among = None if image_ids is None else {int(i) for i in image_ids}
    only = "" if among is None else " AND image_id IN (SELECT value FROM json_each(?))"
    only_params = () if among is None else (id_array(sorted(among)),)
    actions = REJECTING_ACTIONS + _VOCABULARY_ACTIONS
    rows = db.execute(
        f"SELECT e.id, e.action, e.label, e.details FROM label_events e WHERE e.action IN ({','.join('?' * len(actions))}) "
        f"AND {_LIVE} ORDER BY e.id", actions,
    ).fetchall()
    labels: dict[int, set[str]] = {}
    everything: set[int] = set()
    for event_id, action, label, details in rows:
        details = json.loads(details)
        if action == "label_cluster":
            for image_id in details.get("excluded", []):
                labels.setdefault(int(image_id), set()).add(label)
            for image_id in details.get("included", []):
                labels.get(int(image_id), set()).discard(label)
        elif action == "reject_pseudo":
            for image_id, rejected in db.execute(
                f"SELECT image_id, prev_label FROM label_event_images WHERE event_id=? AND prev_label IS NOT NULL{only}",
                (event_id, *only_params),
            ):
                labels.setdefault(int(image_id), set()).add(rejected)
        elif action == "label_series":
            everything.update(int(i) for i in details.get("excluded", []))
            everything.difference_update(int(i) for i in details.get("included", []))
        elif action == "vocab_rename":
            _rename(labels, details["old"], details["new"])
        else:
            _forget(labels, details["merged"])
    if among is not None:
        labels, everything = {i: names for i, names in labels.items() if i in among}, everything & among
    return Rejections({i: frozenset(names) for i, names in labels.items() if names}, frozenset(everything))


def _rename(labels: dict[int, set[str]], old: str, new: str) -> None:
    for names in labels.values():
        if old in names:
            names.discard(old)
            names.add(new)


def _forget(labels: dict[int, set[str]], merged) -> None:
    for names in labels.values():
        names.difference_update(merged)


@dataclass(frozen=True)
class Exclusions:
    """What a labeling action leaves out: the images clicked out now and those rejected before
    (unless taken back in), and how many the expert clicked (one per image newly clicked out or
    taken back in; one rejected before stays out at no cost)."""

    out: list[int]
    rejected_before: list[int]
    included: list[int]
    clicks: int

    def details(self) -> dict:
        return {"excluded": self.out, "rejected_before": self.rejected_before, "included": self.included}


def exclusions(excluded, include, before) -> Exclusions:
    """:class:`Exclusions` of an action clicking out ``excluded`` and taking back ``include``, where
    ``before`` were rejected already."""
    excluded, include, before = set(excluded), set(include), set(before)
    both = sorted(excluded & include)
    if both:
        raise PipelineError(f"image {both[0]} is both excluded and included; name it in one of the two")
    included = sorted(before & include)
    return Exclusions(sorted(excluded | (before - include)), sorted(before - include), included, len(excluded - before) + len(included))

"""labels.series: label a series by its stage transitions.

With an ordered vocabulary every series is monotone, so the expert names only the *boundaries*:
the first image of each new stage, ``(stage, image_id)`` in time order. Every image from one
boundary up to the next gets that boundary's stage (source ``series``); images before the first
boundary and images clicked out (``exclude``: a stake, a blurred shot, another body part) get
no label from the event (an earlier series label on them is removed, any other label is kept).

Confidence: the boundary images are the ones the expert looked at and confirmed. An image at
``d`` positions from the nearest boundary image gets ``p_s * exp(-a * d / m)``, with ``m`` the
median of ``d`` over the images labeled by the event (``m = 0``: every image gets ``p_s``),
the same shape as cluster labels' ``p_c * exp(-a * d)`` with ``d`` over the cluster's median.

Interactions: one per boundary placed, moved or removed, compared with the series' current
series labels (or with the model's proposal, when one is accepted: then 1 for accepting it
plus one per boundary moved), plus one per excluded image. An image clicked out of a series
before (:mod:`serieslabeler.labels.rejections`) stays out at no cost, so labeling the series
again does not give the stake a stage; ``include`` takes it back in (one click each). The
event is one row of the label log like any other: undo restores every image's exact previous
label, redo re-applies it.
"""
from __future__ import annotations

import math

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import (
    _check_confidence,
    _current_states,
    _image_ids,
    _record,
)
from serieslabeler.labels.records import LabelEvent, LabelState
from serieslabeler.labels.rejections import exclusions, rejected_labels
from serieslabeler.labels.vocabulary import vocabulary_order
from serieslabeler.store.series import Series, get_series
from serieslabeler.store.workspace import Workspace

Boundary = tuple[str, int]


def require_order(workspace: Workspace) -> list[str]:
    """The ordered vocabulary's stages; a clear error when the vocabulary is not ordered."""
    order = vocabulary_order(workspace)
    if order is None:
        raise PipelineError(
            "the vocabulary is not ordered: declare the stages first, e.g. 'serieslabeler vocab --workspace WS "
            "--add U,R,V,O --ordered'"
        )
    return order


def series_confidences(n: int, confirmed: np.ndarray, labeled: np.ndarray, series_confidence: float = 1.0, a: float = 1.0) -> np.ndarray:
    """``p_s * exp(-a * d / m)`` per position (see the module docstring); ``confirmed`` are the
    boundary positions, ``labeled`` a mask of the positions the median ``m`` is taken over."""
    positions = np.arange(n)
    d = np.abs(positions[:, None] - np.asarray(confirmed)[None, :]).min(axis=1).astype(np.float64)
    median = float(np.median(d[labeled])) if labeled.any() else 0.0
    scaled = d / median if median > 0 else np.zeros_like(d)
    return series_confidence * np.exp(-a * scaled)


def parse_boundaries(text: str) -> list[Boundary]:
    """``"U@12,R@17"`` -> ``[("U", 12), ("R", 17)]`` with a clear message on bad input."""
    out = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        stage, sep, image = part.rpartition("@")
        if not sep or not stage.strip():
            raise PipelineError(f"boundary '{part}' is not STAGE@IMAGE_ID (e.g. U@12,R@17)")
        out.append((stage.strip(), _image_ids([image.strip()], f"boundary '{part}'")[0]))
    return out


def format_boundaries(boundaries) -> str:
    return ",".join(f"{stage}@{image_id}" for stage, image_id in boundaries)


def series_boundaries(workspace: Workspace, series: Series | str) -> list[Boundary]:
    """The boundaries the series' current ``series`` labels make (first image of each stage run)."""
    series = _as_series(workspace, series)
    states = _current_states(workspace, list(series.image_ids))
    out: list[Boundary] = []
    for image_id in series.image_ids:
        state = states.get(image_id, (None, None))[0]
        if state is not None and state.source == "series" and (not out or out[-1][0] != state.label):
            out.append((state.label, image_id))
    return out


def boundary_changes(reference, boundaries) -> int:
    """Boundaries placed, moved or removed going from ``reference`` to ``boundaries`` (one click each)."""
    before, after = dict(reference), dict(boundaries)
    return sum(1 for stage, image in after.items() if before.get(stage) != image) + sum(1 for stage in before if stage not in after)


def boundary_offsets(reference, boundaries, image_ids) -> list[int | None]:
    """How far each of ``reference``'s boundaries is from ``boundaries``' start of the same stage,
    in photos along ``image_ids`` (the series in time order): one entry per stage either names,
    None for a stage only one of them has (a stage missed or invented). What a proposal's
    corrections are made of: a boundary one photo off costs a click like one ten photos off."""
    position = {int(image): k for k, image in enumerate(image_ids)}
    before, after = dict(reference), dict(boundaries)
    return [abs(position[int(before[stage])] - position[int(after[stage])]) if stage in before and stage in after else None
            for stage in dict.fromkeys([*after, *before])]


def label_series(
    workspace: Workspace,
    series: Series | str,
    boundaries,
    exclude=(),
    author: str = "cli",
    session_id: int | None = None,
    proposal=None,
    series_confidence: float = 1.0,
    a: float = 1.0,
    iteration: int | None = None,
    include=(),
) -> LabelEvent:
    """Label a series from its boundaries ``[(stage, image_id), ...]`` (see the module docstring).

    ``proposal``: the model's proposed boundaries when the expert accepts (or corrects) them.
    ``include``: images clicked out of the series before, taken back in.
    """
    series_confidence = _check_confidence(series_confidence, "the series confidence p_s")
    if not (math.isfinite(a) and a >= 0):
        raise PipelineError(f"the distance weight a must be a number >= 0, not {a}")
    excluded, include = _image_ids(exclude, "excluded images"), _image_ids(include, "images to include")
    with workspace.transaction():
        series = _as_series(workspace, series)
        order = require_order(workspace)
        spelled = _checked_boundaries(series, order, boundaries)
        for image_id in excluded + include:
            series.position(image_id)
        left_out = exclusions(excluded, include, rejected_labels(workspace, series.image_ids).everything)
        starts = {image for _, image in spelled}
        clash = sorted(set(excluded) & starts)
        if clash:
            raise PipelineError(f"image {clash[0]} is the first image of a stage; it cannot also be excluded")
        clash = sorted(set(left_out.out) & starts)
        if clash:
            raise PipelineError(f"image {clash[0]} was clicked out of series '{series.key}' before; include it to make it "
                                "the first image of a stage")
        reference = series_boundaries(workspace, series) if proposal is None else _checked_boundaries(series, order, proposal)
        changes = _series_changes(workspace, series, spelled, left_out.out, series_confidence, a)
        _refuse_later_stages_before(workspace, series, order, spelled[0], set(changes) | set(left_out.out))
        interactions = boundary_changes(reference, spelled) + (0 if proposal is None else 1) + left_out.clicks
        return _record(
            workspace, "label_series", changes, author=author, interactions=interactions, source="series",
            iteration=iteration, session_id=session_id,
            details={"series": series.key, "boundaries": [list(b) for b in spelled], **left_out.details(),
                     "proposal": None if proposal is None else [list(b) for b in reference],
                     "series_confidence": series_confidence, "a": a},
        )


def _refuse_later_stages_before(workspace: Workspace, series: Series, order: list[str], first: Boundary, changed: set[int]) -> None:
    """Stages go one way: an image before the first boundary that keeps a label of a later stage
    (a hand or cluster label the series would leave in place) would make the series go back."""
    stage, image = first
    before = [i for i in series.image_ids[:series.position(image)] if i not in changed]
    for image_id, (state, _) in sorted(_current_states(workspace, before).items()):
        if state.label in order and order.index(state.label) > order.index(stage):
            raise PipelineError(
                f"image {image_id} of series '{series.key}' is labeled {state.label} ({state.source}) before {stage} starts at "
                f"image {image}; stages go one way: start the series at or before image {image_id}, or click that image out"
            )


def _as_series(workspace: Workspace, series: Series | str) -> Series:
    return series if isinstance(series, Series) else get_series(workspace, series)


def _checked_boundaries(series: Series, order: list[str], boundaries) -> list[Boundary]:
    """Boundaries with the order's spelling, in the series, later stages at later images."""
    ranks = {name.casefold(): (i, name) for i, name in enumerate(order)}
    out: list[Boundary] = []
    last = (-1, -1)
    for stage, image_id in boundaries:
        rank, name = ranks.get(str(stage).strip().casefold(), (None, None))
        if rank is None:
            raise PipelineError(f"stage '{stage}' is not in the ordered vocabulary ({' < '.join(order)})")
        position = series.position(image_id)
        if rank <= last[0] or position <= last[1]:
            raise PipelineError(
                f"boundaries out of order at '{stage}@{image_id}': each boundary must name a later stage "
                f"({' < '.join(order)}) at a later image of series '{series.key}' than the one before"
            )
        last = (rank, position)
        out.append((name, int(image_id)))
    if not out:
        raise PipelineError(f"name at least one boundary (STAGE@IMAGE_ID) for series '{series.key}'")
    return out


def _series_changes(workspace: Workspace, series: Series, boundaries: list[Boundary], excluded: list[int],
                    series_confidence: float, a: float) -> dict[int, LabelState | None]:
    ids = np.array(series.image_ids, dtype=np.int64)
    starts = np.array([series.position(image) for _, image in boundaries])
    segment = np.searchsorted(starts, np.arange(len(ids)), side="right") - 1
    labeled = (segment >= 0) & ~np.isin(ids, excluded)
    confidences = series_confidences(len(ids), starts, labeled, series_confidence, a)
    current = _current_states(workspace, ids.tolist())
    changes: dict[int, LabelState | None] = {}
    for i, image_id in enumerate(ids.tolist()):
        if labeled[i]:
            changes[image_id] = LabelState(boundaries[segment[i]][0], "series", float(confidences[i]))
        elif image_id in current and current[image_id][0].source == "series":
            changes[image_id] = None
    return changes

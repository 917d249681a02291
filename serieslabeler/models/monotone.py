"""Monotone decoding of ordered stages along an image time series.

Why: the stages of decomposition (or ripening, or any process that only
moves forward) never go back. A per-image classifier does not know this
and now and then gives an isolated image a stage that contradicts its
neighbours (fresh, bloated, fresh, ...). Restricting the answer to
non-decreasing stage sequences turns the per-image probabilities into
one coherent sequence and repairs those isolated flips.

Conventions:

* ``proba`` is an ``(n_images, n_stages)`` array of class probabilities
  (or any non-negative likelihoods), rows in time order, columns in stage
  order (stage 0 < stage 1 < ...). Rows need not sum to 1.
* Probabilities are clipped from below at ``eps`` before taking logs, so
  a zero never makes every sequence impossible.
* Stage ``-1`` means "unlabeled" (only in :func:`stages_from_boundaries`
  and :func:`boundaries`).

Everything is O(n_images * n_stages): the "stage may only grow" constraint
becomes a running maximum (Viterbi) or a running log-sum-exp
(forward-backward) over a prefix or suffix of the stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

UNLABELED = -1


@dataclass(frozen=True)
class MonotoneDecoding:
    """Result of :func:`decode`.

    stages: most probable non-decreasing stage per image, shape (n,).
    confidence: posterior probability of that stage per image, shape (n,).
    posteriors: per-image posterior marginals over stages, shape (n, K).
    """

    stages: np.ndarray
    confidence: np.ndarray
    posteriors: np.ndarray


def decode(proba: np.ndarray, eps: float = 1e-12) -> MonotoneDecoding:
    """Monotone stage sequence plus per-image posteriors and confidence."""
    stages = decode_monotone(proba, eps)
    posteriors = monotone_posteriors(proba, eps)
    confidence = posteriors[np.arange(len(stages)), stages]
    return MonotoneDecoding(stages=stages, confidence=confidence, posteriors=posteriors)


def decode_monotone(proba: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Most probable non-decreasing stage sequence (Viterbi under s_1 <= ... <= s_n).

    Maximises ``sum_i log(max(proba[i, s_i], eps))`` over all monotone
    sequences. Ties are broken deterministically towards the lower stage:
    first for the last image, then for each predecessor while tracing back.
    """
    log_p = _log_likelihoods(proba, eps)
    n, n_stages = log_p.shape
    if n == 0:
        return np.zeros(0, dtype=int)
    backpointer = np.zeros((n, n_stages), dtype=int)
    score = log_p[0].copy()
    for i in range(1, n):
        best_before, argbest_before = _prefix_max_with_argmax(score)
        backpointer[i] = argbest_before
        score = log_p[i] + best_before
    stages = np.empty(n, dtype=int)
    stages[-1] = int(np.argmax(score))  # argmax returns the first (lowest) maximum
    for i in range(n - 1, 0, -1):
        stages[i - 1] = backpointer[i, stages[i]]
    return stages


def monotone_posteriors(proba: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Posterior marginals P(s_i = k | all images) over monotone sequences.

    The prior is uniform over non-decreasing sequences and image i's
    likelihood for stage k is ``max(proba[i, k], eps)``. Computed by
    forward-backward in log space: the forward pass sums over earlier
    stages (prefix log-sum-exp), the backward pass over later ones
    (suffix log-sum-exp). Rows of the result sum to 1.
    """
    log_p = _log_likelihoods(proba, eps)
    n, n_stages = log_p.shape
    if n == 0:
        return np.zeros((0, n_stages))
    forward = np.empty((n, n_stages))
    forward[0] = log_p[0]
    for i in range(1, n):
        forward[i] = log_p[i] + np.logaddexp.accumulate(forward[i - 1])
    backward = np.zeros((n, n_stages))
    for i in range(n - 2, -1, -1):
        following = log_p[i + 1] + backward[i + 1]
        backward[i] = np.logaddexp.accumulate(following[::-1])[::-1]
    joint = forward + backward
    joint -= joint.max(axis=1, keepdims=True)
    posteriors = np.exp(joint)
    return posteriors / posteriors.sum(axis=1, keepdims=True)


def boundaries(stages: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
    """(position, stage) of the first image of each stage, in time order.

    Includes position 0 when the first image is labeled. Leading unlabeled
    images (stage -1) produce no boundary, so that
    ``stages_from_boundaries(len(s), boundaries(s))`` gives ``s`` back.
    Refuses sequences that decrease or contain stages below -1.
    """
    values = _as_stage_vector(stages)
    if len(values) == 0:
        return []
    if values.min() < UNLABELED:
        raise ValueError(f"stages must be >= {UNLABELED} (-1 = unlabeled), got {values.min()}")
    drops = np.flatnonzero(np.diff(values) < 0)
    if len(drops):
        i = int(drops[0])
        raise ValueError(
            f"stages must be non-decreasing: stage {values[i]} at position {i} "
            f"is followed by stage {values[i + 1]}"
        )
    starts = np.flatnonzero(np.r_[True, np.diff(values) != 0])
    return [(int(p), int(values[p])) for p in starts if values[p] != UNLABELED]


def stages_from_boundaries(n: int, boundaries: Sequence[tuple[int, int]]) -> np.ndarray:
    """Stage per image from (position, stage) boundaries; inverse of :func:`boundaries`.

    Each image gets the stage of the last boundary at or before it; images
    before the first boundary get -1 (unlabeled). Boundaries must be
    strictly increasing in both position and stage, with positions in
    ``[0, n)`` and stages >= 0.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    positions, stage_values = _validated_boundaries(int(n), boundaries)
    result = np.full(n, UNLABELED, dtype=int)
    last = np.searchsorted(positions, np.arange(n), side="right") - 1
    labeled = last >= 0
    result[labeled] = stage_values[last[labeled]]
    return result


def _validated_boundaries(
    n: int, boundaries: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(boundaries)
    for pair in pairs:
        if len(pair) != 2 or not all(_is_integer(v) for v in pair):
            raise ValueError(f"each boundary must be an integer pair (position, stage), got {pair!r}")
    positions = np.array([int(p) for p, _ in pairs], dtype=int)
    stage_values = np.array([int(s) for _, s in pairs], dtype=int)
    if len(pairs) == 0:
        return positions, stage_values
    if positions.min() < 0 or positions.max() >= n:
        raise ValueError(f"boundary positions must lie in [0, {n}), got {positions.tolist()}")
    if stage_values.min() < 0:
        raise ValueError(f"boundary stages must be >= 0, got {stage_values.tolist()}")
    if np.any(np.diff(positions) <= 0):
        raise ValueError(f"boundary positions must be strictly increasing, got {positions.tolist()}")
    if np.any(np.diff(stage_values) <= 0):
        raise ValueError(
            f"boundary stages must be strictly increasing (stages only move forward), "
            f"got {stage_values.tolist()}"
        )
    return positions, stage_values


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_stage_vector(stages: Sequence[int] | np.ndarray) -> np.ndarray:
    values = np.asarray(stages)
    if values.ndim != 1:
        raise ValueError(f"stages must be 1-D, got shape {values.shape}")
    if len(values) and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"stages must be integers, got dtype {values.dtype}")
    return values.astype(int)


def _log_likelihoods(proba: np.ndarray, eps: float) -> np.ndarray:
    values = np.asarray(proba, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"proba must be 2-D (n_images, n_stages), got shape {values.shape}")
    if values.shape[1] == 0:
        raise ValueError("proba must have at least one stage column")
    if not np.all(np.isfinite(values)):
        raise ValueError("proba contains NaN or infinite values")
    if np.any(values < 0):
        raise ValueError("proba contains negative values")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return np.log(np.maximum(values, eps))


def _prefix_max_with_argmax(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running max over values[:k+1] and the lowest index attaining it, for every k."""
    running_max = np.maximum.accumulate(values)
    previous_max = np.r_[-np.inf, running_max[:-1]]
    new_record = values > previous_max
    argmax = np.maximum.accumulate(np.where(new_record, np.arange(len(values)), 0))
    return running_max, argmax


def stage_columns(proba: np.ndarray, classes, order) -> np.ndarray:
    """``proba`` with one column per stage of ``order`` (a stage the model lacks: 0)."""
    proba = np.asarray(proba, dtype=np.float64)
    column = {str(c): j for j, c in enumerate(classes)}
    out = np.zeros((len(proba), len(order)))
    for k, stage in enumerate(order):
        if stage in column:
            out[:, k] = proba[:, column[stage]]
    return out


def decode_series(proba: np.ndarray, classes, order, groups, times) -> tuple[np.ndarray, np.ndarray]:
    """Monotone labels and their posterior confidence per row, decoding each group (series) in
    time order. Rows are images; ``groups`` names each row's series, ``times`` sorts it."""
    order = list(order)
    stages = stage_columns(proba, classes, order)
    labels = np.empty(len(stages), dtype=object)
    confidence = np.zeros(len(stages))
    groups, times = np.asarray(groups), np.asarray(times)
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        rows = rows[np.argsort(times[rows], kind="stable")]
        decoded = decode(stages[rows])
        labels[rows] = np.asarray(order, dtype=object)[decoded.stages]
        confidence[rows] = decoded.confidence
    return labels, confidence

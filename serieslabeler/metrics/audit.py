"""Auditing routed pseudo-labels: who to show the expert, and what their answers say.

Routed items are those whose confidence cleared the threshold and became labels.
An expert checks a small sample; from their answers we estimate the precision
of everything routed, with an interval, overall and per predicted class.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serieslabeler.metrics.intervals import estimate_proportion, proportion_intervals

AUDIT_CONFIDENCE = 0.95
TOO_FEW = "too few"


# ---------------------------------------------------------------- sampling


def _largest_remainder(quotas: np.ndarray, size: int) -> np.ndarray:
    """Round quotas down, then hand the leftover units to the largest fractional parts."""
    allocation = np.floor(quotas).astype(np.intp)
    leftover = size - int(allocation.sum())
    by_remainder = np.argsort(-(quotas - allocation), kind="stable")
    allocation[by_remainder[:leftover]] += 1
    return allocation


def _ensure_one_per_class(allocation: np.ndarray, quotas: np.ndarray) -> np.ndarray:
    """Move single units to empty classes from the class most over its quota."""
    allocation = allocation.copy()
    for empty in np.flatnonzero(allocation == 0):
        donors = np.flatnonzero(allocation > 1)
        donor = donors[np.argmax(allocation[donors] - quotas[donors])]
        allocation[donor] -= 1
        allocation[empty] = 1
    return allocation


def allocate_sample(class_counts: np.ndarray, size: int) -> np.ndarray:
    """Proportional allocation of ``size`` draws over classes (largest-remainder rounding).

    Every class gets at least one draw when ``size`` is at least the number of
    classes; with fewer draws than classes some classes get none.  Requires
    ``size < class_counts.sum()`` so no class is asked for more than it holds.
    """
    counts = np.asarray(class_counts, dtype=float)
    quotas = size * counts / counts.sum()
    allocation = _largest_remainder(quotas, size)
    if size >= counts.shape[0]:
        allocation = _ensure_one_per_class(allocation, quotas)
    return allocation


def stratified_audit_sample(labels: np.ndarray, size: int = 30, random_state: int | None = 0) -> np.ndarray:
    """Sorted indices of a seeded sample of ``size`` items stratified by ``labels``.

    Returns every index when ``size`` covers the whole population.
    """
    labels = np.asarray(labels).ravel()
    if size < 0:
        raise ValueError("size must be non-negative")
    if size >= labels.shape[0]:
        return np.arange(labels.shape[0])
    rng = np.random.default_rng(random_state)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    allocation = allocate_sample(counts, size)
    chosen = [
        rng.choice(np.flatnonzero(inverse == k), size=int(allocation[k]), replace=False)
        for k in range(classes.shape[0])
    ]
    return np.sort(np.concatenate(chosen)).astype(np.intp)


# ---------------------------------------------------------------- precision from audits


def _plain_label(label: object) -> object:
    """numpy scalars become Python scalars so result dicts are JSON-able."""
    return label.item() if isinstance(label, np.generic) else label


def _interval_dict(successes: float, n: float, method: str) -> dict:
    return estimate_proportion(successes, n, method=method, confidence=AUDIT_CONFIDENCE).to_dict()


def _stratified_overall(
    correct: np.ndarray, strata: np.ndarray, population_counts: Mapping, method: str
) -> dict:
    """Population-weighted precision with an effective-sample-size interval.

    Estimate: p = sum_h W_h p_h with W_h = N_h / N.  Its variance,
    v = sum_h W_h^2 p_h (1 - p_h) / n_h (no finite-population correction, so
    slightly conservative), is turned into an effective sample size
    n_eff = p (1 - p) / v and the interval is computed as if p were a plain
    proportion from n_eff draws (Korn & Graubard, 1998).  n_eff is capped at
    the audited n, and falls back to n when v or p(1-p) is 0, because
    per-stratum variances from a handful of items (often 0) are unreliable and
    would otherwise give intervals narrower than a simple random sample's.
    """
    audited = {_plain_label(s) for s in np.unique(strata)}
    populated = {label for label, count in population_counts.items() if count > 0}
    unknown, unaudited = audited - set(population_counts), populated - audited
    if unknown:
        raise ValueError(f"audited strata missing from population_counts: {sorted(unknown, key=str)}")
    if unaudited:
        raise ValueError(f"strata with routed items but no audited items: {sorted(unaudited, key=str)}")

    total = float(sum(population_counts[label] for label in populated))
    estimate, variance = 0.0, 0.0
    for label in populated:
        hits = correct[strata == label]
        weight = population_counts[label] / total
        p_h = hits.mean()
        estimate += weight * p_h
        variance += weight**2 * p_h * (1.0 - p_h) / hits.shape[0]

    estimate = min(1.0, estimate)  # the weights' float sum can pass 1 when every answer is right
    n = correct.shape[0]
    spread = estimate * (1.0 - estimate)
    effective_n = min(float(n), spread / variance) if variance > 0 and spread > 0 else float(n)
    interval = _interval_dict(estimate * effective_n, effective_n, method)
    return {
        "successes": int(correct.sum()),
        "n": n,
        "estimate": float(estimate),
        "low": interval["low"],
        "high": interval["high"],
        "method": method,
        "stratified": True,
        "effective_n": effective_n,
    }


def _per_class(correct: np.ndarray, strata: np.ndarray, method: str, min_per_class: int) -> dict:
    results = {}
    for label in np.unique(strata):
        hits = correct[strata == label]
        successes, n = int(hits.sum()), int(hits.shape[0])
        if n >= min_per_class:
            results[_plain_label(label)] = _interval_dict(successes, n, method)
        else:
            results[_plain_label(label)] = {"successes": successes, "n": n, "note": TOO_FEW}
    return results


def audit_precision(
    predicted: np.ndarray,
    answered: np.ndarray,
    strata_labels: np.ndarray | None = None,
    population_counts: Mapping | None = None,
    method: str = "wilson",
    min_per_class: int = 5,
) -> dict:
    """Precision of routed labels from an expert audit, with 95% intervals.

    ``strata_labels`` default to the predicted labels (the sampling strata of
    ``stratified_audit_sample``).  With ``population_counts`` (stratum -> number
    of routed items) the overall estimate is population-weighted, which undoes
    the over-sampling of small classes; without it, it is the plain audited
    proportion.  Classes with fewer than ``min_per_class`` audited items get
    only their counts and ``note: "too few"``.
    """
    predicted = np.asarray(predicted).ravel()
    answered = np.asarray(answered).ravel()
    if predicted.shape != answered.shape:
        raise ValueError("predicted and answered must have the same length")
    strata = predicted if strata_labels is None else np.asarray(strata_labels).ravel()
    if strata.shape != predicted.shape:
        raise ValueError("strata_labels must have one entry per audited item")
    correct = predicted == answered

    if population_counts is None:
        overall = _interval_dict(int(correct.sum()), int(correct.shape[0]), method)
        overall["stratified"] = False
    else:
        overall = _stratified_overall(correct, strata, population_counts, method)
    return {"overall": overall, "per_class": _per_class(correct, strata, method, min_per_class)}


# ---------------------------------------------------------------- threshold choice


def threshold_for_lower_bound(
    confidence: np.ndarray, correct: np.ndarray, target: float, method: str = "wilson"
) -> tuple[float | None, dict]:
    """Lowest threshold t whose items (confidence >= t) have a 95% lower precision bound >= target.

    Candidate thresholds are the observed confidence values.  The lower bound is
    not monotone in t, so every candidate is checked.  When none qualifies the
    threshold is None and the estimate returned is the candidate with the
    highest lower bound, so the analyst sees how far off the target is.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError("target must lie in (0, 1]")
    conf = np.asarray(confidence, dtype=float).ravel()
    hits = np.asarray(correct, dtype=bool).ravel()
    if conf.shape != hits.shape:
        raise ValueError("confidence and correct must have the same length")
    if conf.shape[0] == 0:
        return None, {**_interval_dict(0, 0, method), "threshold": None}

    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    cumulative_successes = np.cumsum(hits[order])
    # Last position of each distinct value in descending order = all items >= that value.
    is_last_of_value = np.append(sorted_conf[1:] != sorted_conf[:-1], True)
    thresholds = sorted_conf[is_last_of_value]
    successes = cumulative_successes[is_last_of_value]
    counts = np.flatnonzero(is_last_of_value) + 1
    lower, _ = proportion_intervals(successes, counts, method=method, confidence=AUDIT_CONFIDENCE)

    qualifying = np.flatnonzero(lower >= target)
    # thresholds are descending, so the last qualifying one is the lowest.
    chosen = qualifying[-1] if qualifying.size else int(np.argmax(lower))
    threshold = float(thresholds[chosen])
    estimate = {**_interval_dict(int(successes[chosen]), int(counts[chosen]), method), "threshold": threshold}
    return (threshold if qualifying.size else None), estimate

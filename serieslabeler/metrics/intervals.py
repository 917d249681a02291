"""Confidence intervals for a binomial proportion (e.g. the precision of routed labels).

Counts may be non-integer: the stratified audit estimate in ``audit.py`` feeds
an *effective* sample size and ``estimate * effective_n`` successes into these
functions, which is how the Wilson and Clopper-Pearson formulas are usually
applied to complex-sample proportions (Korn & Graubard, 1998).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

METHODS = ("wilson", "clopper_pearson")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _check_counts(successes: np.ndarray, n: np.ndarray) -> None:
    if np.any(n < 0) or np.any(successes < 0):
        raise ValueError("successes and n must be non-negative")
    if np.any(successes > n):
        raise ValueError("successes cannot exceed n")


def _wilson_bounds(successes: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    z = stats.norm.ppf(0.5 + confidence / 2.0)
    empty = n == 0
    safe_n = np.where(empty, 1.0, n)
    p_hat = successes / safe_n
    denominator = 1.0 + z**2 / safe_n
    centre = (p_hat + z**2 / (2.0 * safe_n)) / denominator
    half_width = z * np.sqrt(p_hat * (1.0 - p_hat) / safe_n + z**2 / (4.0 * safe_n**2)) / denominator
    # At 0/n and n/n the exact bound is 0 or 1; pin it so rounding cannot leak past it.
    low = np.where(successes == 0, 0.0, np.clip(centre - half_width, 0.0, 1.0))
    high = np.where(successes == n, 1.0, np.clip(centre + half_width, 0.0, 1.0))
    return np.where(empty, 0.0, low), np.where(empty, 1.0, high)


def _clopper_pearson_bounds(
    successes: np.ndarray, n: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    failures = n - successes
    with np.errstate(invalid="ignore"):
        low = stats.beta.ppf(alpha / 2.0, successes, failures + 1.0)
        high = stats.beta.ppf(1.0 - alpha / 2.0, successes + 1.0, failures)
    low = np.where(successes == 0, 0.0, low)
    high = np.where(failures == 0, 1.0, high)
    return low, high


def proportion_intervals(
    successes: np.ndarray | float,
    n: np.ndarray | float,
    method: str = "wilson",
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised interval bounds for many (successes, n) pairs at once.

    Used for threshold scans and coverage simulations; ``n == 0`` gives (0, 1).
    """
    _check_confidence(confidence)
    successes_arr = np.asarray(successes, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    _check_counts(successes_arr, n_arr)
    if method == "wilson":
        return _wilson_bounds(successes_arr, n_arr, confidence)
    if method == "clopper_pearson":
        return _clopper_pearson_bounds(successes_arr, n_arr, confidence)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _scalar_interval(successes: float, n: float, method: str, confidence: float) -> tuple[float, float]:
    low, high = proportion_intervals(successes, n, method=method, confidence=confidence)
    return float(low), float(high)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval; well-behaved near 0 and 1, unlike the Wald interval."""
    return _scalar_interval(successes, n, "wilson", confidence)


def clopper_pearson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (conservative) Clopper-Pearson interval from beta quantiles."""
    return _scalar_interval(successes, n, "clopper_pearson", confidence)


@dataclass(frozen=True)
class ProportionEstimate:
    """A proportion with its interval; ``estimate`` is None when n == 0 (nothing observed)."""

    successes: int | float
    n: int | float
    estimate: float | None
    low: float
    high: float
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def _plain_count(value: float) -> int | float:
    """Python int for whole counts (JSON-friendly), float for effective counts."""
    value = float(value)
    return int(value) if value.is_integer() else value


def estimate_proportion(
    successes: float, n: float, method: str = "wilson", confidence: float = 0.95
) -> ProportionEstimate:
    low, high = _scalar_interval(successes, n, method, confidence)
    estimate = float(successes) / float(n) if n > 0 else None
    return ProportionEstimate(
        successes=_plain_count(successes),
        n=_plain_count(n),
        estimate=estimate,
        low=low,
        high=high,
        method=method,
    )

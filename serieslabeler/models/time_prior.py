"""When each stage tends to occur, learned from the labeled series, as a prior for proposals.

Why: a photo's time since its subject's first photo (or its accumulated degree-days) says much
about its stage when subjects progress alike (fruit ripening in one room; decomposition
measured in degree-days) and nothing when they do not (onsets or rates that vary from subject
to subject). :class:`StageTimePrior` estimates ``p(stage | t)`` by a Gaussian kernel over the
labeled images' times; a proposal multiplies the model's stage probabilities by
``(p(stage | t) / p(stage)) ** weight`` (Bayes' rule for two pieces of evidence taken as
independent given the stage) before the monotone decoding.

The weight is not a setting to tune per collection: :func:`fit_time_prior` chooses it by
leaving each labeled subject out, scoring the monotone posteriors of its series (built from
out-of-fold model probabilities and a prior fitted without the subject) by the likelihood of
their true stages. Weight 0, no prior, wins ties, so the prior acts only where the labeled
series say it helps.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from serieslabeler.models.monotone import monotone_posteriors

WEIGHTS = (0.0, 0.5, 1.0, 2.0)
BANDWIDTH = 0.1  # the kernel's width, as a share of the labeled times' span
GRID = 512  # times the density is evaluated at, across the labeled times
MIN_SPAN = 1.0  # a span below one time unit (all labels on one day) counts as one


class StageTimePrior(BaseEstimator):
    """``p(stage | t) / p(stage)`` raised to ``weight``, from labeled (time, stage) pairs.

    ``n_stages``: stages are integers ``0 .. n_stages - 1`` (their place in the order);
    ``bandwidth``: the kernel's width as a share of the labeled times' span; ``weight``: the
    prior's exponent (0: every ratio is 1). Each stage gets one pseudo-count spread over time,
    so a stage never labeled keeps a small probability instead of none.

    The density is evaluated on a grid of ``GRID`` times across the labeled ones (the labels
    binned to it), so fitting and asking cost the same for a million labels as for a hundred;
    a time before the first labeled time or after the last is read as that time.
    """

    def __init__(self, n_stages: int, bandwidth: float = BANDWIDTH, weight: float = 1.0):
        self.n_stages = n_stages
        self.bandwidth = bandwidth
        self.weight = weight

    def fit(self, times, stages) -> "StageTimePrior":
        times, stages = np.asarray(times, dtype=float), np.asarray(stages, dtype=np.intp)
        counts = np.bincount(stages, minlength=self.n_stages)
        self.shares_ = (counts + 1.0) / (len(stages) + self.n_stages)
        self.grid_ = np.linspace(times.min(), times.max(), GRID) if len(times) else np.zeros(0)
        self.posterior_ = np.full((len(self.grid_), self.n_stages), 1.0 / self.n_stages)
        if len(times):
            self.posterior_ = self._grid_posterior(times, stages)
        return self

    def _grid_posterior(self, times: np.ndarray, stages: np.ndarray) -> np.ndarray:
        span = float(self.grid_[-1] - self.grid_[0])
        width = self.bandwidth * max(span, MIN_SPAN)
        slot = np.rint((times - self.grid_[0]) / max(span, 1e-12) * (GRID - 1)).astype(np.intp)
        binned = np.bincount(slot * self.n_stages + stages, minlength=GRID * self.n_stages).reshape(GRID, self.n_stages)
        kernel = np.exp(-0.5 * (np.arange(1 - GRID, GRID) * span / (GRID - 1) / width) ** 2)
        density = np.column_stack([np.convolve(binned[:, s], kernel, mode="valid") for s in range(self.n_stages)]) + 1.0 / self.n_stages
        return density / density.sum(axis=1, keepdims=True)

    def ratio(self, times) -> np.ndarray:
        """``(len(times), n_stages)``: how much more likely each stage is at each time than
        overall (1 throughout for a time that is missing)."""
        times = np.asarray(times, dtype=float)
        ratio = np.ones((len(times), self.n_stages))
        known = np.isfinite(times)
        if self.weight == 0 or len(self.grid_) == 0 or not known.any():
            return ratio
        posterior = np.column_stack([np.interp(times[known], self.grid_, self.posterior_[:, s]) for s in range(self.n_stages)])
        ratio[known] = (posterior / self.shares_) ** self.weight
        return ratio


def no_time_prior(n_stages: int) -> StageTimePrior:
    """The prior that changes nothing (every ratio 1): for labels of fewer than two subjects."""
    return StageTimePrior(n_stages, weight=0.0).fit([], [])


def held_out_likelihoods(proba, stages, times, series, subjects, n_stages: int, bandwidth: float = BANDWIDTH,
                         weights=WEIGHTS) -> np.ndarray:
    """Per candidate weight, the log-likelihood of the labeled images' true stages under the
    monotone posteriors of their series, each subject's prior fitted on the other subjects.

    ``proba``: out-of-fold stage probabilities of the labeled images (columns in stage order);
    ``stages``, ``times``, ``series``, ``subjects``: theirs, one per row."""
    proba, stages, times = np.asarray(proba, dtype=float), np.asarray(stages, dtype=np.intp), np.asarray(times, dtype=float)
    series, subjects = np.asarray(series), np.asarray(subjects)
    totals = np.zeros(len(weights))
    for subject in np.unique(subjects):
        out = subjects == subject
        if out.all():
            continue
        prior = StageTimePrior(n_stages, bandwidth).fit(times[~out], stages[~out])
        for key in np.unique(series[out]):
            rows = np.flatnonzero(out & (series == key))
            rows = rows[np.argsort(times[rows], kind="stable")]
            ratio = prior.ratio(times[rows])
            for j, weight in enumerate(weights):
                posteriors = monotone_posteriors(proba[rows] * ratio ** weight)
                totals[j] += np.log(np.clip(posteriors[np.arange(len(rows)), stages[rows]], 1e-6, None)).sum()
    return totals


def fit_time_prior(proba, stages, times, series, subjects, n_stages: int, bandwidth: float = BANDWIDTH,
                   weights=WEIGHTS) -> StageTimePrior:
    """The prior on all labels, its weight the candidate whose held-out likelihood is highest
    (:func:`held_out_likelihoods`; the first, 0, on ties and with under two subjects)."""
    totals = held_out_likelihoods(proba, stages, times, series, subjects, n_stages, bandwidth, weights)
    weight = float(weights[int(np.argmax(totals))])
    return StageTimePrior(n_stages, bandwidth, weight).fit(times, stages)

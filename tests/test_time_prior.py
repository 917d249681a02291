"""The stage-timing prior: when each stage occurs, learned from labeled series, weighted only as
far as held-out subjects say it helps, and used by the library's series proposals."""
from __future__ import annotations

import numpy as np
import pytest

from serieslabeler.models.time_prior import WEIGHTS, StageTimePrior, fit_time_prior, held_out_likelihoods
from serieslabeler.store import Workspace
from tests.test_series import label_six_series_and_train

N_STAGES = 4
DAYS = 20


def test_the_ratio_favours_the_stage_labeled_at_that_time():
    prior = StageTimePrior(2, bandwidth=0.1).fit([0, 1, 2, 3, 4, 10, 11, 12, 13, 14], [0] * 5 + [1] * 5)
    ratio = prior.ratio([1.0, 12.0, 7.0])
    assert ratio[0, 0] > 1.5 > 0.5 > ratio[0, 1]
    assert ratio[1, 1] > 1.5 > 0.5 > ratio[1, 0]
    assert ratio[2] == pytest.approx([1.0, 1.0], abs=0.2)  # halfway: no stage favoured
    assert np.allclose(prior.shares_, [0.5, 0.5])


def test_the_gridded_density_matches_the_kernel_sum_it_stands_for():
    rng = np.random.default_rng(0)
    times, stages = rng.uniform(0, 60, 400), rng.integers(0, 3, 400)
    asked = rng.uniform(0, 60, 50)
    prior = StageTimePrior(3, bandwidth=0.1).fit(times, stages)
    width = 0.1 * np.ptp(times)
    kernel = np.exp(-0.5 * ((asked[:, None] - times[None, :]) / width) ** 2)
    density = kernel @ np.eye(3)[stages] + 1 / 3
    exact = density / density.sum(axis=1, keepdims=True) / prior.shares_
    assert np.allclose(prior.ratio(asked), exact, rtol=0.01)


def test_weight_zero_no_labels_and_missing_times_leave_the_evidence_as_it_is():
    labeled = ([0, 1, 2, 10, 11, 12], [0, 0, 0, 1, 1, 1])
    assert np.array_equal(StageTimePrior(2, weight=0.0).fit(*labeled).ratio([0.0, 11.0]), np.ones((2, 2)))
    assert np.array_equal(StageTimePrior(2).fit([], []).ratio([0.0, 11.0]), np.ones((2, 2)))
    ratio = StageTimePrior(2).fit(*labeled).ratio([np.nan, 0.0])
    assert np.array_equal(ratio[0], [1.0, 1.0]) and ratio[1, 0] > ratio[1, 1]


def test_a_stronger_weight_sharpens_the_ratio():
    labeled = ([0, 1, 2, 10, 11, 12], [0, 0, 0, 1, 1, 1])
    one, two = (StageTimePrior(2, weight=w).fit(*labeled).ratio([1.0])[0] for w in (1.0, 2.0))
    assert np.allclose(two, one ** 2)


def series_collection(onsets, informative: float, seed: int):
    """Subjects photographed daily; subject ``k``'s stage ``s`` starts on day ``onsets[k] * s``.
    The model's out-of-fold probabilities put ``informative`` on the true stage, noise elsewhere."""
    rng = np.random.default_rng(seed)
    times, stages, subjects, proba = [], [], [], []
    for subject, length in enumerate(onsets):
        days = np.arange(DAYS, dtype=float)
        stage = np.minimum(days // length, N_STAGES - 1).astype(int)
        noise = rng.dirichlet(np.ones(N_STAGES), size=DAYS)
        proba.append(informative * np.eye(N_STAGES)[stage] + (1 - informative) * noise)
        times.append(days), stages.append(stage), subjects.append(np.full(DAYS, subject))
    return np.vstack(proba), np.concatenate(stages), np.concatenate(times), np.concatenate(subjects)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_weight_is_kept_where_subjects_progress_alike_and_dropped_where_they_do_not(seed):
    proba, stages, times, subjects = series_collection([5] * 8, informative=0.15, seed=seed)
    alike = fit_time_prior(proba, stages, times, subjects, subjects, N_STAGES)
    assert alike.weight > 0
    rng = np.random.default_rng(seed)
    proba, stages, times, subjects = series_collection(rng.choice([1, 2, 6, 12], size=8), informative=0.6, seed=seed)
    scores = held_out_likelihoods(proba, stages, times, subjects, subjects, N_STAGES)
    assert np.argmax(scores) == 0 and np.all(np.diff(scores) < 0)  # each step of weight costs held-out likelihood
    assert fit_time_prior(proba, stages, times, subjects, subjects, N_STAGES).weight == 0.0


def test_one_subject_gives_no_prior():
    proba, stages, times, subjects = series_collection([5], informative=0.2, seed=0)
    assert fit_time_prior(proba, stages, times, subjects, subjects, N_STAGES).weight == 0.0


def test_proposals_say_the_weight_they_used_and_use_none_without_the_models_out_of_fold_file(bananas_embedded):
    from serieslabeler.loop import propose_series
    from serieslabeler.models.evaluation import oof_path
    from serieslabeler.models.files import load_model_record

    with Workspace.open(bananas_embedded) as workspace:
        found, model = label_six_series_and_train(workspace)
        target = found[8]
        proposal = propose_series(workspace, target).to_dict()
        assert proposal["time_prior_weight"] in WEIGHTS
        record = load_model_record(workspace, model.id)
        oof_path(workspace, record.id, "labels", int(record.params.get("seed", 0))).unlink()
        assert propose_series(workspace, target).to_dict()["time_prior_weight"] == 0.0

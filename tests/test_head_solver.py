"""The torch L-BFGS fit of the head's logistic regression (used on a GPU for large label sets)
reaches scikit-learn's solution: same objective, same predict_proba."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from serieslabeler.models.head import fit_logistic_torch


@pytest.mark.parametrize("n_classes", [2, 4])
def test_torch_fit_matches_scikit_learn(n_classes):
    rng = np.random.default_rng(0)
    X = StandardScaler().fit_transform(rng.normal(size=(1500, 16))).astype(np.float32)
    score = X[:, :3].sum(axis=1) + 0.5 * rng.normal(size=1500)
    codes = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    y = np.array(list("URVO"))[codes]
    weights = rng.uniform(0.3, 1.0, 1500)
    reference = LogisticRegression(C=0.1, max_iter=2000).fit(X, y, sample_weight=weights)
    fitted = fit_logistic_torch(X, y, np.unique(y), weights, 0.1, 2000)
    assert fitted.coef_.shape == reference.coef_.shape
    assert list(fitted.classes_) == list(reference.classes_)
    np.testing.assert_allclose(fitted.predict_proba(X), reference.predict_proba(X), atol=5e-3)
    assert (fitted.predict(X) == reference.predict(X)).mean() > 0.99
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(X[:5]), fitted.predict_proba(X[:5]))

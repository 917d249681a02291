"""models.head"""
from __future__ import annotations

import importlib.util
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)
from threadpoolctl import threadpool_limits

from serieslabeler.errors import PipelineError
from serieslabeler.models.base import CV_FOLDS
from serieslabeler.models.splits import grouped_folds

# Images from which the logistic regression is fitted on the GPU, when there is one.
LARGE_FIT = 20_000


def cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def fit_logistic_torch(X: np.ndarray, y: np.ndarray, classes: np.ndarray, sample_weight, C: float, max_iter: int, tol: float = 1e-4):
    """scikit-learn's L2 logistic regression, fitted by full-batch L-BFGS in torch.

    It minimises the objective scikit-learn's ``lbfgs`` does (the mean of the weighted
    cross-entropy plus ``||W||^2 / (2 C sum(w))``, the intercept unpenalised; a single logit for
    two classes, a softmax for more) and returns a fitted ``LogisticRegression`` holding the
    result, so prediction (``predict_proba``) and the saved file are the same as before.
    """
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # on a CPU it is slower than scikit-learn's lbfgs
    features = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device)
    codes = torch.from_numpy(np.searchsorted(classes, y)).to(device)
    weights = torch.as_tensor(np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight), dtype=torch.float32, device=device)
    outputs = 1 if len(classes) == 2 else len(classes)
    coef = torch.zeros((X.shape[1], outputs), device=device, requires_grad=True)
    intercept = torch.zeros(outputs, device=device, requires_grad=True)
    total = weights.sum()

    def objective():
        logits = features @ coef + intercept
        if outputs == 1:
            losses = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], codes.float(), reduction="none")
        else:
            losses = torch.nn.functional.cross_entropy(logits, codes, reduction="none")
        return (weights * losses).sum() / total + (coef * coef).sum() / (2 * C * total)

    optimizer = torch.optim.LBFGS([coef, intercept], lr=1, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-9, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    optimizer.step(closure)
    model = LogisticRegression(C=C, max_iter=max_iter)
    model.coef_ = coef.detach().cpu().numpy().T.astype(np.float64)
    model.intercept_ = intercept.detach().cpu().numpy().astype(np.float64)
    model.classes_ = np.asarray(classes)
    model.n_features_in_ = X.shape[1]
    model.n_iter_ = np.array([optimizer.state[coef]["n_iter"]], dtype=np.int32)
    return model


# --- the head classifier on arrays -----------------------------------------------------------
class HeadClassifier(ClassifierMixin, BaseEstimator):
    """A classifier on feature vectors: standardize, then logistic regression or a small MLP.

    A scikit-learn estimator (``get_params``, ``set_params``, ``clone``; inputs checked by
    ``validate_data``). Text labels (str or object arrays) are read as strings, so ``classes_``
    are the label names as a string array.
    ``sample_weight`` (label confidence) weights each image's loss. With a single class in
    the training labels it predicts that class with probability 1. Fitting and predicting use
    one BLAS thread: the solver's many small matrix products gain nothing from more, and on a
    busy machine spinning BLAS threads made a 160-image fit take seconds instead of 50 ms.
    From ``LARGE_FIT`` images on, with a GPU, the logistic regression is fitted there
    (:func:`fit_logistic_torch`, the same objective); on a CPU, scikit-learn's lbfgs converges in
    a few dozen iterations on standardized features and more threads did not help on 2 busy cores.
    """

    KINDS = ("logreg", "mlp")

    def __init__(self, kind: str = "logreg", C: float = 0.1, hidden: int = 128, max_iter: int = 2000, random_state: int | None = 0):
        self.kind = kind
        self.C = C
        self.hidden = hidden
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None) -> "HeadClassifier":
        if self.kind not in self.KINDS:
            raise PipelineError(f"unknown head classifier '{self.kind}'; choose one of {', '.join(self.KINDS)}")
        if y is not None and len(np.asarray(y)) == 0:
            raise PipelineError("no labeled images to train on; label some clusters or images first")
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        y = y.astype(str) if y.dtype.kind in "OUS" else y
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        self.classes_ = np.unique(y)
        self.scaler_ = StandardScaler().fit(X)
        if len(self.classes_) == 1:
            self.model_ = None
            self.n_iter_ = 0
            return self
        if self.kind == "logreg" and len(y) >= LARGE_FIT and cuda_available():
            self.model_ = fit_logistic_torch(self.scaler_.transform(X), y, self.classes_, sample_weight, self.C, self.max_iter)
            return self
        self.model_ = self._make_model()
        with threadpool_limits(1):
            self.model_.fit(self.scaler_.transform(X), y, sample_weight=sample_weight)
        self.n_iter_ = int(np.max(self.model_.n_iter_))
        return self

    def _make_model(self):
        if self.kind == "mlp":
            return MLPClassifier(
                hidden_layer_sizes=(self.hidden,), alpha=1.0 / self.C, max_iter=self.max_iter, random_state=self.random_state
            )
        return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        if self.model_ is None:
            return np.ones((len(X), 1))
        with threadpool_limits(1):
            return self.model_.predict_proba(self.scaler_.transform(X))

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class LinearSoftmax:
    """The linear head of a fine-tuned network, applied to its penultimate features (numpy)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, classes):
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X) -> np.ndarray:
        logits = np.asarray(X, dtype=np.float32) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def align_proba(proba: np.ndarray, fitted_classes, classes) -> np.ndarray:
    """Columns of ``proba`` (in ``fitted_classes`` order) placed into ``classes`` order (0 for absent)."""
    out = np.zeros((len(proba), len(classes)))
    column = {c: i for i, c in enumerate(classes)}
    for j, c in enumerate(fitted_classes):
        out[:, column[c]] = proba[:, j]
    return out


def grouped_oof_proba(
    X, y, groups, sample_weight=None, make_classifier: Callable[[], HeadClassifier] = HeadClassifier, n_splits: int = CV_FOLDS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold class probabilities (folds grouped by subject) and the class order.

    Each image is scored by a classifier fitted on the other folds' subjects only.
    """
    y = np.asarray([str(v) for v in y])
    classes = np.unique(y)
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    proba = np.zeros((len(y), len(classes)))
    for split in grouped_folds(groups, n_splits, seed):
        model = make_classifier().fit(X[split.train], y[split.train], sample_weight=weights[split.train])
        proba[split.test] = align_proba(model.predict_proba(X[split.test]), model.classes_, classes)
    return proba, classes

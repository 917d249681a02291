"""Correcting a labeled set for how it was chosen: importance weights for covariate shift.

Labels made through clusters are the typical images (near a cluster's centre, the ones the
expert could name at a glance); the images that get routed are what is left, the harder ones.
A precision measured on the labels is then a precision on easy images. If the chance that a
prediction is right depends on the image only through a few covariates (here: the model's
confidence, and how far the image lies from every labeled image of another subject), the
pool's precision is the labeled set's precision with each labeled image weighted by
``p_pool(x) / p_labeled(x)`` (Shimodaira, 2000). The density ratio is estimated with a
probabilistic classifier that tells pool from labeled images on those covariates
(``P(pool | x) / P(labeled | x)`` times ``n_labeled / n_pool``), which needs no density
estimates and no binning. Weights are clipped (a handful of labeled images would otherwise
carry the whole estimate) and the effective sample size ``(sum w)^2 / sum w^2`` says how many
labeled images the weighted estimate is worth.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

DISTANCE_CHUNK = 512
WEIGHT_CLIP_QUANTILE = 0.98


def nearest_other_subject_distance(X_query, query_subjects, X_reference, reference_subjects) -> np.ndarray:
    """Each query row's Euclidean distance to the nearest reference row of a *different* subject.

    A subject's own images are near-duplicates of each other; the distance to another subject's
    labeled images says how typical an image is of what the labels cover. ``inf`` when every
    reference row belongs to the query's subject.
    """
    X_query = np.asarray(X_query, dtype=np.float32)
    X_reference = np.asarray(X_reference, dtype=np.float32)
    query_subjects, reference_subjects = np.asarray(query_subjects), np.asarray(reference_subjects)
    reference_norms = (X_reference**2).sum(axis=1)
    out = np.empty(len(X_query))
    for start in range(0, len(X_query), DISTANCE_CHUNK):
        part = slice(start, start + DISTANCE_CHUNK)
        rows = X_query[part]
        squared = (rows**2).sum(axis=1)[:, None] - 2.0 * rows @ X_reference.T + reference_norms[None, :]
        squared[query_subjects[part][:, None] == reference_subjects[None, :]] = np.inf
        out[part] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    return out


def importance_weights(labeled_covariates, pool_covariates, clip_quantile: float = WEIGHT_CLIP_QUANTILE, random_state: int | None = 0) -> np.ndarray:
    """Weights (mean 1) that make the labeled rows represent the pool rows (module docstring).

    Covariates are standardized on both sets together; a logistic regression separates pool
    from labeled rows; infinite values (no other subject to compare with) take the largest
    finite value of their column.
    """
    labeled = np.asarray(labeled_covariates, dtype=float).reshape(len(labeled_covariates), -1)
    pool = np.asarray(pool_covariates, dtype=float).reshape(len(pool_covariates), -1)
    if len(labeled) == 0 or len(pool) == 0:
        return np.ones(len(labeled))
    both = _finite_columns(np.vstack([labeled, pool]))
    scaled = StandardScaler().fit_transform(both)
    is_pool = np.r_[np.zeros(len(labeled)), np.ones(len(pool))]
    model = LogisticRegression(C=1.0, random_state=random_state).fit(scaled, is_pool)
    p_pool = np.clip(model.predict_proba(scaled[: len(labeled)])[:, 1], 1e-6, 1 - 1e-6)
    weights = p_pool / (1.0 - p_pool) * (len(labeled) / len(pool))
    weights = np.minimum(weights, np.quantile(weights, clip_quantile))
    return weights / weights.mean()


def _finite_columns(values: np.ndarray) -> np.ndarray:
    """Replace non-finite entries by the largest finite value of their column (0 if none)."""
    values = values.copy()
    for j in range(values.shape[1]):
        column = values[:, j]
        finite = np.isfinite(column)
        column[~finite] = column[finite].max() if finite.any() else 0.0
    return values


def unit_rows(X) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero): Euclidean distance then orders as cosine."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def effective_sample_size(weights) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 for no weights)."""
    weights = np.asarray(weights, dtype=float)
    total = float((weights**2).sum())
    return float(weights.sum() ** 2 / total) if total > 0 else 0.0


def clustered_effective_sizes(correct, weights, groups) -> np.ndarray:
    """For each prefix ``0..k`` of the rows (as given: e.g. by falling confidence), the effective
    number of images the weighted share right among them is worth when the rows come in groups
    (subjects) whose errors go together.

    A model that misreads one subject misreads many of its images, so a precision measured on a
    few subjects is worth fewer than its images. The variance of the weighted ratio
    ``p = sum w c / sum w`` is estimated from the groups (the cluster-robust, linearized variance
    of survey statistics: ``G / (G - 1) * sum_g (sum_{i in g} w_i (c_i - p))^2 / (sum w)^2``) and
    the effective size is ``p (1 - p) / var``, never more than Kish's size of the same weights.
    Where no group differs (every prefix image right, or all wrong) Kish's size stands; a prefix
    from one group is worth at most one image.
    """
    correct = np.asarray(correct, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if len(correct) == 0:
        return np.zeros(0)
    _, first_rows, groups = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    a, b = weights * correct, weights
    # each row's group sums before it (a stable sort by group keeps the given order inside a group)
    by_group = np.argsort(groups, kind="stable")
    before_a, before_b = np.empty(len(a)), np.empty(len(b))
    for values, before in ((a, before_a), (b, before_b)):
        running = np.cumsum(values[by_group])
        starts = np.r_[0, np.flatnonzero(np.diff(groups[by_group])) + 1]
        offsets = np.repeat(running[starts] - values[by_group][starts], np.diff(np.r_[starts, len(a)]))
        before[by_group] = running - offsets - values[by_group]
    # sum_g A_g^2, sum_g A_g B_g, sum_g B_g^2 over each prefix, grown one row at a time
    sum_aa = np.cumsum(2 * before_a * a + a * a)
    sum_ab = np.cumsum(before_a * b + before_b * a + a * b)
    sum_bb = np.cumsum(2 * before_b * b + b * b)
    first = np.zeros(len(a), dtype=bool)
    first[first_rows] = True
    count = np.cumsum(first)  # groups seen in each prefix
    mass, squares = np.cumsum(b), np.cumsum(b * b)
    p = np.divide(np.cumsum(a), mass, out=np.zeros(len(a)), where=mass > 0)
    kish = np.divide(mass**2, squares, out=np.zeros(len(a)), where=squares > 0)
    spread = np.maximum(sum_aa - 2 * p * sum_ab + p * p * sum_bb, 0.0)
    variance = np.divide(count * spread, np.maximum(count - 1, 1) * mass**2, out=np.zeros(len(a)), where=mass > 0)
    varied = (variance > 0) & (p * (1 - p) > 1e-12)  # every image right (or wrong): rounding leaves a trace of variance
    clustered = np.divide(p * (1 - p), variance, out=kish.copy(), where=varied)
    sizes = np.minimum(kish, clustered)
    return np.where(count == 1, np.minimum(sizes, 1.0), sizes)

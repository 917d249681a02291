"""Evaluation splits grouped by subject.

Images of one subject are near-duplicates (the same banana on consecutive days, the same
donor on consecutive weeks); a split that puts some of a subject's images in training and
others in the test set measures memory, not generalization. Every split here keeps each
subject wholly on one side. A random image split exists only on explicit request and is
marked ``optimistic`` wherever it is reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

from serieslabeler.errors import PipelineError

GROUPED = "subject-grouped"


OPTIMISTIC = "random (optimistic: a subject's images fall on both sides)"


@dataclass(frozen=True)
class Split:
    """Row indices of a training and a test part, and how they were made."""

    train: np.ndarray
    test: np.ndarray
    kind: str = GROUPED

    @property
    def optimistic(self) -> bool:
        return self.kind != GROUPED

    def describe(self, groups=None) -> dict:
        out = {"kind": self.kind, "optimistic": self.optimistic, "train": len(self.train), "test": len(self.test)}
        if groups is not None:
            groups = np.asarray(groups)
            out["test_subjects"] = sorted(map(str, np.unique(groups[self.test])))
        return out


def _check_groups(groups, minimum: int) -> np.ndarray:
    groups = np.asarray(groups)
    count = len(np.unique(groups))
    if count < minimum:
        raise PipelineError(
            f"a subject-grouped split needs at least {minimum} subjects; these images have {count}. "
            "Label images of more subjects first"
        )
    return groups


def grouped_split(groups, test_size: float = 0.25, seed: int = 0) -> Split:
    """One train/test split by subject (scikit-learn's ``GroupShuffleSplit``).

    ``test_size`` is the share of *subjects* held out; at least one subject lands on each side.
    """

    groups = _check_groups(groups, 2)
    n_groups = len(np.unique(groups))
    n_test = min(max(1, int(round(test_size * n_groups))), n_groups - 1)
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return Split(np.sort(train), np.sort(test))


def grouped_folds(groups, n_splits: int = 5, seed: int | None = None) -> list[Split]:
    """K folds by subject (``GroupKFold``; shuffled subject order when ``seed`` is given).

    Fewer subjects than ``n_splits`` gives one fold per subject (leave-one-subject-out).
    """

    groups = _check_groups(groups, 2)
    n_splits = min(n_splits, len(np.unique(groups)))
    if seed is None:
        folds = GroupKFold(n_splits=n_splits)
    else:
        folds = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [Split(np.sort(tr), np.sort(te)) for tr, te in folds.split(np.zeros(len(groups)), groups=groups)]


def random_split(n: int, test_size: float = 0.25, seed: int = 0) -> Split:
    """A random image split. Only on explicit request: its scores are optimistic."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = min(max(1, int(round(test_size * n))), n - 1)
    return Split(np.sort(order[n_test:]), np.sort(order[:n_test]), kind=OPTIMISTIC)


def make_split(groups, test_size: float = 0.25, seed: int = 0, random: bool = False) -> Split:
    """A subject-grouped split, or (``random=True``) an optimistic random one."""
    if random:
        return random_split(len(groups), test_size, seed)
    return grouped_split(groups, test_size, seed)

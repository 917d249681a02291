"""Classification quality: per-class precision, recall, F1 and support, top-1 and top-3
accuracy, macro and weighted averages, and the confusion matrix.

The averages follow the table layout used in the Plud paper: *AP* (average precision),
*AR* (average recall) and *F* (average F1) over classes, either unweighted (``macro``) or
weighted by each class's support (``weighted``). Averages run over the classes that occur in
the truth (support > 0); a class that is never predicted has precision 0 (not undefined),
so a model cannot raise its AP by ignoring a hard class.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Averages:
    AP: float
    AR: float
    F: float


@dataclass(frozen=True)
class ClassificationReport:
    """All the figures for one set of predictions against the truth."""

    classes: list[str]
    per_class: list[ClassScores]
    macro: Averages
    weighted: Averages
    top1: float
    top3: float | None
    confusion: list[list[int]]
    n: int

    @property
    def macro_f1(self) -> float:
        return self.macro.F

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClassificationReport":
        return cls(
            data["classes"], [ClassScores(**s) for s in data["per_class"]], Averages(**data["macro"]),
            Averages(**data["weighted"]), data["top1"], data["top3"], data["confusion"], data["n"],
        )

    def format(self) -> str:
        """A readable table: one row per class, then the averages and accuracies."""
        width = max([len(c) for c in self.classes] + [8])
        lines = [f"{'class':<{width}}  precision  recall     f1  support"]
        for s in self.per_class:
            lines.append(f"{s.label:<{width}}  {s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.support:7d}")
        for name, avg in (("macro", self.macro), ("weighted", self.weighted)):
            lines.append(f"{name:<{width}}  {avg.AP:9.3f}  {avg.AR:6.3f}  {avg.F:5.3f}  {self.n:7d}")
        top3 = "n/a" if self.top3 is None else f"{self.top3:.3f}"
        lines.append(f"top-1 accuracy {self.top1:.3f}, top-3 accuracy {top3}, n = {self.n}")
        lines.append("confusion (rows = truth, columns = predicted): " + " ".join(self.classes))
        for label, row in zip(self.classes, self.confusion):
            lines.append(f"  {label:<{width}} " + " ".join(f"{v:4d}" for v in row))
        return "\n".join(lines)


def confusion_matrix(y_true, y_pred, classes) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class, in the order of ``classes``.

    Labels outside ``classes`` are ignored (they have no row or column)."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    return matrix


def top_k_accuracy(y_true, proba: np.ndarray, proba_classes, k: int) -> float:
    """Share of rows whose true class is among the ``k`` most probable columns."""
    proba = np.asarray(proba, dtype=float)
    if len(proba) == 0:
        return float("nan")
    k = min(k, proba.shape[1])
    column = {c: i for i, c in enumerate(proba_classes)}
    true_column = np.array([column.get(t, -1) for t in y_true])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == true_column[:, None], axis=1)))


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(len(numerator), dtype=float)
    nonzero = denominator > 0
    out[nonzero] = numerator[nonzero] / denominator[nonzero]
    return out


def classification_report(y_true, y_pred, classes=None, proba: np.ndarray | None = None, proba_classes=None) -> ClassificationReport:
    """Every figure for predictions ``y_pred`` (and, if given, probabilities for top-k).

    ``classes`` fixes the row order (default: sorted union of truth and predictions);
    ``proba_classes`` names the columns of ``proba`` (default: ``classes``).
    """
    y_true = [str(v) for v in y_true]
    y_pred = [str(v) for v in y_pred]
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    classes = sorted(set(y_true) | set(y_pred)) if classes is None else [str(c) for c in classes]
    matrix = confusion_matrix(y_true, y_pred, classes)
    true_positive = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(true_positive, predicted.astype(float))
    recall = _safe_divide(true_positive, support.astype(float))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    present = support > 0
    weights = support[present] / support[present].sum() if present.any() else np.zeros(0)

    def average(values: np.ndarray, w=None) -> float:
        return float(np.average(values[present], weights=w)) if present.any() else float("nan")

    n = len(y_true)
    top1 = float(np.mean(np.array(y_true) == np.array(y_pred))) if n else float("nan")
    top3 = None
    if proba is not None:
        top3 = top_k_accuracy(y_true, proba, classes if proba_classes is None else [str(c) for c in proba_classes], 3)
    return ClassificationReport(
        classes=classes,
        per_class=[
            ClassScores(c, float(p), float(r), float(f), int(s))
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)
        ],
        macro=Averages(average(precision), average(recall), average(f1)),
        weighted=Averages(average(precision, weights), average(recall, weights), average(f1, weights)),
        top1=top1,
        top3=top3,
        confusion=matrix.tolist(),
        n=n,
    )


def macro_f1(y_true, y_pred, classes=None) -> float:
    """Unweighted mean of per-class F1 over the classes present in the truth."""
    return classification_report(y_true, y_pred, classes).macro.F

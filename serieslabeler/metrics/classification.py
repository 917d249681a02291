"""Classification quality: per-class precision, recall, F1 and support, top-1 and top-3
accuracy, macro and weighted averages, and the confusion matrix.

The averages follow the table layout used in the Plud paper: *AP* (average precision),
*AR* (average recall) and *F* (average F1) over classes, either unweighted (``macro``) or
weighted by each class's support (``weighted``). Averages run over the classes that occur in
the truth (support > 0); a class that is never predicted has precision 0 (not undefined),
so a model cannot raise its AP by ignoring a hard class. The confusion matrix, per-class
scores and accuracy are scikit-learn's (``sklearn.metrics``); top-k accuracy is computed here
because scikit-learn's rejects a true class that has no probability column (here: a miss)
and needs a 1-D score for two classes.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from sklearn import metrics


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


def in_stage_order(report: dict, order) -> dict:
    """A report (as a dict) with its classes, per-class rows and confusion matrix in stage order,
    the classes outside ``order`` after the stages: then neighbouring stages, the ones an ordered
    collection confuses, sit next to the diagonal. No ``order``: the report as it is."""
    classes = [str(c) for c in report["classes"]]
    staged = [c for c in order or [] if c in classes]
    chosen = staged + [c for c in classes if c not in staged]
    index = [classes.index(c) for c in chosen]
    per_class = {str(row["label"]): row for row in report["per_class"]}
    return {**report, "classes": chosen, "per_class": [per_class[c] for c in chosen if c in per_class],
            "confusion": [[report["confusion"][i][j] for j in index] for i in index]}


def confusion_matrix(y_true, y_pred, classes) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class, in the order of ``classes``.

    Labels outside ``classes`` are ignored (they have no row or column)."""
    y_true, y_pred = _within(y_true, y_pred, classes)
    if len(y_true) == 0:
        return np.zeros((len(classes), len(classes)), dtype=np.int64)
    with warnings.catch_warnings():  # one class is a valid report (scikit-learn warns it might be a mistake)
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        return metrics.confusion_matrix(y_true, y_pred, labels=list(classes)).astype(np.int64)


def _within(y_true, y_pred, classes) -> tuple[np.ndarray, np.ndarray]:
    """The (truth, prediction) pairs whose two labels are both among ``classes``."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    known = set(classes)
    keep = np.array([t in known and p in known for t, p in zip(y_true, y_pred)], dtype=bool)
    return y_true[keep].astype(str), y_pred[keep].astype(str)


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
    precision, recall, f1, support = _per_class_scores(y_true, y_pred, classes)
    present = support > 0
    weights = support[present] / support[present].sum() if present.any() else np.zeros(0)

    def average(values: np.ndarray, w=None) -> float:
        return float(np.average(values[present], weights=w)) if present.any() else float("nan")

    n = len(y_true)
    top1 = float(metrics.accuracy_score(y_true, y_pred)) if n else float("nan")
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


def _per_class_scores(y_true, y_pred, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's precision, recall, F1 and support per class (0 where undefined)."""
    within_true, within_pred = _within(y_true, y_pred, classes)
    if len(within_true) == 0:
        zeros = np.zeros(len(classes))
        return zeros, zeros, zeros, zeros.astype(np.int64)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        within_true, within_pred, labels=list(classes), average=None, zero_division=0
    )
    return precision, recall, f1, support.astype(np.int64)


def macro_f1(y_true, y_pred, classes=None) -> float:
    """Unweighted mean of per-class F1 over the classes present in the truth."""
    return classification_report(y_true, y_pred, classes).macro.F

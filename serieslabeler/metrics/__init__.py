"""Classification and clustering scores: pure functions of arrays, no workspace."""

from .classification import (
    Averages,
    ClassificationReport,
    ClassScores,
    classification_report,
    confusion_matrix,
    macro_f1,
    top_k_accuracy,
)
from .clustering import (
    SILHOUETTE_SAMPLE,
    ClusterPurity,
    adjusted_rand,
    cluster_purity,
    contingency,
    hungarian_accuracy,
    nmi,
    purity,
    score_against_truth,
    silhouette,
)

__all__ = [
    "ClassScores",
    "Averages",
    "ClassificationReport",
    "confusion_matrix",
    "top_k_accuracy",
    "classification_report",
    "macro_f1",
    "SILHOUETTE_SAMPLE",
    "ClusterPurity",
    "contingency",
    "purity",
    "cluster_purity",
    "hungarian_accuracy",
    "adjusted_rand",
    "nmi",
    "silhouette",
    "score_against_truth",
]

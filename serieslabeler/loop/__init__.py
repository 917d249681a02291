"""The active-learning loop: routing by confidence, threshold tuning, evaluation on held-out subjects, iterations.

The evaluation on held-out subjects lives with the model it measures
(:mod:`serieslabeler.models.evaluation`, stored when the model is trained); its names are re-exported here.
"""

from serieslabeler.models.evaluation import (
    EVALUATION_TEST_SIZE,
    Evaluation,
    evaluate_model,
    ground_truth,
    held_out_subjects,
    stored_evaluation,
    subject_names,
)

from .guidance import (
    Coverage,
    NextStep,
    Suggestion,
    model_for_current_labels,
    next_step,
    sample_coverage,
    suggested_label,
)
from .iterate import (
    AWAITING,
    DONE,
    IDLE_MINUTES,
    IterateConfig,
    IterationRecord,
    IterationResult,
    effort_since,
    iterate,
    label_with_oracle,
    last_event_id,
    list_iterations,
    load_iteration,
    save_iteration,
)
from .oracle import CentreAnswer, ClusterAnswer, Oracle, SeriesAnswer
from .routing import (
    Routing,
    check_threshold,
    route_mask,
    route_predictions,
    smooth_along_series,
    thresholds_for,
)
from .series import SeriesProposal, propose_series, series_evidence
from .threshold import (
    TRUTH_SOURCES,
    ThresholdChoice,
    ThresholdCurve,
    ThresholdTuning,
    curve_at,
    precision_coverage_curve,
    threshold_for_precision,
    tune_thresholds,
    validation_curves,
)

__all__ = [
    "Coverage",
    "NextStep",
    "Suggestion",
    "model_for_current_labels",
    "next_step",
    "sample_coverage",
    "suggested_label",
    "EVALUATION_TEST_SIZE",
    "Evaluation",
    "evaluate_model",
    "ground_truth",
    "held_out_subjects",
    "stored_evaluation",
    "subject_names",
    "IDLE_MINUTES",
    "AWAITING",
    "DONE",
    "IterationRecord",
    "load_iteration",
    "list_iterations",
    "save_iteration",
    "last_event_id",
    "effort_since",
    "IterateConfig",
    "IterationResult",
    "iterate",
    "label_with_oracle",
    "ClusterAnswer",
    "CentreAnswer",
    "SeriesAnswer",
    "Oracle",
    "thresholds_for",
    "check_threshold",
    "route_mask",
    "smooth_along_series",
    "Routing",
    "route_predictions",
    "SeriesProposal",
    "series_evidence",
    "propose_series",
    "ThresholdCurve",
    "ThresholdChoice",
    "ThresholdTuning",
    "precision_coverage_curve",
    "curve_at",
    "threshold_for_precision",
    "tune_thresholds",
    "TRUTH_SOURCES",
    "validation_curves",
]

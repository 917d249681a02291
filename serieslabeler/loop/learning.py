"""The learning curve: how each model scores against the labels and the interactions it cost.

One point per model, oldest first: what the Metrics page draws and ``serieslabeler
learning-curve`` prints, so both read the same figures.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

from serieslabeler.models.evaluation import evaluate_model
from serieslabeler.models.files import list_models
from serieslabeler.store.queries import has_ground_truth, interactions_until
from serieslabeler.store.workspace import Workspace


@dataclass(frozen=True)
class LearningPoint:
    """One model: its training labels, the interactions spent until it was made, its scores.

    ``validation_*``: the model's own validation (out of fold on the labels, subjects grouped);
    ``held_out_*``: on the ground truth of held-out subjects (None without ground truth).
    """

    model_id: int
    labeled_images: int | None
    interactions: int
    validation_macro_f: float | None
    validation_top1: float | None
    held_out_macro_f: float | None = None
    held_out_top1: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


HeldOut = Callable[[int], dict]


def learning_curve(workspace: Workspace, held_out: HeldOut | None = None) -> list[LearningPoint]:
    """One :class:`LearningPoint` per model, oldest first.

    With ground truth in the workspace, each model is also scored on held-out subjects by
    ``held_out(model_id)`` (an :class:`serieslabeler.models.evaluation.Evaluation` as a dict;
    default :func:`evaluate_model`; the app passes its cached version).
    """
    if not has_ground_truth(workspace):
        held_out = None
    elif held_out is None:
        held_out = partial(_evaluation, workspace)
    return [_point(workspace, model, held_out) for model in reversed(list_models(workspace, classifiers_only=True))]


def _evaluation(workspace: Workspace, model_id: int) -> dict:
    return evaluate_model(workspace, model_id).to_dict()


def _point(workspace: Workspace, model: dict, held_out: HeldOut | None) -> LearningPoint:
    validation = model["metrics"].get("validation") or {}
    report = held_out(model["id"])["report"] if held_out is not None else {}
    return LearningPoint(
        model_id=model["id"],
        labeled_images=model["metrics"].get("train_size"),
        interactions=interactions_until(workspace, model["created_at"]),
        validation_macro_f=validation.get("macro", {}).get("F"),
        validation_top1=validation.get("top1"),
        held_out_macro_f=report.get("macro", {}).get("F"),
        held_out_top1=report.get("top1"),
    )

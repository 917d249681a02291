"""``learning-curve``: each model's scores against the labels and the interactions it cost."""
from __future__ import annotations

from serieslabeler.cli.base import Result, add_common
from serieslabeler.loop.learning import learning_curve
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "learning-curve", help="one row per model, oldest first: labels, interactions, validation and held-out scores"
    )
    add_common(parser)
    parser.set_defaults(run=run_learning_curve)


def run_learning_curve(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        points = learning_curve(workspace)
    lines = [
        f"model {p.model_id}: {p.labeled_images} labels, {p.interactions} interactions, validation macro F "
        f"{_figure(p.validation_macro_f)}, held-out macro F {_figure(p.held_out_macro_f)}"
        for p in points
    ]
    return Result({"ok": True, "points": [p.to_dict() for p in points]}, "\n".join(lines) or "no models yet")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

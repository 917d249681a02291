"""``sample`` and ``samples``: draw the batch of images to work on, and list the batches drawn."""
from __future__ import annotations

from serieslabeler.cli.base import Result, add_common
from serieslabeler.sampling import (
    STRATEGIES,
    UNCERTAINTY_MEASURES,
    draw_sample,
    list_samples,
)
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("sample", help="draw a sample of unlabeled images (saved in the workspace)")
    add_common(parser)
    parser.add_argument("--strategy", required=True, choices=list(STRATEGIES))
    parser.add_argument("--size", type=int, help="number of images (random, time-stratified, uncertainty, coreset)")
    parser.add_argument("--subjects", type=int, help="number of subjects, all their images (subjects)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--include-labeled", action="store_true", help="also sample images that already have a label")
    parser.add_argument("--bins", type=int, help="time bins of days since each subject's first image (time-stratified)")
    parser.add_argument("--time", choices=["days", "add"], help="time-stratified: bins of days (default) or degree-days (weather table)")
    parser.add_argument("--model", type=int, help="model whose predictions to use (uncertainty; default: the latest)")
    parser.add_argument("--measure", choices=UNCERTAINTY_MEASURES, help="uncertainty measure")
    parser.add_argument("--features", help="feature set for coreset, or a backbone name with one feature set")
    parser.set_defaults(run=run_sample)

    parser = subparsers.add_parser("samples", help="list the samples drawn so far")
    add_common(parser)
    parser.set_defaults(run=run_samples)


def run_sample(args) -> Result:
    options = {name: getattr(args, name) for name in ("bins", "time", "model", "measure", "features")}
    with Workspace.open(args.workspace) as workspace:
        sample = draw_sample(
            workspace, args.strategy, size=args.size, subjects=args.subjects, seed=args.seed,
            include_labeled=args.include_labeled, **{k: v for k, v in options.items() if v is not None},
        )
    text = f"sample {sample.id}: {sample.size} images ({sample.strategy}: {format_params(sample.params)})"
    return Result({"ok": True, **sample.to_dict()}, text)


def run_samples(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        samples = list_samples(workspace)
    lines = [
        f"sample {s['id']}: {s['size']} images ({s['strategy']}: {format_params(s['params'])}), {s['created_at']}"
        for s in samples
    ]
    return Result({"ok": True, "samples": samples}, "\n".join(lines) or "no samples yet")


def format_params(params: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in params.items())

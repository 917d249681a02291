"""``train``, ``predict``, ``route``, ``evaluate``, ``thresholds``, ``iterate``, ``simulate``,
``models`` and ``iterations``: the classifier side of the loop."""
from __future__ import annotations

import json
from pathlib import Path

from serieslabeler.cli.base import Result, add_common, check_number, parse_key_values
from serieslabeler.cli.commands.vae import parse_options
from serieslabeler.errors import PipelineError
from serieslabeler.loop.demo import run_demo
from serieslabeler.loop.iterate import IterateConfig, iterate, list_iterations
from serieslabeler.loop.routing import check_smoothing_window, route_predictions
from serieslabeler.loop.support import SUPPORT_QUANTILE
from serieslabeler.loop.threshold import measured_images, prepare_curves, validation_curves
from serieslabeler.metrics.calibration import declined_note
from serieslabeler.metrics.classification import ClassificationReport
from serieslabeler.models.configs import FinetuneConfig, HeadConfig
from serieslabeler.models.evaluation import evaluate_model
from serieslabeler.models.files import latest_model_id, list_models, model_classes
from serieslabeler.models.predictions import predict
from serieslabeler.models.training import train_model
from serieslabeler.progress import ProgressLine
from serieslabeler.simulation.engine import simulate
from serieslabeler.simulation.proposals import proposal_ceiling
from serieslabeler.simulation.records import (
    ORDERED_SCENARIOS,
    SCENARIOS,
    Collection,
    SimulationConfig,
    write_result,
)
from serieslabeler.store.queries import sample_ids
from serieslabeler.store.workspace import Workspace, write_atomic

# the options each mode takes as flags of their own: its config's fields (finetune's num_workers only through the library)
HEAD_OPTIONS = HeadConfig.names()


FINETUNE_OPTIONS = tuple(name for name in FinetuneConfig.names() if name != "num_workers")


# overcluster and vae (issue 9): these shared options, plus any of their own through --option NAME=VALUE
SEMI_SUPERVISED_OPTIONS = ("backbone", "weights", "epochs", "batch_size", "lr", "hidden", "image_size")


MODE_OPTIONS = {"head": HEAD_OPTIONS, "finetune": FINETUNE_OPTIONS, "overcluster": SEMI_SUPERVISED_OPTIONS, "vae": SEMI_SUPERVISED_OPTIONS}


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a classifier on the accepted labels (saved as a model)")
    add_common(parser)
    add_training_arguments(parser)
    parser.set_defaults(run=run_train)

    parser = subparsers.add_parser("predict", help="predict labels with a model (stored in the predictions table)")
    add_common(parser)
    parser.add_argument("--model", type=int, help="model id (default: the latest)")
    parser.add_argument("--sample", type=int, help="predict the images of this sample (default: every unlabeled image)")
    parser.add_argument("--top-k", type=int, default=3, help="how many labels to keep per image (default 3)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="for features still to compute")
    parser.add_argument(
        "--engine", default="local", choices=["local", "ray"],
        help="where features still to compute are computed: this machine, or Ray Data (requirements-scale.txt)",
    )
    parser.add_argument("--address", help="with --engine ray: the Ray cluster to join (default: start a local Ray)")
    parser.set_defaults(run=run_predict)

    parser = subparsers.add_parser("route", help="confident predictions -> pending pseudo-labels; the rest -> a sample to cluster")
    add_common(parser)
    parser.add_argument("--model", type=int, help="model id (default: the latest)")
    add_threshold_arguments(parser)
    parser.add_argument("--sample", type=int, help="route only the images of this sample (default: every unlabeled predicted image)")
    parser.add_argument("--monotone", action="store_true", help="decode each series as non-decreasing stages first (ordered vocabulary)")
    parser.set_defaults(run=run_route)

    parser = subparsers.add_parser(
        "evaluate", help="a model's per-class scores on the ground truth of held-out subjects (never a random split)"
    )
    add_common(parser)
    parser.add_argument("--model", type=int, help="model id (default: the latest)")
    parser.add_argument("--test-size", type=float, default=0.3, help="share of the subjects with ground truth held out (default 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subject split")
    parser.set_defaults(run=run_evaluate)

    parser = subparsers.add_parser("thresholds", help="precision and coverage against the confidence threshold, overall and per class")
    add_common(parser)
    parser.add_argument("--model", type=int, help="model whose features and head settings to use (default: the latest)")
    parser.add_argument("--target", type=float, default=0.95, help="precision to reach (default 0.95)")
    parser.add_argument("--truth", default="labels", choices=["labels", "ground_truth"], help="validation labels (default: your accepted labels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the curves to this .json file")
    parser.add_argument("--lower-bound", action="store_true",
                        help="target the lower end of the 95%% interval (the audit's, when an answered audit exists), not the estimate")
    parser.set_defaults(run=run_thresholds)

    parser = subparsers.add_parser(
        "iterate", help="one round: sample -> embed -> cluster -> (your labels) -> train -> predict -> route"
    )
    add_common(parser)
    parser.add_argument("--features", default="efficientnet_lite0", help="backbone or feature set (default efficientnet_lite0)")
    parser.add_argument("--weights", default="default", help="backbone weights (see 'embed')")
    parser.add_argument("--strategy", default="subjects", help="sampling strategy of a fresh sample (default subjects)")
    parser.add_argument("--subjects", type=int, default=3, help="subjects per sample (strategy subjects; default 3)")
    parser.add_argument("--size", type=int, help="images per sample (other strategies)")
    parser.add_argument("--algorithm", default="kmeans", choices=["kmeans", "agglomerative", "spectral"])
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--k", type=int, help="number of clusters")
    amount.add_argument("--overcluster", type=float, default=2.0, help="k = F x the number of classes (default 2)")
    parser.add_argument("--metadata", help="fields and their share of the variance for clustering, e.g. days=0.3")
    parser.add_argument("--mode", default="head", choices=list(MODE_OPTIONS),
                        help="training mode (see 'train --mode'; default head)")
    add_option_argument(parser)
    add_threshold_arguments(parser, required=False)
    parser.add_argument("--target-precision", type=float, help="tune the threshold to reach this precision on your labels")
    parser.add_argument("--oracle", action="store_true", help="let the ground truth label the clusters (demos)")
    parser.add_argument("--rounds", type=int, help="with --oracle: run this many rounds as a demo (events by author 'demo'; 'undo --demo' undoes them)")
    parser.add_argument("--purity", type=float, default=0.8, help="oracle: least share of the modal class to label a cluster")
    parser.add_argument("--no-hold-out", action="store_true", help="also sample the subjects held out for evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.set_defaults(run=run_iterate)

    parser = subparsers.add_parser("simulate", help="measure labeling effort: an oracle plays the expert on ground truth")
    add_common(parser)
    parser.add_argument("--features", required=True, help="feature set, or a backbone name with one feature set")
    parser.add_argument("--scenarios", help="comma-separated (default: all): random, uncertain-only, cluster-only, "
                        "uncertain+cluster, cluster+uncertain, full, overcluster, vae (these two train networks: slower)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--purity", type=float, default=0.8)
    parser.add_argument("--budget", type=float, default=0.5, help="stop at this many interactions per pool image (default 0.5)")
    parser.add_argument("--cluster-size", type=int, default=10, help="images per cluster (k = images / size; default 10)")
    parser.add_argument("--metadata-weight", type=float, default=0.5, help="share of variance of 'days' in the full loop")
    parser.add_argument("--order", metavar="U,R,V,O", help="the labels are stages in this order (default: the ordered vocabulary, if any)")
    parser.add_argument("--uncertain-batch", type=int, default=60, help="images per uncertain batch of uncertain+cluster (default 60)")
    parser.add_argument("--boundary-tolerance", type=int, default=0, metavar="PHOTOS",
                        help="series: the oracle leaves a proposed stage boundary this many photos off where it is "
                        "(its labels' precision shows the cost; default 0: every boundary moved to the true one)")
    parser.add_argument("--out", help="write the curves to this .csv or .json file")
    parser.add_argument("--ceiling", action="store_true", help="ordered stages: also propose every subject's series from a model "
                        "trained on all the other subjects' true stages (what these features allow; one fit per subject)")
    parser.set_defaults(run=run_simulate)

    parser = subparsers.add_parser("models", help="list the trained models")
    add_common(parser)
    parser.set_defaults(run=run_models)

    parser = subparsers.add_parser("iterations", help="list the iteration records")
    add_common(parser)
    parser.set_defaults(run=run_iterations)


def add_training_arguments(parser) -> None:
    parser.add_argument("--mode", default="head", choices=list(MODE_OPTIONS),
                        help="head on cached features (default), finetune, overcluster (FOC) or vae (after 'vae-centres')")
    parser.add_argument("--features", help="feature set (or backbone name) to train on / start from (default: the newest)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--kind", choices=["logreg", "mlp"], help="head: classifier kind (default logreg)")
    parser.add_argument("--C", type=float, help="head: inverse regularization strength (default 0.1)")
    parser.add_argument("--hidden", type=int, help="head mlp: hidden units (default 128)")
    parser.add_argument("--max-iter", type=int, help="head: solver iterations (default 2000)")
    parser.add_argument("--backbone", help="finetune: backbone (default: that of --features)")
    parser.add_argument("--weights", help="finetune: starting weights (default: those of --features)")
    parser.add_argument("--epochs", type=int, help="finetune: most epochs (default 5)")
    parser.add_argument("--patience", type=int, help="finetune: epochs without validation improvement before stopping (default 2)")
    parser.add_argument("--batch-size", type=int, help="finetune: batch size (default 32)")
    parser.add_argument("--lr", type=float, help="finetune: backbone learning rate (default 1e-4)")
    parser.add_argument("--head-lr", type=float, help="finetune: head learning rate (default 1e-3)")
    parser.add_argument("--image-size", type=int, help="finetune: input size in px (default: the backbone's)")
    parser.add_argument("--val-share", type=float, help="finetune: share of subjects for early stopping (default 0.2)")
    add_option_argument(parser)


def add_option_argument(parser) -> None:
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="overcluster/vae: a mode option, repeatable (e.g. input=images, unlabeled_ratio=0.5, gamma=2)")


def training_params(args) -> dict:
    names = MODE_OPTIONS[args.mode]
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    every = dict.fromkeys(HEAD_OPTIONS + FINETUNE_OPTIONS + SEMI_SUPERVISED_OPTIONS)
    wrong = [name for name in every if name not in names and getattr(args, name, None) is not None]
    if wrong:
        raise PipelineError(f"--{wrong[0].replace('_', '-')} does not apply to --mode {args.mode}")
    return {**given, **mode_options(args)}


def mode_options(args) -> dict[str, str]:
    """``--option NAME=VALUE`` pairs (overcluster and vae only; each mode types its own values)."""

    if args.option and args.mode not in ("overcluster", "vae"):
        raise PipelineError(f"--option applies to --mode overcluster and vae, not {args.mode}")
    return parse_options(args.option)


def add_threshold_arguments(parser, required: bool = True) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--threshold", type=float, help="one confidence threshold for every class (e.g. 0.9)")
    group.add_argument("--class-thresholds", help="a threshold per class, e.g. Arm=0.9,Head=0.8 (other classes: never)")
    parser.add_argument("--smooth", type=int, default=0, help="majority vote over this many predictions along each subject's series, "
                        "an odd number: a window centred on each image (default 0: off)")
    support = parser.add_mutually_exclusive_group()
    support.add_argument("--support-quantile", type=float, default=SUPPORT_QUANTILE,
                         help="pseudo-label only images whose nearest labeled image is within this quantile of the labels' "
                              f"distances to one another across subjects (default {SUPPORT_QUANTILE})")
    support.add_argument("--no-support", action="store_true", help="pseudo-label confident images however unlike the labels they are")


def support_of(args) -> float | None:
    return None if args.no_support else args.support_quantile


def threshold_of(args, default: float | None = None, classes: list[str] | None = None):
    """``--threshold`` or ``--class-thresholds``; with ``classes`` (the model's), a class it does not know is refused."""
    if args.class_thresholds:
        example = ",".join(f"{c}={t}" for c, t in zip(classes or ["Arm", "Head"], ("0.9", "0.8")))
        thresholds = parse_key_values(args.class_thresholds, "--class-thresholds", example)
        unknown = [] if classes is None else [name for name in thresholds if name not in classes]
        if unknown:
            raise PipelineError(f"--class-thresholds: the model has no class {', '.join(unknown)}; its classes are {', '.join(classes)}")
        return thresholds
    return default if args.threshold is None else args.threshold


def smoothing_of(args) -> int:
    return check_smoothing_window(args.smooth, "--smooth")


def run_train(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        model = train_model(workspace, args.mode, feature_set=args.features, seed=args.seed, device=args.device,
                            progress=ProgressLine("training"), **training_params(args))
    validation = model.metrics.get("validation")
    text = f"model {model.id} ({model.mode} on {model.feature_set}): {model.metrics['train_size']} labels, classes {', '.join(model.classes)}"
    if validation:
        text += f"\nvalidation ({model.metrics['validation_split']}): macro F {validation['macro']['F']:.3f}, top-1 {validation['top1']:.3f}"
    return Result({"ok": True, "model": model.summary()}, text)


def _model_id(workspace, model: int | None) -> int:
    return latest_model_id(workspace) if model is None else model


def run_predict(args) -> Result:
    check_number("--top-k", args.top_k, at_least=1)
    if args.address and args.engine != "ray":
        raise PipelineError("--address goes with --engine ray")
    with Workspace.open(args.workspace) as workspace:
        image_ids = None if args.sample is None else sample_ids(workspace, args.sample)
        predictions = predict(workspace, _model_id(workspace, args.model), image_ids, top_k=args.top_k, device=args.device,
                              progress=ProgressLine("features"), engine=args.engine, address=args.address)
        prepare_curves(workspace, predictions.model_id)
    summary = predictions.summary(args.top_k)
    text = f"model {predictions.model_id}: predicted {summary['images']} images {summary['by_label']}"
    if summary["mean_confidence"] is not None:
        text += f", mean confidence {summary['mean_confidence']:.3f}"
    return Result({"ok": True, **summary}, text)


def run_route(args) -> Result:
    smoothing = smoothing_of(args)
    with Workspace.open(args.workspace) as workspace:
        model_id = _model_id(workspace, args.model)
        threshold = threshold_of(args, classes=model_classes(workspace, model_id))
        image_ids = None if args.sample is None else sample_ids(workspace, args.sample)
        routing = route_predictions(
            workspace, model_id, threshold, image_ids, smoothing, monotone=args.monotone,
            support=support_of(args),
        )
    summary = routing.summary()
    text = (f"model {routing.model_id}: {summary['pseudo_labeled']} pending pseudo-labels (review them), "
            f"{summary['to_cluster']} images to cluster next"
            + (f", of them {routing.held_back()}" if routing.held_back() else "")
            + (f" (sample {routing.sample_id}: 'serieslabeler cluster --sample {routing.sample_id} ...')" if routing.sample_id else ""))
    return Result({"ok": True, **summary}, text)


def run_evaluate(args) -> Result:
    check_number("--test-size", args.test_size, above=0, below=1, what=" (a share of the subjects)")
    with Workspace.open(args.workspace) as workspace:
        evaluation = evaluate_model(workspace, args.model, args.test_size, args.seed)
    table = ClassificationReport.from_dict(evaluation.report).format()
    text = (f"model {evaluation.model_id} on {evaluation.test_images} held-out images of subjects "
            f"{', '.join(evaluation.held_out_subjects)}\nsplit: {evaluation.split}\nscored: {evaluation.method}\n{table}")
    if evaluation.decoded_report is not None:
        raw, decoded = evaluation.report["macro"]["F"], evaluation.decoded_report["macro"]["F"]
        text += f"\nmacro-F1 per image: raw {raw:.3f}, decoded monotone along each series {decoded:.3f}"
    return Result({"ok": True, **evaluation.to_dict()}, text)


def run_thresholds(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        tuning = validation_curves(workspace, args.model, args.target, args.truth, args.seed, args.lower_bound)
    data = tuning.to_dict()
    if args.out:
        write_atomic(Path(args.out), json.dumps(data, indent=1).encode())
    header = (f"model {tuning.details['model_id']} ({tuning.details['feature_set']}), {tuning.details['images']} images of "
              f"{tuning.details['subjects']} subjects ({tuning.details['truth']}; {tuning.details['split']})")
    return Result({"ok": True, **data}, "\n".join([header, *trust_lines(tuning.details), tuning.format()]))


def trust_lines(details: dict) -> list[str]:
    """What the curve is measured against, the calibration, and the audit, in words."""
    measured = details["measured_on"]
    lines = [(f"measured on {measured['labels']}: {measured_images(measured)}, {measured['estimator']}; "
              f"effective sample size {measured['effective_n']:.0f} for {measured['pool_images']} unlabeled predicted images")]
    calibration = details.get("calibration")
    if calibration:
        note = declined_note(calibration)
        lines.append(f"calibration ({calibration['method']}): ECE {calibration['ece_before']:.3f} before, "
                     f"{calibration['ece_after']:.3f} after (out of fold)" + (f"; {note}" if note else ""))
    audit = details.get("audit")
    if audit:
        overall = audit["overall"]
        lines.append(f"audit {audit['audit_id']}: {audit['answered']} of {audit['drawn']} answered, precision of the "
                     f"{audit['routed']} routed labels {overall['estimate']:.1%} (95% interval {overall['low']:.1%}-{overall['high']:.1%})")
    suggested = details.get("suggested", {})
    if suggested.get("source") == "audit":
        lines.append(f"suggested threshold from the audit's lower bound: {suggested['threshold']:.3f}")
    return lines


def run_iterate(args) -> Result:
    config = iterate_config(args)
    if args.rounds is not None:
        return run_demo_rounds(args, config)
    with Workspace.open(args.workspace) as workspace:
        result = iterate(workspace, config, oracle=args.oracle, progress=ProgressLine("working"))
    return Result({"ok": True, **result.to_dict()}, result.message)


def run_demo_rounds(args, config: IterateConfig) -> Result:
    """``iterate --oracle --rounds N``: the demo (see :mod:`serieslabeler.loop.demo`)."""
    if not args.oracle:
        raise PipelineError("--rounds runs the ground-truth oracle: add --oracle")
    with Workspace.open(args.workspace) as workspace:
        demo = run_demo(workspace, config, args.rounds, progress=ProgressLine("working"))
    return Result({"ok": True, **demo.to_dict()}, demo.message)


def iterate_config(args) -> IterateConfig:
    return IterateConfig(
        features=args.features, weights=args.weights, strategy=args.strategy, subjects=args.subjects, size=args.size,
        algorithm=args.algorithm, k=args.k, overcluster=args.overcluster, metadata=parse_key_values(args.metadata, "--metadata"),
        mode=args.mode, train_params=mode_options(args), threshold=threshold_of(args, 0.9), target_precision=args.target_precision,
        smoothing_window=smoothing_of(args), purity=args.purity, hold_out=not args.no_hold_out, seed=args.seed, device=args.device,
        support=support_of(args),
    )


def run_simulate(args) -> Result:
    check_number("--budget", args.budget, above=0, what=" (interactions per pool image)")
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        raise PipelineError(f"--out {args.out}: write the curves to a .csv or a .json file")
    order = [s.strip() for s in args.order.split(",") if s.strip()] if args.order else None
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise PipelineError(f"--seeds: '{args.seeds}' is not a comma-separated list of whole numbers (e.g. 0,1,2)") from None
    if args.uncertain_batch < 1:
        raise PipelineError(f"--uncertain-batch must be at least 1, not {args.uncertain_batch}")
    if args.boundary_tolerance < 0:
        raise PipelineError(f"--boundary-tolerance must be 0 or more photos, not {args.boundary_tolerance}")
    config = SimulationConfig(purity=args.purity, budget=args.budget, cluster_size=args.cluster_size, metadata_weight=args.metadata_weight,
                              uncertain_batch=args.uncertain_batch, boundary_tolerance=args.boundary_tolerance)
    with Workspace.open(args.workspace) as workspace:
        collection = Collection.from_workspace(workspace, args.features, order)
    default = [s for s in SCENARIOS if collection.order is not None or s not in ORDERED_SCENARIOS]
    scenarios = [s.strip() for s in args.scenarios.split(",")] if args.scenarios else default
    if args.ceiling and collection.order is None:
        raise PipelineError("--ceiling needs ordered stages: pass --order U,R,V,O or declare the vocabulary ordered")
    result = simulate(collection, scenarios, seeds, config, ProgressLine("simulating"))
    if args.out:
        write_result(result, args.out)
    data = {"ok": True, "collection": result.collection, "order": collection.order, "table": result.table(),
            "runs": [r.summary() for r in result.runs]}
    text = result.format()
    if args.ceiling:
        ceiling = proposal_ceiling(collection, config)
        data["proposal_ceiling"] = ceiling.summary()
        text += "\n" + ceiling.format()
    return Result(data, text + (f"\ncurves written to {args.out}" if args.out else ""))


def run_models(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        models = list_models(workspace)
    lines = [f"model {m['id']}: {m['mode']} on {m['feature_set']}, {m['training_set']} labels, classes {', '.join(m['classes'])} "
             f"({m['created_at']})" for m in models]
    return Result({"ok": True, "models": models}, "\n".join(lines) or "no models yet")


def run_iterations(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        records = list_iterations(workspace)
    lines = [f"iteration {r.id} ({r.status}): sample {r.sample_id}, clustering {r.clustering_id}, model {r.model_id}, "
             f"{r.record.get('interactions', 0)} interactions" for r in records]
    return Result({"ok": True, "iterations": [r.to_dict() for r in records]}, "\n".join(lines) or "no iterations yet")

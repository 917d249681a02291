"""``embed`` and ``map``: feature vectors for every image, and the 2-D t-SNE map of them."""
from __future__ import annotations

from serieslabeler.cli.base import Result, add_common, parse_key_values
from serieslabeler.embed.backbones import EMBEDDERS
from serieslabeler.embed.distributed import embed_with_ray
from serieslabeler.embed.local import embed_workspace
from serieslabeler.errors import PipelineError
from serieslabeler.progress import ProgressLine
from serieslabeler.space.reduce import MAX_FIT, MIN_POINTS, create_map
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("embed", help="compute CNN feature vectors for the images not embedded yet")
    add_common(parser)
    parser.add_argument("--backbone", required=True, choices=list(EMBEDDERS), help="the network, or colour: a colour histogram (no weights)")
    parser.add_argument(
        "--weights", default="default",
        help="default (ImageNet, from the local cache), random (seeded), a torchvision weights name, or a state-dict file",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, help="image-decoding processes (default: 2 on a CPU, all cores but one with CUDA)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="how vectors are stored")
    parser.add_argument(
        "--engine", default="local", choices=["local", "ray"],
        help="local (default): this process; ray: Ray Data (pip install -r requirements-scale.txt)",
    )
    parser.add_argument("--address", help="with --engine ray: the Ray cluster to join (default: start a local Ray)")
    parser.add_argument("--actors", type=int, help="with --engine ray: model copies (default: one per GPU, or CPUs / 4)")
    parser.add_argument(
        "--images-uri",
        help="with --engine ray: where the workers read a copy of the workspace's images folder "
        "(a path, s3://..., gs://...; default: this process sends them the images' bytes)",
    )
    parser.set_defaults(run=run_embed)

    parser = subparsers.add_parser("map", help="fit a t-SNE map of a feature set (plus weighted metadata)")
    add_common(parser)
    parser.add_argument("--features", required=True, help="feature set, or a backbone name with one feature set")
    parser.add_argument("--metadata", help="fields and their share of the variance, e.g. days=0.3,group=0.1")
    parser.add_argument("--absolute-dates", action="store_true", help="'days' counts from the collection's first image")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, help="map only the images of this sample id")
    parser.add_argument("--jobs", type=int, default=-1, help="t-SNE threads (default -1: every core)")
    parser.add_argument(
        "--max-fit", type=int, default=MAX_FIT,
        help=f"fit on a random sample of this many images and place the rest (default {MAX_FIT:,}; 0: fit all)",
    )
    parser.set_defaults(run=run_map)


def run_embed(args) -> Result:

    if args.engine == "local" and (args.address or args.actors or args.images_uri):
        raise PipelineError("--address, --actors and --images-uri go with --engine ray")
    if args.engine == "ray" and args.workers is not None:
        raise PipelineError("--workers is for --engine local; on Ray, image decoding runs in Ray tasks (size it with --actors)")
    progress = ProgressLine(f"embedding ({args.backbone})")
    with Workspace.open(args.workspace) as workspace:
        if args.engine == "ray":

            report = embed_with_ray(
                workspace, args.backbone, weights=args.weights, device=args.device, batch_size=args.batch_size,
                dtype=args.dtype, address=args.address, actors=args.actors, progress=progress,
                images_uri=args.images_uri,
            )
        else:
            report = embed_workspace(
                workspace, args.backbone, weights=args.weights, device=args.device, batch_size=args.batch_size,
                num_workers=args.workers, dtype=args.dtype, progress=progress,
            )
    text = (
        f"{report.feature_set}: {report.computed} computed, {report.cached} from the cache, "
        f"{report.images_per_second:.1f} images/s on {report.device} ({report.seconds:.1f} s)"
    )
    return Result({"ok": True, **report.to_dict()}, text)


def run_map(args) -> Result:

    if args.max_fit != 0 and args.max_fit < MIN_POINTS:
        raise PipelineError(f"--max-fit must be 0 (fit all images) or at least {MIN_POINTS} images, not {args.max_fit}")
    metadata = parse_key_values(args.metadata, "--metadata")
    with Workspace.open(args.workspace) as workspace:
        saved = create_map(
            workspace, args.features, metadata=metadata, absolute_dates=args.absolute_dates,
            perplexity=args.perplexity, seed=args.seed, sample_id=args.sample, n_jobs=args.jobs,
            max_fit=args.max_fit or None,
        )
    text = f"map {saved.id}: {len(saved.ids)} images of {saved.feature_set} ({saved.params['kl_divergence']:.3f} KL)"
    return Result({"ok": True, "map_id": saved.id, "feature_set": saved.feature_set, "n": len(saved.ids), "params": saved.params}, text)

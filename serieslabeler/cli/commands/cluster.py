"""``cluster``, ``suggest-k``, ``split``, ``merge``, ``link`` and ``clusterings``."""
from __future__ import annotations

from dataclasses import asdict

from serieslabeler.cli.base import Result, add_common, check_number, parse_key_values
from serieslabeler.clustering.algorithms import (
    ALGORITHMS,
    DENSE_LIMIT,
    LINKAGES,
    NEIGHBORS,
)
from serieslabeler.clustering.evaluate import evaluate_clustering
from serieslabeler.clustering.linking import link_across_days
from serieslabeler.clustering.runs import (
    list_clusterings,
    merge_clusters,
    run_clustering,
    split_cluster,
)
from serieslabeler.clustering.suggest import overcluster_k, suggest_k
from serieslabeler.errors import PipelineError
from serieslabeler.progress import ProgressLine
from serieslabeler.space.reduce import PCA_COMPONENTS
from serieslabeler.space.spaces import SPACES
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("cluster", help="cluster images on features plus weighted metadata (saved)")
    add_common(parser)
    add_space_arguments(parser)
    parser.add_argument("--algorithm", required=True, choices=ALGORITHMS)
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--k", type=int, help="number of clusters")
    amount.add_argument(
        "--overcluster", type=float, metavar="F", help="k = F x the number of classes (vocabulary, else ground truth)"
    )
    parser.set_defaults(run=run_cluster)

    parser = subparsers.add_parser("suggest-k", help="inertia (elbow) and silhouette over a range of k")
    add_common(parser)
    add_space_arguments(parser)
    parser.add_argument("--algorithm", default="kmeans", choices=ALGORITHMS)
    parser.add_argument("--k-min", type=int, default=2)
    parser.add_argument("--k-max", type=int, default=10)
    parser.set_defaults(run=run_suggest_k)

    parser = subparsers.add_parser("split", help="split one cluster in two (k-means, k=2); saves a new clustering")
    add_common(parser)
    parser.add_argument("--clustering", type=int, required=True, help="clustering id")
    parser.add_argument("--cluster", type=int, required=True, help="the cluster to split")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run_split)

    parser = subparsers.add_parser("merge", help="merge clusters into one; saves a new clustering")
    add_common(parser)
    parser.add_argument("--clustering", type=int, required=True, help="clustering id")
    parser.add_argument("--clusters", required=True, help="clusters to merge, comma-separated (e.g. 2,5,7)")
    parser.set_defaults(run=run_merge)

    parser = subparsers.add_parser("link", help="link each subject's clusters across consecutive days")
    add_common(parser)
    parser.add_argument("--clustering", type=int, required=True, help="clustering id")
    parser.add_argument("--any", action="store_true", help="link to the nearest cluster even when not mutual")
    parser.set_defaults(run=run_link)

    parser = subparsers.add_parser("clusterings", help="list the saved clusterings")
    add_common(parser)
    parser.set_defaults(run=run_clusterings)


def add_space_arguments(parser) -> None:
    """What to cluster and in which space: shared by ``cluster`` and ``suggest-k``."""
    parser.add_argument("--features", required=True, help="feature set, or a backbone name with one feature set")
    parser.add_argument("--metadata", help="fields and their share of the variance, e.g. days=0.3,group=0.1")
    parser.add_argument("--absolute-dates", action="store_true", help="'date' counts from the collection's first image")
    parser.add_argument("--on", default="full", choices=SPACES, help="full features, PCA-reduced, or t-SNE coordinates")
    parser.add_argument("--components", type=int, default=PCA_COMPONENTS, help="PCA components (--on pca)")
    parser.add_argument("--map", type=int, help="t-SNE map id (--on tsne; default: the latest map of the feature set)")
    parser.add_argument("--sample", type=int, help="cluster only the images of this sample id")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--linkage", choices=LINKAGES, help="agglomerative linkage (default ward)")
    parser.add_argument(
        "--dense-limit", type=int,
        help=f"agglomerative: above this many images use a kNN connectivity graph (default {DENSE_LIMIT})",
    )
    parser.add_argument("--neighbors", type=int, help=f"kNN graph size for spectral / large agglomerative (default {NEIGHBORS})")


def space_arguments(args) -> dict:
    """Keyword arguments for :func:`run_clustering` / :func:`suggest_k` from the parsed options."""
    check_number("--components", args.components, at_least=1)
    algorithm_options = {
        "linkage": args.linkage, "dense_limit": args.dense_limit, "neighbors": args.neighbors,
    }
    return {
        "metadata": parse_key_values(args.metadata, "--metadata"),
        "absolute_dates": args.absolute_dates,
        "space": args.on,
        "n_components": args.components,
        "map_id": args.map,
        "sample_id": args.sample,
        "seed": args.seed,
        **{k: v for k, v in algorithm_options.items() if v is not None},
    }


def run_cluster(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        k = args.k if args.k is not None else overcluster_k(workspace, args.overcluster)
        clustering = run_clustering(workspace, args.features, args.algorithm, k, **space_arguments(args))
        return describe(workspace, clustering, f"clustering {clustering.id}")


def run_split(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        child = split_cluster(workspace, args.clustering, args.cluster, args.seed)
        into = child.params["split"]["into"]
        return describe(workspace, child, f"clustering {child.id}: cluster {args.cluster} of {args.clustering} split into {into}")


def run_merge(args) -> Result:
    try:
        clusters = [int(c) for c in args.clusters.split(",")]
    except ValueError:
        raise PipelineError(f"--clusters: '{args.clusters}' is not a comma-separated list of cluster numbers") from None
    with Workspace.open(args.workspace) as workspace:
        child = merge_clusters(workspace, args.clustering, clusters)
        into = child.params["merge"]["into"]
        return describe(workspace, child, f"clustering {child.id}: clusters {clusters} of {args.clustering} merged into {into}")


def describe(workspace: Workspace, clustering, headline: str) -> Result:
    """A clustering's sizes and, with ground truth, its scores (per cluster: majority and purity)."""

    scores = evaluate_clustering(workspace, clustering.id)
    per_cluster = {p.cluster: p for p in scores.per_cluster}
    lines = [f"{headline}: {len(clustering.image_ids)} images, k={clustering.k} ({clustering.algorithm} on {clustering.space}, {clustering.feature_set})"]
    for cluster, size in clustering.sizes().items():
        purity = per_cluster.get(cluster)
        lines.append(f"  cluster {cluster}: {size} images" + (f", {purity.purity:.0%} {purity.majority}" if purity else ""))
    if scores.evaluated:
        lines.append(
            f"  against ground truth ({scores.evaluated} images): purity {scores.purity:.3f}, Hungarian accuracy "
            f"{scores.hungarian_accuracy:.3f}, adjusted Rand {scores.adjusted_rand:.3f}, NMI {scores.nmi:.3f}"
        )
    if scores.silhouette is not None:
        lines.append(f"  silhouette {scores.silhouette:.3f}")
    data = {"ok": True, "clustering_id": clustering.id, **clustering.summary(), "metrics": scores.to_dict()}
    return Result(data, "\n".join(lines))


def run_suggest_k(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        suggestion = suggest_k(
            workspace, args.features, range(args.k_min, args.k_max + 1), args.algorithm,
            progress=ProgressLine("trying k"), **space_arguments(args),
        )
    lines = ["    k      inertia  silhouette"]
    for k, inertia, score in zip(suggestion.ks, suggestion.inertia, suggestion.silhouette):
        lines.append(f"  {k:3d}  {inertia:11.4g}  {'-' if score is None else f'{score:10.3f}'}")
    lines.append(f"elbow at k={suggestion.elbow_k}; best silhouette at k={suggestion.silhouette_k}")
    return Result({"ok": True, **suggestion.to_dict()}, "\n".join(lines))


def run_link(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        links = link_across_days(workspace, args.clustering, mutual=not args.any)
    changes = [link for link in links if link.cluster != link.next_cluster]
    lines = [f"{len(links)} links between consecutive days, {len(changes)} of them change cluster:"]
    lines += [f"  subject {l.subject}: {l.day} cluster {l.cluster} -> {l.next_day} cluster {l.next_cluster}" for l in changes]
    return Result({"ok": True, "links": [asdict(link) for link in links]}, "\n".join(lines))


def run_clusterings(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        rows = list_clusterings(workspace)
    lines = [
        f"clustering {r['id']}: {r['algorithm']} k={r['k']} on {r['space']} of {r['feature_set']}, {r['images']} images"
        + (f", sample {r['sample_id']}" if r["sample_id"] else "")
        + (f", from clustering {r['parent_id']}" if r["parent_id"] else "")
        for r in rows
    ]
    return Result({"ok": True, "clusterings": rows}, "\n".join(lines) or "no clusterings yet")

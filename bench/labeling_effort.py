"""Labeling effort: interactions an oracle needs to reach 95% of the supervised macro F1.

Runs :func:`serieslabeler.simulation.engine.simulate` (every scenario, 3 seeds) on

- bananas (ripeness U/R/V/O, 220 images of 11 fruits), once each with ``efficientnet_lite0@imagenet``
  features, that network's inner-layer statistics (``efficientnet_lite0_texture``) and the
  ``colour`` histogram (``--bananas-features``), subjects = fruits, ``days`` = days since the fruit's first photo; the labels are
  ordered stages (U < R < V < O), so bananas also get the ``series`` scenario (the expert places
  each fruit's stage boundaries, then accepts or corrects the model's monotone proposals) and
  ``full`` labels its structure-aware sample by boundaries, routes the series decoded confidently
  throughout to review and labels the rest by proposals (it clusters nothing on ordered stages);
- scikit-learn's digits (10 classes, 1797 8x8 images), the 64 pixel values as features. The
  data carries no writer ids (it is the UCI optdigits test set, written by 13 people, with
  nothing saying which image is whose), so one subject per writer cannot be inferred.
  Pseudo-subjects are blocks of 30 consecutive images (60 of them); if the file is ordered by
  writer they approximate writer groups, otherwise they are random groups. There are no dates,
  so the full loop's metadata weighting has nothing to add there.

and prints, per scenario (the semi-supervised ``overcluster`` and ``vae`` train networks, so by
default they run on bananas only: ``--network-scenarios all`` adds digits, where they take minutes), the interactions needed to reach 95% of the macro F1 of the same
classifier trained on every pool image's true label, as a share of the pool images (labeling
every image one by one = 100%), averaged over the seeds that reached it within the budget
(half the pool), the held-out macro F1 raw and decoded monotone along each test fruit side by
side, images labeled per interaction and the labels' error rate, and, for ordered collections,
the issue-13 targets per seed (95% of the supervised macro F1 within 10% of the interactions;
at least 10 images per interaction at 95% label precision). References: 18% (CIFAR-10) and 13% (EuroSAT) in "Weakly supervised active
learning with cluster annotation". Then random vs structure-aware (``subjects``) sampling at
equal budget, fully labeled (the Plud paper: 74.5% vs 76.7% accuracy), and, on bananas, the
full loop with the ``days`` metadata at shares of variance 0, 0.5 (the default) and 0.8.

Usage::

    .venv/bin/python bench/labeling_effort.py [--workspace WS] [--seeds 3] [--out DIR] [--network-scenarios bananas|all|none]
    .venv/bin/python bench/labeling_effort.py --only bananas --scenarios overcluster,vae
    .venv/bin/python bench/labeling_effort.py --only bananas --scenarios series,full --seeds 5 --bananas-features colour
    .venv/bin/python bench/labeling_effort.py --only bananas --scenarios series,full --seeds 5 --boundary-tolerance 1

``--boundary-tolerance 1``: the oracle leaves a proposed boundary one photo off where it is (its
labels' precision pays for the interactions saved).

The metadata sweep and the sampling comparison use the first of ``--bananas-features``.
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from serieslabeler.demo import SAMPLE_MAPPING
from serieslabeler.embed import embed_workspace
from serieslabeler.ingest import ingest
from serieslabeler.simulation import (
    NETWORK_SCENARIOS,
    OFFSET_BINS,
    ORDERED_SCENARIOS,
    SCENARIOS,
    Collection,
    SimulationConfig,
    compare_sampling,
    proposal_ceiling,
    simulate,
    write_result,
)
from serieslabeler.store import Workspace

ROOT = Path(__file__).resolve().parent.parent

BANANAS = ROOT / "tests" / "data" / "bananas"
MAPPING = SAMPLE_MAPPING  # the bundled sample's columns: the full collection has the same
DIGITS_BLOCK = 30
RIPENESS = ("U", "R", "V", "O")
BANANAS_FEATURES = ("efficientnet_lite0", "efficientnet_lite0_texture", "colour")
TARGET_SHARE, TARGET_IMAGES, TARGET_PRECISION = 0.10, 10.0, 0.95


def bananas(folder: Path, backbone: str = "efficientnet_lite0") -> Collection:
    workspace = Workspace.create(folder)
    if workspace.image_count() == 0:
        ingest(workspace, BANANAS / "images", BANANAS / "metadata.csv", MAPPING)
    report = embed_workspace(workspace, backbone)
    collection = Collection.from_workspace(workspace, report.feature_set)
    collection.name = f"bananas (ripeness, {backbone})"
    collection.order = RIPENESS
    return collection


def digits() -> Collection:
    from sklearn.datasets import load_digits

    data = load_digits()
    subjects = np.arange(len(data.target)) // DIGITS_BLOCK
    return Collection("digits (pixels, pseudo-subjects of 30)", data.data, data.target, subjects,
                      note="no writer ids: pseudo-subjects are blocks of 30 consecutive images")


def _share(value: float | None, never: str = "-") -> str:
    return never if value is None else f"{100 * value:.1f}%"


def effort_table(collection: Collection, seeds: list[int], config: SimulationConfig, out: Path | None, scenarios=SCENARIOS) -> None:
    start = time.perf_counter()
    scenarios = [s for s in scenarios if collection.order is not None or s not in ORDERED_SCENARIOS]
    result = simulate(collection, scenarios, seeds, config)
    pool = np.mean([r.pool_size for r in result.runs])
    print(f"\n## {collection.name}: {len(collection.X)} images, pool {pool:.0f} / test {len(collection.X) - pool:.0f} "
          f"per seed (subject-grouped), seeds {seeds}, {time.perf_counter() - start:.0f} s"
          + (f", ordered {' < '.join(collection.order)}" if collection.order else ""))
    print(f"supervised macro F1 (every pool label): {np.mean([r.supervised_f1 for r in result.runs]):.3f}")
    print("| scenario          | interactions to 95% (share of pool) | reached | per seed                  | final macro F1 raw / decoded "
          "| images per interaction | label errors | cluster-label errors |")
    print("|-------------------|-------------------------------------|---------|---------------------------|------------------------------"
          "|------------------------|--------------|----------------------|")
    for row in result.table():
        runs = [r for r in result.runs if r.scenario == row["scenario"]]
        per_seed = ", ".join("-" if r.interactions_to_reach() is None else f"{100 * r.interactions_to_reach() / r.pool_size:.1f}%" for r in runs)
        share = _share(row["fraction_to_95_reached_runs"], "never (budget 50%)")
        decoded = "-" if row["final_decoded_macro_f1"] is None else f"{row['final_decoded_macro_f1']:.3f}"
        per_interaction = "-" if row["images_per_interaction"] is None else f"{row['images_per_interaction']:.1f}"
        print(f"| {row['scenario']:17s} | {share:35s} | {row['reached']}/{row['seeds']}     | {per_seed:25s} "
              f"| {row['final_macro_f1']:.3f} / {decoded:20s} | {per_interaction:22s} | {_share(row['label_error_rate']):12s} "
              f"| {_share(row['cluster_label_error_rate']):20s} |")
    if collection.order is not None:
        target_check(result)
        ceiling_line(collection, config)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"labeling_effort_{'_'.join(re.findall(r'[a-z0-9]+', collection.name.lower()))}.csv"
        write_result(result, path)
        print(f"curves: {path}")


def target_check(result) -> None:
    """Per ordered scenario and seed: the share of interactions to 95% (raw and decoded held-out
    F1) against the 10% target, and images per interaction at the labels' precision."""
    print(f"\ntargets: 95% of the supervised macro F1 within {TARGET_SHARE:.0%} of the interactions in every seed; "
          f">= {TARGET_IMAGES:.0f} images per interaction at >= {TARGET_PRECISION:.0%} label precision")
    for scenario in ORDERED_SCENARIOS + ("full",):
        runs = [r for r in result.runs if r.scenario == scenario]
        if not runs:
            continue
        rows = []
        for run in runs:
            raw, decoded = run.interactions_to_reach(), run.interactions_to_reach(decoded=True)
            rows.append((None if raw is None else raw / run.pool_size, None if decoded is None else decoded / run.pool_size,
                         run.images_per_interaction, 1 - (run.label_error_rate or 0.0)))
        shares = ", ".join(f"{_share(r)}/{_share(d)}" for r, d, _, _ in rows)
        met_share = all(r is not None and r <= TARGET_SHARE for r, _, _, _ in rows)
        met_decoded = all(d is not None and d <= TARGET_SHARE for _, d, _, _ in rows)
        met_images = all(i is not None and i >= TARGET_IMAGES and p >= TARGET_PRECISION for _, _, i, p in rows)
        images = ", ".join(f"{i:.1f}@{100 * p:.0f}%" for _, _, i, p in rows)
        print(f"  {scenario}: share to 95% raw/decoded per seed {shares} -> raw {'met' if met_share else 'MISSED'}, "
              f"decoded {'met' if met_decoded else 'MISSED'}; images per interaction at precision {images} -> "
              f"{'met' if met_images else 'MISSED'}")
        proposals = [r for r in runs if r.proposal_corrections]
        if proposals:
            corrections = ", ".join(f"{r.corrections_per_proposal:.2f}" for r in proposals)
            ceiling = ", ".join(f"{r.images_per_interaction_exact_proposals:.1f}" for r in proposals)
            print(f"    boundaries corrected per model proposal, per seed: {corrections}; "
                  f"images per interaction had every proposal been exact (same first sample): {ceiling}")
            offsets = {name: sum(r.proposal_boundary_offsets[name] for r in proposals) for name in OFFSET_BINS}
            total = sum(offsets.values())
            print(f"    proposed boundaries, all seeds ({total}), photos from the true one: " + _offset_shares(offsets))


def _offset_shares(offsets: dict[str, int]) -> str:
    total = sum(offsets.values())
    return ", ".join(f"{name} {100 * count / total:.0f}%" for name, count in offsets.items())


def ceiling_line(collection: Collection, config: SimulationConfig) -> None:
    """Proposals from a model trained on every other subject's true stages: what these features allow."""
    ceiling = proposal_ceiling(collection, config)
    print(f"  {ceiling.format()}; per subject {', '.join(str(c) for c in ceiling.corrections.values())}; "
          f"proposed boundaries, photos from the true one: {_offset_shares(ceiling.offset_counts)}")


def metadata_sweep(collection: Collection, seeds: list[int], weights=(0.0, 0.5, 0.8)) -> None:
    """The full loop with the ``days`` field at several shares of the variance (0 = off)."""
    print(f"\n## {collection.name}: full loop vs the share of variance given to 'days' when clustering")
    for weight in weights:
        result = simulate(collection, ["full"], seeds, SimulationConfig(metadata_weight=weight))
        row = result.table()[0]
        share = row["fraction_to_95_reached_runs"]
        share = "never" if share is None else f"{100 * share:.1f}%"
        print(f"  days={weight:.1f}: interactions to 95% {share} (reached {row['reached']}/{row['seeds']}), "
              f"final macro F1 {row['final_macro_f1']:.3f}")


def sampling_table(collection: Collection, subjects: int, seeds: list[int]) -> None:
    row = compare_sampling(collection, subjects, seeds)
    print(f"\n{collection.name}: {subjects} subjects (all their pool images) vs as many random images, all labeled, "
          f"mean of {len(seeds)} seeds")
    for name in ("random", "subjects"):
        print(f"  {name:8s}: accuracy {100 * row[name]['accuracy']:.1f}%, macro F1 {row[name]['macro_f1']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="a bananas workspace to reuse (made if missing)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", help="folder for the curves (CSV per collection)")
    parser.add_argument("--network-scenarios", default="bananas", choices=["bananas", "all", "none"],
                        help=f"where {' and '.join(NETWORK_SCENARIOS)} run (default bananas: on digits they take minutes per seed)")
    parser.add_argument("--only", choices=["bananas", "digits"], help="one collection, effort table only")
    parser.add_argument("--scenarios", help="comma-separated scenarios (default: all, as --network-scenarios allows)")
    parser.add_argument("--bananas-features", default=",".join(BANANAS_FEATURES),
                        help=f"comma-separated backbones bananas is embedded with, one table each (default {','.join(BANANAS_FEATURES)})")
    parser.add_argument("--boundary-tolerance", type=int, default=0, metavar="PHOTOS",
                        help="the oracle leaves a proposed stage boundary this many photos off where it is (default 0)")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    out = Path(args.out) if args.out else None
    config = SimulationConfig(boundary_tolerance=args.boundary_tolerance)
    print(f"# config: {config}")
    chosen = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.workspace or Path(tmp) / "bananas")
        features = args.bananas_features.split(",")
        collections = {"bananas": [lambda b=b: bananas(folder, b) for b in features], "digits": [digits]}
        if args.only:
            collections = {args.only: collections[args.only]}
        made = {}
        for name, makers in collections.items():
            with_networks = args.network_scenarios == "all" or args.network_scenarios == name
            scenarios = [s for s in chosen if with_networks or s not in NETWORK_SCENARIOS]
            for make in makers:
                collection = make()
                made.setdefault(name, collection)
                if scenarios:
                    effort_table(collection, seeds, config, out, scenarios)
        if args.only:
            return
        metadata_sweep(made["bananas"], seeds)
        print("\n## Random vs structure-aware sampling at equal budget")
        sampling_table(made["bananas"], 3, seeds)
        sampling_table(made["digits"], 5, seeds)


if __name__ == "__main__":
    main()

"""simulation.records"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.loop.evaluate import ground_truth
from serieslabeler.models.features import ensure_features
from serieslabeler.space.metadata import metadata_frame
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import write_atomic

SCENARIOS = ("random", "uncertain-only", "cluster-only", "uncertain+cluster", "cluster+uncertain", "full", "overcluster", "vae")


# the scenarios that train a network (issue 9): slower, on a CPU seconds per pass
NETWORK_SCENARIOS = ("overcluster", "vae")


REACH = 0.95


# --- the collection and the settings ----------------------------------------------------------
@dataclass
class Collection:
    """Arrays for one labeled collection: features, ground truth, subjects, days since first image."""

    name: str
    X: np.ndarray
    truth: np.ndarray
    subjects: np.ndarray
    days: np.ndarray | None = None
    note: str = ""

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float32)
        self.truth = np.asarray([str(v) for v in self.truth])
        self.subjects = np.asarray(self.subjects)
        n = len(self.X)
        if not (len(self.truth) == len(self.subjects) == n and (self.days is None or len(self.days) == n)):
            raise PipelineError(f"collection '{self.name}': features, truth, subjects and days must have one row per image")

    @classmethod
    def from_workspace(cls, workspace, feature_set: str) -> "Collection":
        """The ground-truth images of a workspace with their vectors of ``feature_set``."""

        name = FeatureStore(workspace).resolve(feature_set)
        ids, truth, subjects = ground_truth(workspace)
        ensure_features(workspace, name, ids)
        _, X = FeatureStore(workspace).load(name, ids)
        days = metadata_frame(workspace, ids, ["days"])["days"].to_numpy(dtype=float)
        return cls(f"{workspace.root.name} ({name})", X, truth, subjects, days)


@dataclass
class SimulationConfig:
    """Settings of a simulation.

    ``purity``: the oracle's least share of the modal class to label a cluster; ``cluster_size``:
    images per cluster (k = images / size); ``cluster_batch``: images per clustered batch
    (uncertain+cluster, and the structure-aware samples of full); ``batch``: images per batch of
    single-image labeling; ``chunk``: interactions between two evaluations; ``budget``: stop
    after this many interactions per pool image; ``test_size``: share of subjects held out;
    ``metadata_weight``: share of variance of ``days`` when the full loop clusters;
    ``target_precision``: the full loop's routing threshold reaches this on its labels;
    ``review_pseudo``: the oracle reviews pseudo-labels (else they stay pending, unused);
    ``C``: the head classifier's regularization; ``a``: distance weight of cluster-label confidence;
    ``network_epochs``: training epochs of the networks of ``overcluster`` and ``vae`` (per fit:
    each ``overcluster`` pass, the ``vae`` pretraining and each of its labeled fits);
    ``overcluster_factor``: overclusters per labeled class.
    """

    purity: float = 0.8
    cluster_size: int = 10
    cluster_batch: int = 60
    batch: int = 20
    chunk: int = 5
    budget: float = 0.5
    test_size: float = 0.25
    algorithm: str = "kmeans"
    metadata_weight: float = 0.5
    target_precision: float = 0.95
    review_pseudo: bool = True
    C: float = 0.1
    a: float = 1.0
    network_epochs: int = 10
    overcluster_factor: int = 5


# --- results ----------------------------------------------------------------------------------
@dataclass
class CurvePoint:
    interactions: int
    labeled: int
    macro_f1: float
    top1: float
    cluster_labeled: int
    cluster_errors: int
    pseudo_accepted: int


@dataclass
class ScenarioRun:
    """One scenario under one seed: the curve, the reference score, and what the oracle saw."""

    scenario: str
    seed: int
    pool_size: int
    test_size: int
    supervised_f1: float
    curve: list[CurvePoint]
    test_ids: np.ndarray = field(repr=False)
    oracle_asked: set[int] = field(repr=False)
    pseudo_routed: int = 0
    pseudo_routed_correct: int = 0

    def interactions_to_reach(self, share: float = REACH) -> int | None:
        """Interactions at the first evaluation reaching ``share`` of the supervised macro F1."""
        for point in self.curve:
            if point.macro_f1 >= share * self.supervised_f1:
                return point.interactions
        return None

    @property
    def cluster_label_error_rate(self) -> float | None:
        last = self.curve[-1] if self.curve else None
        return last.cluster_errors / last.cluster_labeled if last and last.cluster_labeled else None

    def summary(self) -> dict:
        reached = self.interactions_to_reach()
        return {
            "scenario": self.scenario, "seed": self.seed, "pool": self.pool_size, "test": self.test_size,
            "supervised_f1": self.supervised_f1, "interactions_to_95": reached,
            "fraction_to_95": None if reached is None else reached / self.pool_size,
            "final_macro_f1": self.curve[-1].macro_f1 if self.curve else None,
            "final_interactions": self.curve[-1].interactions if self.curve else 0,
            "cluster_label_error_rate": self.cluster_label_error_rate,
            "pseudo_precision_before_review": self.pseudo_routed_correct / self.pseudo_routed if self.pseudo_routed else None,
        }


@dataclass
class SimulationResult:
    collection: str
    config: SimulationConfig
    runs: list[ScenarioRun]

    def rows(self) -> list[dict]:
        """The curves, one row per evaluation (for CSV)."""
        return [{"collection": self.collection, "scenario": r.scenario, "seed": r.seed, "pool": r.pool_size,
                 "supervised_f1": r.supervised_f1, **asdict(p)} for r in self.runs for p in r.curve]

    def table(self) -> list[dict]:
        """Per scenario, over seeds: mean interactions (and share of the pool) to reach 95%."""
        out = []
        for scenario in dict.fromkeys(r.scenario for r in self.runs):
            runs = [r for r in self.runs if r.scenario == scenario]
            reached = [r.interactions_to_reach() for r in runs]
            fractions = [x / r.pool_size for x, r in zip(reached, runs) if x is not None]
            errors = [r.cluster_label_error_rate for r in runs if r.cluster_label_error_rate is not None]
            out.append({
                "scenario": scenario, "seeds": len(runs), "reached": len(fractions),
                "fraction_to_95": float(np.mean(fractions)) if len(fractions) == len(runs) else None,
                "fraction_to_95_reached_runs": float(np.mean(fractions)) if fractions else None,
                "final_macro_f1": float(np.mean([r.curve[-1].macro_f1 for r in runs if r.curve])),
                "supervised_f1": float(np.mean([r.supervised_f1 for r in runs])),
                "cluster_label_error_rate": float(np.mean(errors)) if errors else None,
            })
        return out

    def to_json(self) -> dict:
        return {"collection": self.collection, "config": asdict(self.config), "table": self.table(),
                "runs": [r.summary() for r in self.runs], "curves": self.rows()}

    def to_csv(self) -> str:
        rows = self.rows()
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return buffer.getvalue()

    def format(self) -> str:
        lines = [f"{self.collection}: interactions to reach {REACH:.0%} of the supervised macro F1, as a share of the pool",
                 f"{'scenario':<20} {'share':>8} {'reached':>8} {'final F1':>9} {'supervised':>10} {'cluster err':>11}"]
        for row in self.table():
            share = "-" if row["fraction_to_95"] is None else f"{100 * row['fraction_to_95']:.1f}%"
            error = "-" if row["cluster_label_error_rate"] is None else f"{100 * row['cluster_label_error_rate']:.1f}%"
            lines.append(f"{row['scenario']:<20} {share:>8} {row['reached']:>4}/{row['seeds']:<3} "
                         f"{row['final_macro_f1']:9.3f} {row['supervised_f1']:10.3f} {error:>11}")
        return "\n".join(lines)


def write_result(result: SimulationResult, path) -> None:
    """Save the curves: ``.csv`` (one row per evaluation) or ``.json`` (table, runs and curves)."""

    path = Path(path)
    if path.suffix == ".json":
        write_atomic(path, json.dumps(result.to_json(), indent=1, default=str).encode())
    elif path.suffix == ".csv":
        write_atomic(path, result.to_csv().encode())
    else:
        raise PipelineError(f"{path}: write the curves to a .csv or a .json file")

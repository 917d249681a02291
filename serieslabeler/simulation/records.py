"""simulation.records"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from serieslabeler.errors import PipelineError
from serieslabeler.labels.vocabulary import vocabulary_order
from serieslabeler.loop.support import SUPPORT_QUANTILE
from serieslabeler.models.evaluation import ground_truth
from serieslabeler.models.features import ensure_features
from serieslabeler.space.metadata import metadata_frame
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import write_atomic

SCENARIOS = ("random", "uncertain-only", "cluster-only", "uncertain+cluster", "cluster+uncertain", "full", "overcluster", "vae", "series")


# the scenarios that need an ordered vocabulary (stages)
ORDERED_SCENARIOS = ("series",)


# the scenarios that train a network (issue 9): slower, on a CPU seconds per pass
NETWORK_SCENARIOS = ("overcluster", "vae")


REACH = 0.95


# how far a proposed boundary was from the true one, in photos (the last: a stage only one of them has)
OFFSET_BINS = ("exact", "1", "2", "3+", "missed or invented")


def _offset_bin(offset: int | None) -> str:
    """The :data:`OFFSET_BINS` name of a boundary ``offset`` photos off (None: missed or invented)."""
    if offset is None:
        return OFFSET_BINS[-1]
    return OFFSET_BINS[min(offset, len(OFFSET_BINS) - 2)]


def offset_counts(offsets) -> dict[str, int]:
    """Proposed boundaries per :data:`OFFSET_BINS` bin, from their offsets in photos."""
    counts = dict.fromkeys(OFFSET_BINS, 0)
    for offset in offsets:
        counts[_offset_bin(offset)] += 1
    return counts


# --- the collection and the settings ----------------------------------------------------------
@dataclass
class Collection:
    """Arrays for one labeled collection: features, ground truth, subjects, days since first image,
    and the stage order when the labels are ordered stages (then each subject is one series)."""

    name: str
    X: np.ndarray
    truth: np.ndarray
    subjects: np.ndarray
    days: np.ndarray | None = None
    note: str = ""
    order: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float32)
        self.truth = np.asarray([str(v) for v in self.truth])
        self.subjects = np.asarray(self.subjects)
        n = len(self.X)
        if not (len(self.truth) == len(self.subjects) == n and (self.days is None or len(self.days) == n)):
            raise PipelineError(f"collection '{self.name}': features, truth, subjects and days must have one row per image")
        if self.order is not None:
            self.order = tuple(str(s) for s in self.order)
            if len(set(self.order)) != len(self.order) or len(self.order) < 2:
                raise PipelineError(f"collection '{self.name}': the stage order needs two or more distinct stages, not {list(self.order)}")

    def series_times(self) -> np.ndarray:
        """What orders a subject's images in time (days since its first image, else row order)."""
        return np.arange(len(self.X), dtype=float) if self.days is None else np.asarray(self.days, dtype=float)

    @classmethod
    def from_workspace(cls, workspace, feature_set: str, order=None) -> "Collection":
        """The ground-truth images of a workspace with their vectors of ``feature_set``; ``order``
        (default: the workspace's ordered vocabulary, if any) makes its labels stages."""

        name = FeatureStore(workspace).resolve(feature_set)
        ids, truth, subjects = ground_truth(workspace)
        if order is not None:
            check_order(order, truth)
        ensure_features(workspace, name, ids)
        _, X = FeatureStore(workspace).load(name, ids)
        days = metadata_frame(workspace, ids, ["days"])["days"].to_numpy(dtype=float)
        order = vocabulary_order(workspace) if order is None else order
        return cls(f"{workspace.root.name} ({name})", X, truth, subjects, days, order=None if order is None else tuple(order))


def check_order(order, truth) -> None:
    """Refuse a given stage order (``--order``) holding a stage no ground-truth image has (a
    typo, most likely). Ground-truth labels outside the order are allowed: the oracle clicks
    those images out of their series as not belonging (a stake, a blurred shot)."""
    present = {str(v) for v in truth}
    unused = [str(stage) for stage in order if str(stage) not in present]
    if unused:
        raise PipelineError(f"--order {','.join(map(str, order))}: no ground-truth image is {', '.join(unused)} "
                            f"(the ground truth holds {', '.join(sorted(present))})")


@dataclass
class SimulationConfig:
    """Settings of a simulation.

    ``purity``: the oracle's least share of the modal class to label a cluster; ``cluster_size``:
    images per cluster (k = images / size); ``cluster_batch``: images per clustered batch
    (uncertain+cluster, and the structure-aware samples of full); ``batch``: images per batch of
    single-image labeling; ``chunk``: interactions between two evaluations; ``budget``: stop
    after this many interactions per pool image; ``test_size``: share of subjects held out;
    ``metadata_weight``: share of variance of ``days`` when the full loop clusters;
    ``target_precision``: the full loop's routing threshold reaches this on its labels (no threshold
    while a class has fewer than ``MIN_CLASS_LABELS`` labels, as the tool suggests none);
    ``review_pseudo``: the oracle reviews pseudo-labels (else they stay pending, unused);
    ``C``: the head classifier's regularization; ``a``: distance weight of cluster-label confidence;
    ``network_epochs``: training epochs of the networks of ``overcluster`` and ``vae`` (per fit:
    each ``overcluster`` pass, the ``vae`` pretraining and each of its labeled fits);
    ``overcluster_factor``: overclusters per labeled class; ``uncertain_batch``: images per
    uncertain batch of ``uncertain+cluster`` (single images once batches stop yielding labels);
    ``series_subjects``: subjects of the ``series`` scenario's first sample, random ones (0: as
    many as a structure-aware ``cluster_batch`` holds); only the first series is placed by hand,
    every later one comes with a proposal; ``support``: the full loop routes only images inside
    its labels' support at this quantile, as ``route`` does (None: every confident image);
    ``boundary_tolerance``: photos a proposed stage boundary may be off before the oracle moves it
    (0: every boundary exact; see :meth:`~serieslabeler.loop.oracle.Oracle.answer_series`).
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
    uncertain_batch: int = 60
    series_subjects: int = 0
    support: float | None = SUPPORT_QUANTILE
    boundary_tolerance: int = 0


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
    label_errors: int = 0
    decoded_macro_f1: float | None = None


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
    proposal_corrections: list[int] = field(default_factory=list)
    proposal_excess: int = 0
    pseudo_rejected: int = 0  # confident predictions in a label the oracle had taken from the image: not reviewed
    proposal_offsets: list[int | None] = field(default_factory=list)

    def interactions_to_reach(self, share: float = REACH, decoded: bool = False) -> int | None:
        """Interactions at the first evaluation reaching ``share`` of the supervised macro F1
        (``decoded``: of the test predictions decoded monotone along each test subject)."""
        for point in self.curve:
            score = point.decoded_macro_f1 if decoded else point.macro_f1
            if score is not None and score >= share * self.supervised_f1:
                return point.interactions
        return None

    @property
    def images_per_interaction(self) -> float | None:
        last = self.curve[-1] if self.curve else None
        return last.labeled / last.interactions if last and last.interactions else None

    @property
    def corrections_per_proposal(self) -> float | None:
        """Mean boundaries the oracle placed, moved or removed per model proposal (series scenarios)."""
        return float(np.mean(self.proposal_corrections)) if self.proposal_corrections else None

    @property
    def proposal_boundary_offsets(self) -> dict[str, int] | None:
        """The proposals' boundaries by how far each was from the true one: ``exact``, ``1``,
        ``2``, ``3+`` photos off, and ``missed or invented`` (a stage only one of them has)."""
        if not self.proposal_corrections:
            return None
        return offset_counts(self.proposal_offsets)

    @property
    def images_per_interaction_exact_proposals(self) -> float | None:
        """Images per interaction had every proposal been exactly right (1 interaction each): the
        ceiling that better proposals could reach with the same first sample."""
        last = self.curve[-1] if self.curve else None
        if not self.proposal_corrections or not last:
            return None
        return last.labeled / (last.interactions - self.proposal_excess)

    @property
    def label_error_rate(self) -> float | None:
        """Share of the labels at the end (every source) that differ from the ground truth."""
        last = self.curve[-1] if self.curve else None
        return last.label_errors / last.labeled if last and last.labeled else None

    @property
    def cluster_label_error_rate(self) -> float | None:
        last = self.curve[-1] if self.curve else None
        return last.cluster_errors / last.cluster_labeled if last and last.cluster_labeled else None

    def summary(self) -> dict:
        reached = self.interactions_to_reach()
        return json_safe({
            "scenario": self.scenario, "seed": self.seed, "pool": self.pool_size, "test": self.test_size,
            "supervised_f1": self.supervised_f1, "interactions_to_95": reached,
            "fraction_to_95": None if reached is None else reached / self.pool_size,
            "final_macro_f1": self.curve[-1].macro_f1 if self.curve else None,
            "final_interactions": self.curve[-1].interactions if self.curve else 0,
            "cluster_label_error_rate": self.cluster_label_error_rate,
            "pseudo_precision_before_review": self.pseudo_routed_correct / self.pseudo_routed if self.pseudo_routed else None,
            "pseudo_rejected": self.pseudo_rejected,
            "images_per_interaction": self.images_per_interaction, "label_error_rate": self.label_error_rate,
            "final_decoded_macro_f1": self.curve[-1].decoded_macro_f1 if self.curve else None,
            "interactions_to_95_decoded": self.interactions_to_reach(decoded=True),
            "proposals": len(self.proposal_corrections), "corrections_per_proposal": self.corrections_per_proposal,
            "images_per_interaction_exact_proposals": self.images_per_interaction_exact_proposals,
            "proposal_boundary_offsets": self.proposal_boundary_offsets,
        })


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
                "images_per_interaction": _mean_or_none([r.images_per_interaction for r in runs]),
                "label_error_rate": _mean_or_none([r.label_error_rate for r in runs]),
                "final_decoded_macro_f1": _mean_or_none([r.curve[-1].decoded_macro_f1 for r in runs if r.curve]),
                "corrections_per_proposal": _mean_or_none([r.corrections_per_proposal for r in runs]),
            })
        return json_safe(out)

    def to_json(self) -> dict:
        return json_safe({"collection": self.collection, "config": asdict(self.config), "table": self.table(),
                          "runs": [r.summary() for r in self.runs], "curves": self.rows()})

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
                 f"{'scenario':<20} {'share':>8} {'reached':>8} {'final F1':>9} {'decoded':>8} {'supervised':>10} "
                 f"{'cluster err':>11} {'img/int':>8} {'label err':>9}"]
        for row in self.table():
            lines.append(f"{row['scenario']:<20} {_percent(row['fraction_to_95']):>8} {row['reached']:>4}/{row['seeds']:<3} "
                         f"{_number(row['final_macro_f1']):>9} {_number(row['final_decoded_macro_f1']):>8} "
                         f"{_number(row['supervised_f1']):>10} {_percent(row['cluster_label_error_rate']):>11} "
                         f"{_number(row['images_per_interaction'], 1):>8} {_percent(row['label_error_rate']):>9}")
        return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mean_or_none(values) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def json_safe(value):
    """``value`` with every NaN or infinite float replaced by None (valid JSON: null)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_result(result: SimulationResult, path) -> None:
    """Save the curves: ``.csv`` (one row per evaluation) or ``.json`` (table, runs and curves)."""

    path = Path(path)
    if path.suffix == ".json":
        write_atomic(path, json.dumps(result.to_json(), indent=1, default=str, allow_nan=False).encode())
    elif path.suffix == ".csv":
        write_atomic(path, result.to_csv().encode())
    else:
        raise PipelineError(f"{path}: write the curves to a .csv or a .json file")

"""Threshold honesty: the precision the tool promises at its chosen threshold vs the precision of
the labels it then routes, before and after issue 17, and how often an audit's interval holds.

On two collections, per seed, labels are made the way a user makes them: the classes declared
as the vocabulary, a structure-aware sample (all images of a few subjects), clustered (k-means, k = 3 x the classes; bananas with the
``days`` field at 0.5 of the variance), each cluster named by the ground truth when one class
holds 80% of it, misfits clicked out (:func:`serieslabeler.loop.label_with_oracle`, the
:class:`~serieslabeler.loop.Oracle`). A head is trained on them and predicts every unlabeled
image (the pool). Then, for ``--target`` precision:

- *before*: the old estimate: out-of-fold precision of the labels, unweighted, raw confidences
  (``tune_thresholds`` on :func:`serieslabeler.loop.model_oof`); the pool images at or above the
  chosen threshold are routed;
- *after*: :func:`serieslabeler.loop.validation_curves` (weighted for how the labels were
  chosen, calibrated); the pool is routed with the stored calibration applied, only inside the
  labels' support (:mod:`serieslabeler.loop.support`) and never into a label the expert rejected
  for the image (a misfit clicked out of a cluster of it: :mod:`serieslabeler.labels.rejections`),
  as ``route`` does; the confident images held back are counted, with the precision routing all
  of them would have had. While a vocabulary
  class has fewer than ``MIN_CLASS_LABELS`` (10) labels the tool suggests no threshold (nothing is
  routed); the user then does what it advises: labels coreset images (the least like any label)
  one by one, 5 at a time, until every class has 10 (at most 100), trains again, and the promise
  and the routed labels' precision are measured once more (a second table). Before this rule the
  tool suggested a threshold as soon as every class had one label, and on bananas promised 15 to
  33 points more than the routed labels reached.

For each: the promised precision, the precision of the routed images against the ground truth,
and how many were routed. ECE is measured on the pool against the ground truth, with raw and
with calibrated confidences (and, as the tool reports it, out of fold on the labels). Finally,
200 simulated audits (30 images, class-stratified, seeded) of the images routed *after*: the
share whose 95% interval holds the routed images' true precision, and the estimate of one such
audit (what the tool reports as the trusted figure once an audit is answered) against the truth.
Each summary also says how often a promise with no bias at all would land within 5 points, given
its own interval and the number of images routed (:func:`unbiased_chance`): with a hundred images
routed and some sixty labels behind the promise, chance alone puts it more than 5 points off in
some seeds, so "within 5 points in every seed" is then out of any estimate's reach.

Collections: bananas (``tests/data/bananas``, 220 images, 11 fruits x 20 days, ripeness U/R/V/O,
``efficientnet_lite0`` features as ``bench/labeling_effort.py`` embeds them; samples of 6
fruits) and scikit-learn's digits (1797 8x8 images, the 64 pixels as features, pseudo-subjects
of 30 consecutive images as in ``bench/labeling_effort.py``; samples of 15 of the 60).

Any other collection: ``--workspace WS --features FS`` measures a workspace of yours instead (one
ingested with its ground-truth column, ``--label COL``, embedded, and with no labels yet: the bench
labels copies of it, never the workspace itself), on samples of ``--subjects`` subjects (default a
quarter of them, at least 2), clustered with ``--metadata`` (e.g. ``days=0.5``; default none).

Usage::

    .venv/bin/python bench/threshold_honesty.py [--seeds 5] [--target 0.8] [--only bananas|digits] [--audits 200]
    .venv/bin/python bench/threshold_honesty.py --workspace WS --features efficientnet_lite0 [--subjects 4] [--metadata days=0.5]
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serieslabeler.cli.base import parse_key_values
from serieslabeler.clustering import run_clustering
from serieslabeler.demo import SAMPLE_MAPPING
from serieslabeler.embed import embed_workspace
from serieslabeler.errors import PipelineError
from serieslabeler.ingest import ColumnMapping, ingest
from serieslabeler.labels import add_labels, label_images, rejected_labels
from serieslabeler.loop import (
    Pool,
    ThresholdTuning,
    calibrated_proba,
    MIN_CLASS_LABELS,
    classes_short_of_labels,
    ground_truth,
    inside_support,
    label_with_oracle,
    model_oof,
    routed_pool,
    tune_thresholds,
    validation_curves,
)
from serieslabeler.metrics import (
    audit_precision,
    expected_calibration_error,
    stratified_audit_sample,
)
from serieslabeler.models import ModelRecord, load_model_record, predict, train_model
from serieslabeler.sampling import draw_sample
from serieslabeler.store import FeatureStore, Workspace
from serieslabeler.store.summary import label_counts

ROOT = Path(__file__).resolve().parent.parent
BANANAS = ROOT / "tests" / "data" / "bananas"
BANANAS_MAPPING = SAMPLE_MAPPING  # the bundled sample's columns: the full collection has the same
DIGITS_BLOCK = 30
AUDIT_SIZE = 30
COVER_BATCH = 5  # coreset images shown at a time when the tool asks for labels of the classes it lacks
COVER_BUDGET = 100


@dataclass(frozen=True)
class Setting:
    name: str
    feature_set: str
    subjects: int
    metadata: dict


@dataclass
class Outcome:
    seed: int
    labels: int
    promised: dict
    actual: dict
    routed: dict
    ece_pool: tuple[float, float]
    ece_oof: tuple[float, float]
    effective_n: float
    interval: tuple[float | None, float | None]
    audit_coverage: float | None
    audit_promise: float | None
    floor: float | None
    unchecked: float | None  # routed right after, had every confident image been routed (no support check)
    outside: int  # confident images held back: unlike every labeled image, or a label the expert rejected for them
    withheld: list  # vocabulary classes short of labels, with their counts: the tool then suggests no threshold
    covered: tuple | None  # (coreset images labeled to give every class enough labels, After) when it withheld one


def bananas_workspace(folder: Path) -> tuple[Path, Setting]:
    with Workspace.create(folder) as workspace:
        ingest(workspace, BANANAS / "images", BANANAS / "metadata.csv", BANANAS_MAPPING)
        feature_set = embed_workspace(workspace, "efficientnet_lite0").feature_set
    return folder, Setting("bananas (ripeness, efficientnet_lite0)", feature_set, 6, {"days": 0.5})


def digits_workspace(folder: Path) -> tuple[Path, Setting]:
    """The digits as a collection: one PNG per image (its index in a text chunk, so no two files
    are identical), a CSV with pseudo-subject, day and label, and the pixels as a feature set."""
    from PIL import Image, PngImagePlugin
    from sklearn.datasets import load_digits

    data = load_digits()
    images = folder.parent / "digits_images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (pixels, target) in enumerate(zip(data.images, data.target)):
        info = PngImagePlugin.PngInfo()
        info.add_text("index", str(index))
        picture = Image.fromarray((pixels * 15).astype(np.uint8)).resize((32, 32), Image.NEAREST).convert("RGB")
        picture.save(images / f"d{index:04d}.png", pnginfo=info)
        block, day = divmod(index, DIGITS_BLOCK)
        rows.append({"file": f"d{index:04d}.png", "writer": f"w{block:02d}", "date": f"2020-01-{1 + day:02d}", "digit": str(target)})
    with open(folder.parent / "digits.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with Workspace.create(folder) as workspace:
        ingest(workspace, images, folder.parent / "digits.csv", ColumnMapping(subject="writer", date="date", label="digit", file="file"))
        by_file = dict(workspace.db.execute("SELECT file_name, id FROM images").fetchall())
        ids = np.array([by_file[r["file"]] for r in rows], dtype=np.int64)
        store = FeatureStore(workspace)
        store.register("pixels", "pixels", "none", data.data.shape[1])
        store.append("pixels", ids, data.data.astype(np.float32))
    return folder, Setting("digits (pixels, pseudo-subjects of 30)", "pixels", 15, {})


def your_workspace(path: Path, features: str, subjects: int | None, metadata: dict) -> tuple[Path, Setting]:
    """A workspace of the user's as the collection: it needs ground truth, the feature set, and no
    labels (the bench labels from none, as a user starts)."""
    with Workspace.open(path) as workspace:
        _, _, subject_ids = ground_truth(workspace)
        feature_set = FeatureStore(workspace).resolve(features)
        labeled = sum(label_counts(workspace)["labels"].values())
    if labeled:
        raise PipelineError(f"{path} already has {labeled} labels; the bench labels from none, as a user starts: "
                            "use a workspace ingested with its ground truth and not labeled yet")
    count = len(np.unique(subject_ids))
    chosen = max(2, count // 4) if subjects is None else subjects
    if not 1 <= chosen < count:
        raise PipelineError(f"--subjects must be between 1 and {count - 1} (the collection has {count} subjects with ground truth), not {chosen}")
    return path, Setting(f"{path.name} ({feature_set}, samples of {chosen} of {count} subjects)", feature_set, chosen, metadata)


def label_like_a_user(workspace: Workspace, setting: Setting, seed: int) -> None:
    """Declare the classes (a user names them before labeling), then label a sample's clusters."""
    names = np.unique(ground_truth(workspace)[1])
    add_labels(workspace, names.tolist(), author="oracle")
    classes = len(names)
    sample = draw_sample(workspace, "subjects", subjects=setting.subjects, seed=seed)
    clustering = run_clustering(workspace, setting.feature_set, "kmeans", min(3 * classes, sample.size),
                                metadata=setting.metadata or None, sample_id=sample.id, seed=seed)
    label_with_oracle(workspace, clustering.id, 0.8)


def routed_mask(predicted: np.ndarray, confidence: np.ndarray, threshold: float | None) -> np.ndarray:
    """What ``route`` pseudo-labels: nothing without a threshold or for a one-class model."""
    if threshold is None or len(np.unique(predicted)) < 2:
        return np.zeros(len(predicted), dtype=bool)
    return confidence >= threshold


def precision_of(truth: np.ndarray, predicted: np.ndarray, routed: np.ndarray) -> float | None:
    """The share of the ``routed`` predictions that are right (None when nothing is routed)."""
    return float((truth[routed] == predicted[routed]).mean()) if routed.any() else None


def routed_precision(truth: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, threshold: float | None) -> tuple[float | None, int]:
    routed = routed_mask(predicted, confidence, threshold)
    return precision_of(truth, predicted, routed), int(routed.sum())


def audit_coverage(truth: np.ndarray, predicted: np.ndarray, audits: int, seed: int) -> float | None:
    """Share of simulated audits whose 95% interval holds the routed images' true precision."""
    if len(predicted) <= AUDIT_SIZE:
        return None
    true_precision = float((truth == predicted).mean())
    classes, counts = np.unique(predicted, return_counts=True)
    population = dict(zip(classes.tolist(), counts.tolist()))
    held = 0
    for k in range(audits):
        chosen = stratified_audit_sample(predicted, AUDIT_SIZE, random_state=seed * 10_000 + k)
        overall = audit_precision(predicted[chosen], truth[chosen], population_counts=population)["overall"]
        held += overall["low"] <= true_precision <= overall["high"]
    return held / audits


def one_audit(truth: np.ndarray, predicted: np.ndarray, seed: int) -> float | None:
    """The precision one 30-image audit of the routed images reports (what the tool then trusts)."""
    if len(predicted) <= AUDIT_SIZE:
        return None
    classes, counts = np.unique(predicted, return_counts=True)
    chosen = stratified_audit_sample(predicted, AUDIT_SIZE, random_state=seed)
    return audit_precision(predicted[chosen], truth[chosen], population_counts=dict(zip(classes.tolist(), counts.tolist())))["overall"]["estimate"]


@dataclass(frozen=True)
class After:
    """What the tool promises for a trained model, and what routing then does, as ``route`` does."""

    record: ModelRecord
    tuning: ThresholdTuning
    pool: Pool
    truth: np.ndarray
    calibrated: np.ndarray
    confident: np.ndarray
    routed: np.ndarray

    @property
    def promised(self) -> float | None:
        return self.tuning.choice.precision

    @property
    def actual(self) -> float | None:
        return precision_of(self.truth, self.pool.labels, self.routed)

    @property
    def promise(self) -> tuple:
        """``(low, high, actual, routed)``: the promise's 95% interval, the routed images' precision and count."""
        return self.tuning.choice.low, self.tuning.choice.high, self.actual, int(self.routed.sum())


def train_and_route(workspace: Workspace, setting: Setting, seed: int, target: float) -> After:
    """Train a head on the labels, predict the pool, and route it after issue 17 (calibrated
    confidences, the labels' support, no threshold while a vocabulary class has no label)."""
    model = train_model(workspace, "head", feature_set=setting.feature_set, seed=seed)
    predict(workspace, model.id)
    record = load_model_record(workspace, model.id)
    tuning = validation_curves(workspace, model.id, target, seed=seed)
    pool = routed_pool(workspace, model.id, seed, limit=10**9)
    truth_by_id = dict(zip(*ground_truth(workspace)[:2]))
    truth = np.array([truth_by_id[i] for i in pool.image_ids])
    calibrated = calibrated_proba(workspace, model.id, pool.proba).max(axis=1)
    confident = routed_mask(pool.labels, calibrated, tuning.choice.threshold)
    inside = inside_support(workspace, record, pool.image_ids)
    kept = ~rejected_labels(workspace).mask(pool.image_ids, pool.labels) & (True if inside is None else inside)
    return After(record, tuning, pool, truth, calibrated, confident, confident & kept)


def short_of_labels(tuning: ThresholdTuning) -> list[str]:
    """The classes the tool withheld a threshold for, each with its labels: ``U (0)``, ``R (4)``."""
    details = tuning.details
    return [f"{name} (0)" for name in details["classes_without_labels"]] + [
        f"{name} ({count})" for name, count in details["classes_short_of_labels"].items()]


def label_missing_classes(workspace: Workspace, setting: Setting, seed: int) -> int:
    """Follow the tool's advice when it withholds a threshold: label images of the coreset (the
    images least like any label) one by one, a batch at a time, until every vocabulary class has
    ``MIN_CLASS_LABELS`` labels or ``COVER_BUDGET`` images are spent. Returns how many were labeled."""
    truth_by_id = dict(zip(*ground_truth(workspace)[:2]))
    spent = 0
    while spent < COVER_BUDGET and classes_short_of_labels(workspace, label_counts(workspace)["labels"]):
        batch = draw_sample(workspace, "coreset", size=COVER_BATCH, seed=seed + spent, features=setting.feature_set)
        for image_id in batch.image_ids.tolist():
            label_images(workspace, [image_id], truth_by_id[image_id], author="oracle")
        spent += len(batch.image_ids)
    return spent


def one_seed(base: Path, setting: Setting, seed: int, target: float, audits: int, folder: Path) -> Outcome:
    target_folder = folder / f"seed{seed}"
    with Workspace.open(base) as source:
        source.copy_to(target_folder).close()
    with Workspace.open(target_folder) as workspace:
        label_like_a_user(workspace, setting, seed)
        after = train_and_route(workspace, setting, seed, target)
        oof = model_oof(workspace, after.record, seed=seed)
        before = tune_thresholds(oof.labels, oof.predicted, oof.proba.max(axis=1), target)
        pool, truth, calibrated, routed_after = after.pool, after.truth, after.calibrated, after.routed
        actual_before, n_before = routed_precision(truth, pool.labels, pool.confidence, before.choice.threshold)
        correct = truth == pool.labels
        calibration = after.tuning.details["calibration"] or {}
        withheld = short_of_labels(after.tuning)
        covered = None
        if withheld:
            spent = label_missing_classes(workspace, setting, seed)
            covered = (spent, train_and_route(workspace, setting, seed, target))
        return Outcome(
            seed, len(oof.labels),
            {"before": before.choice.precision, "after": after.promised},
            {"before": actual_before, "after": after.actual},
            {"before": n_before, "after": int(routed_after.sum())},
            (expected_calibration_error(pool.confidence, correct), expected_calibration_error(np.clip(calibrated, 0, 1), correct)),
            (calibration.get("ece_before", float("nan")), calibration.get("ece_after", float("nan"))),
            after.tuning.details["measured_on"]["effective_n"],
            (after.tuning.choice.low, after.tuning.choice.high),
            audit_coverage(truth[routed_after], pool.labels[routed_after], audits, seed),
            one_audit(truth[routed_after], pool.labels[routed_after], seed),
            after.tuning.choice.floor,
            precision_of(truth, pool.labels, after.confident),
            int((after.confident & ~routed_after).sum()),
            withheld,
            covered,
        )


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def _gap(promised: float | None, actual: float | None) -> str:
    return "   -  " if promised is None or actual is None else f"{100 * (promised - actual):+5.1f}"


def held(promises) -> str:
    """How many of the ``(low, high, actual, routed)`` promises that routed held the routed precision."""
    measured = [(low, high, actual) for low, high, actual, _ in promises if low is not None and actual is not None]
    return f"{sum(low <= actual <= high for low, high, actual in measured)}/{len(measured)}"


def unbiased_chance(low: float | None, high: float | None, actual: float | None, routed: int, margin: float = 0.05) -> float | None:
    """How likely a promise with no bias at all lands within ``margin`` of the routed precision:
    the promise varies as its 95% interval says (the labels it is measured on), the routed
    images' precision as a binomial share of ``routed`` (they are a sample of what the model
    does), so the gap's standard deviation is ``sqrt(se_promise^2 + p(1-p)/n)``. What the
    "within 5 points in every seed" target asks of any estimate made from these labels."""
    if low is None or high is None or actual is None or routed == 0:
        return None
    sd = math.hypot((high - low) / (2 * 1.96), math.sqrt(actual * (1 - actual) / routed))
    return 1.0 if sd == 0 else math.erf(margin / (sd * math.sqrt(2)))


def chance_summary(promises) -> str:
    """For ``(low, high, actual, routed)`` per seed: the seeds an unbiased promise would put within
    5 points on average, and the chance it would in every one of them."""
    chances = [c for c in (unbiased_chance(*p) for p in promises) if c is not None]
    if not chances:
        return "an unbiased promise: -"
    return (f"an unbiased promise with these labels and routed counts would be within 5 pts in {sum(chances):.1f}/{len(chances)} "
            f"seeds on average, in all {len(chances)} with chance {100 * math.prod(chances):.0f}%")


def report(setting: Setting, outcomes: list[Outcome], target: float, seconds: float) -> None:
    print(f"\n## {setting.name}: target precision {target:.0%}, {len(outcomes)} seeds, {seconds:.0f} s")
    print("| seed | labels | promised before | routed right before (n) | gap before | promised after [95% interval] | "
          "routed right after (n) | gap after | within 5 pts | held back: unlike the labels or rejected (routed right without the checks) | "
          "ECE pool raw -> calibrated | ECE labels OOF before -> after | "
          "effective n | audit coverage | one audit's estimate (gap) | floor after (gap) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        gap_after = None if o.promised["after"] is None or o.actual["after"] is None else abs(o.promised["after"] - o.actual["after"])
        within = "-" if gap_after is None else ("yes" if gap_after <= 0.05 else "no")
        interval = "" if o.interval[0] is None else f" [{_pct(o.interval[0])}-{_pct(o.interval[1])}]"
        coverage = "-" if o.audit_coverage is None else f"{100 * o.audit_coverage:.1f}%"
        print(f"| {o.seed} | {o.labels} | {_pct(o.promised['before'])} | {_pct(o.actual['before'])} ({o.routed['before']}) | "
              f"{_gap(o.promised['before'], o.actual['before'])} | {_pct(o.promised['after'])}{interval} | "
              f"{_pct(o.actual['after'])} ({o.routed['after']}) | {_gap(o.promised['after'], o.actual['after'])} | {within} | "
              f"{o.outside} ({_pct(o.unchecked)}) | "
              f"{o.ece_pool[0]:.3f} -> {o.ece_pool[1]:.3f} | {o.ece_oof[0]:.3f} -> {o.ece_oof[1]:.3f} | {o.effective_n:.0f} | {coverage} | "
              f"{_pct(o.audit_promise)} ({_gap(o.audit_promise, o.actual['after'])}) | {_pct(o.floor)} ({_gap(o.floor, o.actual['after'])}) |")
    promises = [(*o.interval, o.actual["after"], o.routed["after"]) for o in outcomes]
    gaps = [abs(o.promised[k] - o.actual[k]) for o in outcomes for k in ("before",) if o.promised[k] is not None and o.actual[k] is not None]
    gaps_after = [abs(o.promised["after"] - o.actual["after"]) for o in outcomes if o.promised["after"] is not None and o.actual["after"] is not None]
    coverages = [o.audit_coverage for o in outcomes if o.audit_coverage is not None]
    audit_gaps = [abs(o.audit_promise - o.actual["after"]) for o in outcomes if o.audit_promise is not None and o.actual["after"] is not None]
    print(f"mean |gap| before {100 * np.mean(gaps) if gaps else float('nan'):.1f} pts, after "
          f"{100 * np.mean(gaps_after) if gaps_after else float('nan'):.1f} pts; seeds within 5 pts after: "
          f"{sum(g <= 0.05 for g in gaps_after)}/{len(outcomes)} (no threshold suggested in {sum(bool(o.withheld) for o in outcomes)}: "
          f"classes short of labels); mean audit coverage "
          f"{100 * np.mean(coverages) if coverages else float('nan'):.1f}%; one audit within 5 pts: "
          f"{sum(g <= 0.05 for g in audit_gaps)}/{len(audit_gaps)} (mean |gap| {100 * np.mean(audit_gaps) if audit_gaps else float('nan'):.1f} pts); "
          f"the promise's 95% interval holds the routed precision: {held(promises)}; {chance_summary(promises)}")
    withheld = [o for o in outcomes if o.withheld]
    if not withheld:
        return
    print(f"\nNo threshold suggested in {len(withheld)}/{len(outcomes)} seeds: classes short of labels. Then the user labels "
          f"coreset images (the least like any label, {COVER_BATCH} at a time, at most {COVER_BUDGET}) until each class has {MIN_CLASS_LABELS}, and trains again:")
    print("| seed | classes short of labels (labels) | coreset images labeled | still short | promised [95% interval] | routed right (n) | gap | "
          "within 5 pts | one audit's estimate (gap) |")
    print("|---|---|---|---|---|---|---|---|---|")
    covered_gaps, covered_audit_gaps = [], []
    covered_promises = [o.covered[1].promise for o in withheld]
    for o in withheld:
        spent, after = o.covered
        choice = after.tuning.choice
        interval = "" if choice.low is None else f" [{_pct(choice.low)}-{_pct(choice.high)}]"
        gap = None if after.promised is None or after.actual is None else after.promised - after.actual
        if gap is not None:
            covered_gaps.append(abs(gap))
        within = "-" if gap is None else ("yes" if abs(gap) <= 0.05 else "no")
        audited = one_audit(after.truth[after.routed], after.pool.labels[after.routed], o.seed)
        if audited is not None:
            covered_audit_gaps.append(abs(audited - after.actual))
        print(f"| {o.seed} | {', '.join(o.withheld)} | {spent} | {', '.join(short_of_labels(after.tuning)) or '-'} | "
              f"{_pct(after.promised)}{interval} | {_pct(after.actual)} ({int(after.routed.sum())}) | {_gap(after.promised, after.actual)} | {within} | "
              f"{_pct(audited)} ({_gap(audited, after.actual)}) |")
    print(f"after covering the classes: seeds within 5 pts {sum(g <= 0.05 for g in covered_gaps)}/{len(withheld)} "
          f"(mean |gap| {100 * np.mean(covered_gaps) if covered_gaps else float('nan'):.1f} pts over {len(covered_gaps)} seeds that route); "
          f"one audit within 5 pts: {sum(g <= 0.05 for g in covered_audit_gaps)}/{len(covered_audit_gaps)}; the promise's 95% interval "
          f"holds the routed precision: {held(covered_promises)}; {chance_summary(covered_promises)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--audits", type=int, default=200)
    parser.add_argument("--only", choices=["bananas", "digits"])
    parser.add_argument("--workspace", type=Path, help="measure this workspace instead (ground truth, embedded, no labels)")
    parser.add_argument("--features", default="efficientnet_lite0", help="with --workspace: feature set or backbone (default efficientnet_lite0)")
    parser.add_argument("--subjects", type=int, help="with --workspace: subjects per sample (default a quarter, at least 2)")
    parser.add_argument("--metadata", help="with --workspace: fields and their share of the variance for clustering, e.g. days=0.5")
    args = parser.parse_args()
    makers = {"bananas": bananas_workspace, "digits": digits_workspace}
    if args.only:
        makers = {args.only: makers[args.only]}
    try:
        if args.workspace:
            chosen = your_workspace(args.workspace, args.features, args.subjects, parse_key_values(args.metadata, "--metadata"))
            makers = {"yours": lambda _folder: chosen}
        measure(makers, args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def measure(makers: dict, args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in makers.items():
            base, setting = make(Path(tmp) / name / "base")
            start = time.perf_counter()
            outcomes = [one_seed(base, setting, seed, args.target, args.audits, Path(tmp) / name) for seed in range(args.seeds)]
            report(setting, outcomes, args.target, time.perf_counter() - start)


if __name__ == "__main__":
    main()

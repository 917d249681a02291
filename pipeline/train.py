"""Classifier training and prediction.

A model is trained on the current *accepted* labels (:func:`pipeline.labels.training_labels`),
each image weighted by its label confidence (manual 1.0; cluster labels lower the farther the
image lies from its cluster's centre). Training modes are looked up in :data:`MODES`:

- ``head`` (default): a classifier on cached feature vectors (standardized logistic regression,
  or a small MLP). Seconds on a CPU.
- ``finetune``: the torchvision/EfficientNet backbone of :mod:`pipeline.backbones` with a new
  linear head, trained end to end for a few epochs with augmentation (random crops, flips,
  brightness), early stopping on a validation split grouped by subject. Meant for a GPU; it
  runs, slowly, on a CPU. Its penultimate features are registered in the feature store as
  ``model-<id>``, so the next clustering (and prediction) can use them.

Every model is a classifier over the vectors of one feature set (a head model: the set it was
trained on; a fine-tuned model: its own ``model-<id>`` set with its linear head), saved with
its classes, parameters, training set (image ids) and metrics. The validation metrics stored
with a model are out-of-fold predictions of its own labels, folds grouped by subject; they
measure agreement with the labels the expert gave, not with any ground truth (see
:mod:`pipeline.loop` for that).
"""
from __future__ import annotations

import json
import pickle
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from .errors import PipelineError
from .metrics.classification import classification_report
from .progress import Progress
from .splits import grouped_folds, grouped_split
from .store import FeatureStore
from .workspace import Workspace, atomic_path

DEFAULT_TOP_K = 3
CV_FOLDS = 5
PREDICT_CHUNK = 65536


# --- the head classifier on arrays -----------------------------------------------------------
class HeadClassifier:
    """A classifier on feature vectors: standardize, then logistic regression or a small MLP.

    ``sample_weight`` (label confidence) weights each image's loss. With a single class in
    the training labels it predicts that class with probability 1. Fitting and predicting use
    one BLAS thread: the solver's many small matrix products gain nothing from more, and on a
    busy machine spinning BLAS threads made a 160-image fit take seconds instead of 50 ms.
    """

    KINDS = ("logreg", "mlp")

    def __init__(self, kind: str = "logreg", C: float = 0.1, hidden: int = 128, max_iter: int = 2000, random_state: int | None = 0):
        self.kind = kind
        self.C = C
        self.hidden = hidden
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None) -> "HeadClassifier":
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        if self.kind not in self.KINDS:
            raise PipelineError(f"unknown head classifier '{self.kind}'; choose one of {', '.join(self.KINDS)}")
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray([str(v) for v in y])
        if len(y) == 0:
            raise PipelineError("no labeled images to train on; label some clusters or images first")
        self.classes_ = np.unique(y)
        self.scaler_ = StandardScaler().fit(X)
        if len(self.classes_) == 1:
            self.model_ = None
            return self
        self.model_ = self._make_model()
        with threadpool_limits(1):
            self.model_.fit(self.scaler_.transform(X), y, sample_weight=sample_weight)
        return self

    def _make_model(self):
        if self.kind == "mlp":
            from sklearn.neural_network import MLPClassifier

            return MLPClassifier(
                hidden_layer_sizes=(self.hidden,), alpha=1.0 / self.C, max_iter=self.max_iter, random_state=self.random_state
            )
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)

    def predict_proba(self, X) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        X = np.asarray(X, dtype=np.float32)
        if self.model_ is None:
            return np.ones((len(X), 1))
        with threadpool_limits(1):
            return self.model_.predict_proba(self.scaler_.transform(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class LinearSoftmax:
    """The linear head of a fine-tuned network, applied to its penultimate features (numpy)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, classes):
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X) -> np.ndarray:
        logits = np.asarray(X, dtype=np.float32) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def align_proba(proba: np.ndarray, fitted_classes, classes) -> np.ndarray:
    """Columns of ``proba`` (in ``fitted_classes`` order) placed into ``classes`` order (0 for absent)."""
    out = np.zeros((len(proba), len(classes)))
    column = {c: i for i, c in enumerate(classes)}
    for j, c in enumerate(fitted_classes):
        out[:, column[c]] = proba[:, j]
    return out


def grouped_oof_proba(
    X, y, groups, sample_weight=None, make_classifier: Callable[[], HeadClassifier] = HeadClassifier, n_splits: int = CV_FOLDS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold class probabilities (folds grouped by subject) and the class order.

    Each image is scored by a classifier fitted on the other folds' subjects only.
    """
    y = np.asarray([str(v) for v in y])
    classes = np.unique(y)
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    proba = np.zeros((len(y), len(classes)))
    for split in grouped_folds(groups, n_splits, seed):
        model = make_classifier().fit(X[split.train], y[split.train], sample_weight=weights[split.train])
        proba[split.test] = align_proba(model.predict_proba(X[split.test]), model.classes_, classes)
    return proba, classes


# --- predictions -----------------------------------------------------------------------------
@dataclass
class Predictions:
    """Per image: the top-1 label, its probability (confidence), the top-1 minus top-2 margin,
    the entropy (nats) of the class distribution, and the full probabilities (``proba``)."""

    model_id: int | None
    image_ids: np.ndarray
    classes: np.ndarray
    proba: np.ndarray = field(repr=False)

    @property
    def labels(self) -> np.ndarray:
        return self.classes[np.argmax(self.proba, axis=1)] if len(self.proba) else np.array([], dtype=str)

    @property
    def confidence(self) -> np.ndarray:
        return self.proba.max(axis=1) if len(self.proba) else np.zeros(0)

    @property
    def margin(self) -> np.ndarray:
        if self.proba.shape[1] < 2:
            return np.ones(len(self.proba))
        top2 = -np.partition(-self.proba, 1, axis=1)[:, :2]
        return top2[:, 0] - top2[:, 1]

    @property
    def entropy(self) -> np.ndarray:
        p = np.clip(self.proba, 1e-12, 1.0)
        return -(self.proba * np.log(p)).sum(axis=1)

    def topk(self, k: int = DEFAULT_TOP_K) -> list[list[tuple[str, float]]]:
        order = np.argsort(-self.proba, axis=1, kind="stable")[:, :k]
        return [[(str(self.classes[j]), float(row[j])) for j in cols] for row, cols in zip(self.proba, order)]

    def __len__(self) -> int:
        return len(self.image_ids)

    def summary(self, k: int = DEFAULT_TOP_K) -> dict:
        labels, counts = np.unique(self.labels, return_counts=True)
        return {
            "model_id": self.model_id,
            "images": len(self),
            "by_label": {str(a): int(b) for a, b in zip(labels, counts)},
            "mean_confidence": float(self.confidence.mean()) if len(self) else None,
        }


# --- models in the workspace ------------------------------------------------------------------
@dataclass
class ModelRecord:
    """A saved model (row of ``models``)."""

    id: int
    mode: str
    feature_set: str
    path: str
    classes: list[str]
    params: dict
    metrics: dict
    training_set: list[int] = field(repr=False)
    created_at: str = ""

    def summary(self) -> dict:
        data = asdict(self)
        data["training_set"] = len(self.training_set)
        return data


@dataclass
class TrainingData:
    """The labeled images a model learns from."""

    image_ids: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    subjects: np.ndarray


@dataclass
class Trained:
    """What a training mode returns before it is saved.

    ``feature_set`` None means "this model's own features" (``model-<id>``, made from
    ``network`` once the id is known).
    """

    classifier: object
    feature_set: str | None
    params: dict
    metrics: dict
    network: dict | None = None


def training_data(workspace: Workspace) -> TrainingData:
    """The accepted labels with their confidence weights and each image's subject."""
    from .labels import training_labels

    image_ids, labels, weights = training_labels(workspace)
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if len(image_ids) == 0:
        raise PipelineError(
            f"no accepted labels in {workspace.root}: label clusters or images first "
            "('python -m pipeline label ...' or the dashboard)"
        )
    return TrainingData(image_ids, np.asarray([str(v) for v in labels]), np.asarray(weights, dtype=float), image_subjects(workspace, image_ids))


def image_subjects(workspace: Workspace, image_ids) -> np.ndarray:
    """The subject id of each image, in the order given."""
    rows = workspace.query_in("SELECT id, subject_id FROM images WHERE id IN ({})", image_ids)
    by_id = {r[0]: r[1] for r in rows}
    return np.array([by_id[int(i)] for i in image_ids], dtype=np.int64)


def default_feature_set(workspace: Workspace) -> str:
    """The newest feature set in the workspace."""
    row = workspace.db.execute("SELECT name FROM feature_sets ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        raise PipelineError(f"no features in {workspace.root} yet; run 'python -m pipeline embed --workspace ... --backbone NAME'")
    return row[0]


def ensure_features(
    workspace: Workspace,
    feature_set: str,
    image_ids,
    device: str = "cpu",
    progress: Progress | None = None,
    engine: str = "local",
    address: str | None = None,
) -> None:
    """Compute the vectors of ``feature_set`` that ``image_ids`` still lack (never recomputes).

    ``model-<id>``: a trained network's features, or a phase-1 VAE's latent means (it has no network file).
    ``engine="ray"`` runs the network on Ray Data (a local Ray, or the cluster at ``address``).
    """
    store = FeatureStore(workspace)
    missing = store.missing(feature_set, image_ids)
    if len(missing) == 0:
        return
    if feature_set.startswith("model-"):
        model_id = int(feature_set.split("-", 1)[1])
        if not network_path(workspace, model_id).is_file() and load_model_record(workspace, model_id).mode == "vae":
            from .vae import store_latents

            store_latents(workspace, model_id, missing, device, progress)  # a phase-1 VAE's latents, not a network's
        else:
            embed_with_model(workspace, model_id, missing, device, progress, engine, address)
        return
    from .embed import embed_workspace

    info = store.info(feature_set)
    try:
        if engine == "ray":
            from .distributed import embed_with_ray

            embed_with_ray(workspace, info.backbone, info.weights, device=device, image_ids=missing, address=address, progress=progress)
        else:
            embed_workspace(workspace, info.backbone, info.weights, device=device, image_ids=missing, progress=progress)
    except PipelineError as error:
        raise PipelineError(
            f"feature set '{feature_set}' lacks vectors for {len(missing)} image(s) and they cannot be computed "
            f"here ({error}); run 'python -m pipeline embed' for them first"
        ) from None


def train_model(
    workspace: Workspace,
    mode: str = "head",
    feature_set: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
    **params,
) -> ModelRecord:
    """Train a model on the accepted labels and save it (``models`` row + file in ``models/``).

    ``feature_set``: the vectors a head reads, or whose backbone a fine-tune starts from
    (a full name or a backbone name; default: the newest feature set). ``params`` are the
    mode's own options (see :data:`MODES`).
    """
    if mode not in MODES:
        raise PipelineError(f"unknown training mode '{mode}'; choose one of {', '.join(MODES)}")
    store = FeatureStore(workspace)
    feature_set = store.resolve(feature_set) if feature_set else default_feature_set(workspace)
    data = training_data(workspace)
    start = time.perf_counter()
    trained = MODES[mode](workspace, data, feature_set, params, seed, device, progress)
    trained.metrics.update(
        seconds=round(time.perf_counter() - start, 3),
        train_size=len(data.image_ids),
        train_by_label={str(k): int(v) for k, v in zip(*np.unique(data.labels, return_counts=True))},
    )
    return save_model(workspace, mode, trained, data, {**trained.params, "seed": seed}, device, progress)


def save_model(workspace: Workspace, mode: str, trained: Trained, data: TrainingData, params: dict, device: str, progress: Progress | None) -> ModelRecord:
    """Insert the ``models`` row and write its files atomically, in one transaction."""
    classes = [str(c) for c in trained.classifier.classes_]
    with workspace.transaction() as db:
        model_id = db.execute(
            "INSERT INTO models(mode, feature_set, path, classes, params, metrics, training_set) VALUES (?,?,?,?,?,?,?)",
            (mode, trained.feature_set or "", "", json.dumps(classes), json.dumps(params), json.dumps(trained.metrics),
             json.dumps([int(i) for i in data.image_ids])),
        ).lastrowid
        feature_set = trained.feature_set or f"model-{model_id}"
        path = workspace.models_dir / f"model-{model_id}.pkl"
        with atomic_path(path) as tmp:
            tmp.write_bytes(pickle.dumps(trained.classifier))
        if trained.network is not None:
            import torch

            with atomic_path(network_path(workspace, model_id)) as tmp:
                torch.save(trained.network, tmp)
        db.execute(
            "UPDATE models SET path=?, feature_set=? WHERE id=?",
            (str(path.relative_to(workspace.root)), feature_set, model_id),
        )
    if trained.network is not None:
        all_ids = [r[0] for r in workspace.db.execute("SELECT id FROM images ORDER BY id")]
        embed_with_model(workspace, model_id, all_ids, device, progress)
    return load_model_record(workspace, model_id)


def load_model_record(workspace: Workspace, model_id: int) -> ModelRecord:
    row = workspace.db.execute("SELECT * FROM models WHERE id=?", (int(model_id),)).fetchone()
    if row is None:
        raise PipelineError(f"no model {model_id} in {workspace.root}; list them with 'python -m pipeline models --workspace ...'")
    return ModelRecord(
        row["id"], row["mode"], row["feature_set"], row["path"], json.loads(row["classes"]), json.loads(row["params"]),
        json.loads(row["metrics"]), json.loads(row["training_set"]), row["created_at"],
    )


def latest_model_id(workspace: Workspace) -> int:
    row = workspace.db.execute("SELECT MAX(id) FROM models").fetchone()
    if row[0] is None:
        raise PipelineError(f"no model in {workspace.root} yet; train one with 'python -m pipeline train --workspace ...'")
    return int(row[0])


def list_models(workspace: Workspace) -> list[dict]:
    return [load_model_record(workspace, r[0]).summary() for r in workspace.db.execute("SELECT id FROM models ORDER BY id DESC")]


def load_classifier(workspace: Workspace, record: ModelRecord):
    path = workspace.root / record.path
    if not path.is_file():
        raise PipelineError(f"model {record.id}: its file {path} is missing; train the model again")
    return pickle.loads(path.read_bytes())


def unlabeled_image_ids(workspace: Workspace) -> np.ndarray:
    """Images without any label (no row in ``current_labels``, not even a pending pseudo-label)."""
    rows = workspace.db.execute(
        "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM current_labels) ORDER BY id"
    ).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def predict(
    workspace: Workspace,
    model_id: int,
    image_ids=None,
    top_k: int = DEFAULT_TOP_K,
    device: str = "cpu",
    progress: Progress | None = None,
    engine: str = "local",
    address: str | None = None,
) -> Predictions:
    """Predict the images given (default: every unlabeled image) and store the rows in ``predictions``.

    Features missing for those images are computed first (the backbone's, or the fine-tuned
    model's own), on this machine or, with ``engine="ray"``, on Ray Data; the classifier on
    top of the features is cheap and always runs here.
    """
    record = load_model_record(workspace, model_id)
    ids = unlabeled_image_ids(workspace) if image_ids is None else np.unique(np.asarray(image_ids, dtype=np.int64))
    classes = np.asarray(record.classes)
    if len(ids) == 0:
        return Predictions(record.id, ids, classes, np.zeros((0, len(classes))))
    ensure_features(workspace, record.feature_set, ids, device, progress, engine, address)
    classifier = load_classifier(workspace, record)
    store = FeatureStore(workspace)
    parts = []
    for start in range(0, len(ids), PREDICT_CHUNK):
        _, X = store.load(record.feature_set, ids[start : start + PREDICT_CHUNK])
        parts.append(align_proba(classifier.predict_proba(X), classifier.classes_, classes))
    predictions = Predictions(record.id, ids, classes, np.vstack(parts))
    store_predictions(workspace, predictions, top_k)
    return predictions


def store_predictions(workspace: Workspace, predictions: Predictions, top_k: int = DEFAULT_TOP_K) -> None:
    rows = zip(
        predictions.image_ids.tolist(), predictions.labels.tolist(), predictions.confidence.tolist(),
        predictions.margin.tolist(), predictions.entropy.tolist(), (json.dumps(t) for t in predictions.topk(top_k)),
    )
    with workspace.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO predictions(model_id, image_id, label, confidence, margin, entropy, topk) "
            "VALUES (?,?,?,?,?,?,?)",
            [(predictions.model_id, *row) for row in rows],
        )


def load_predictions(workspace: Workspace, model_id: int, image_ids=None) -> Predictions:
    """Stored predictions of a model (all, or for ``image_ids``); ``proba`` holds the stored top-k
    probabilities (0 for the classes beyond them)."""
    record = load_model_record(workspace, model_id)
    classes = np.asarray(record.classes)
    if image_ids is None:
        rows = workspace.db.execute("SELECT image_id, topk FROM predictions WHERE model_id=? ORDER BY image_id", (record.id,)).fetchall()
    else:
        rows = workspace.query_in(
            f"SELECT image_id, topk FROM predictions WHERE model_id={record.id} AND image_id IN ({{}}) ORDER BY image_id", image_ids
        )
    column = {c: j for j, c in enumerate(classes)}
    proba = np.zeros((len(rows), len(classes)))
    for i, row in enumerate(rows):
        for label, p in json.loads(row["topk"]):
            proba[i, column[label]] = p
    return Predictions(record.id, np.array([r["image_id"] for r in rows], dtype=np.int64), classes, proba)


# --- mode: head -------------------------------------------------------------------------------
def train_head(workspace: Workspace, data: TrainingData, feature_set: str, params: dict, seed: int, device: str, progress: Progress | None) -> Trained:
    """Logistic regression (or ``kind="mlp"``) on cached vectors of ``feature_set``."""
    options = {"kind": "logreg", "C": 0.1, "hidden": 128, "max_iter": 2000, **params}
    unknown = set(options) - {"kind", "C", "hidden", "max_iter"}
    if unknown:
        raise PipelineError(f"mode 'head' does not take option(s) {', '.join(sorted(unknown))}; it takes kind, C, hidden, max_iter")
    ensure_features(workspace, feature_set, data.image_ids, device, progress)
    _, X = FeatureStore(workspace).load(feature_set, data.image_ids)

    def make() -> HeadClassifier:
        return HeadClassifier(options["kind"], float(options["C"]), int(options["hidden"]), int(options["max_iter"]), seed)

    metrics = grouped_validation(X, data, make, seed)
    classifier = make().fit(X, data.labels, sample_weight=data.weights)
    return Trained(classifier, feature_set, options, metrics)


def grouped_validation(X: np.ndarray, data: TrainingData, make: Callable[[], HeadClassifier], seed: int) -> dict:
    """Out-of-fold scores of the labels, folds grouped by subject (empty with fewer than 2 subjects)."""
    if len(np.unique(data.subjects)) < 2 or len(np.unique(data.labels)) < 2:
        return {"validation": None, "validation_note": "needs labels of at least 2 subjects and 2 classes"}
    proba, classes = grouped_oof_proba(X, data.labels, data.subjects, data.weights, make, CV_FOLDS, seed)
    report = classification_report(data.labels, classes[np.argmax(proba, axis=1)], classes, proba, classes)
    n_folds = min(CV_FOLDS, len(np.unique(data.subjects)))
    return {"validation": report.to_dict(), "validation_split": f"{n_folds}-fold GroupKFold by subject over the accepted labels, out-of-fold predictions"}


# --- mode: finetune ---------------------------------------------------------------------------
FINETUNE_DEFAULTS = {
    "backbone": None, "weights": None, "epochs": 5, "patience": 2, "batch_size": 32,
    "lr": 1e-4, "head_lr": 1e-3, "image_size": None, "val_share": 0.2, "num_workers": 0,
}


def train_finetune(workspace: Workspace, data: TrainingData, feature_set: str, params: dict, seed: int, device: str, progress: Progress | None) -> Trained:
    """The backbone of ``feature_set`` (or ``backbone``/``weights``) with a new linear head, trained end to end."""
    import torch

    from .backbones import load_backbone
    from .embed import resolve_device

    options = {**FINETUNE_DEFAULTS, **params}
    unknown = set(options) - set(FINETUNE_DEFAULTS)
    if unknown:
        raise PipelineError(f"mode 'finetune' does not take option(s) {', '.join(sorted(unknown))}; it takes {', '.join(FINETUNE_DEFAULTS)}")
    if not options["backbone"]:
        info = FeatureStore(workspace).info(feature_set)
        if info.backbone not in _known_backbones():
            raise PipelineError(f"feature set '{feature_set}' has no known backbone to fine-tune; pass backbone=NAME")
        options["backbone"], options["weights"] = info.backbone, options["weights"] or info.weights
    options["weights"] = options["weights"] or "default"
    device = resolve_device(device)
    torch.manual_seed(seed)
    backbone = load_backbone(options["backbone"], options["weights"])
    options["image_size"] = int(options["image_size"] or backbone.spec.preprocess.crop)
    classes = np.unique(data.labels)
    codes = np.searchsorted(classes, data.labels)
    trainer = _FineTuner(workspace, backbone, len(classes), options, device, seed)
    split = grouped_split(data.subjects, options["val_share"], seed) if len(np.unique(data.subjects)) >= 2 else None
    train_rows = np.arange(len(codes)) if split is None else split.train
    history = trainer.fit(data.image_ids, codes, data.weights, train_rows, None if split is None else split.test, progress)
    metrics: dict = {"history": history}
    if split is not None:
        proba = trainer.proba(data.image_ids[split.test])
        report = classification_report(data.labels[split.test], classes[np.argmax(proba, axis=1)], classes, proba, classes)
        metrics.update(validation=report.to_dict(), validation_split=(
            f"GroupShuffleSplit by subject ({len(split.test)} images of {len(np.unique(data.subjects[split.test]))} "
            "subjects); also used for early stopping, so slightly optimistic"
        ))
    head = trainer.head
    classifier = LinearSoftmax(head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy(), classes)
    network = {
        "backbone": options["backbone"],
        "weights": backbone.weights.identity,
        "image_size": options["image_size"],
        "state_dict": {k: v.cpu() for k, v in trainer.net.state_dict().items()},
    }
    return Trained(classifier, None, options, metrics, network)


def _known_backbones() -> tuple[str, ...]:
    from .backbones import BACKBONES

    return tuple(BACKBONES)


def finetune_preprocess(spec, image_size: int, square: bool):
    """Preprocessing for a fine-tuned network at ``image_size`` px: a ``square`` of the resized
    image (training: random crops are cut from it) or its centre crop (evaluation, features)."""
    from .backbones import Preprocess

    resize = round(image_size * spec.preprocess.resize / spec.preprocess.crop)
    return Preprocess(resize, resize if square else image_size, spec.preprocess.mean, spec.preprocess.std)


class _FineTuner:
    """Training loop state for one fine-tuning run."""

    def __init__(self, workspace: Workspace, backbone, n_classes: int, options: dict, device: str, seed: int):
        import torch

        from .embed import BatchNormalizer

        self.workspace = workspace
        self.options = options
        self.device = device
        self.net = backbone.module.to(device)
        self.head = torch.nn.Linear(backbone.spec.dim, n_classes).to(device)
        self.train_preprocess = finetune_preprocess(backbone.spec, options["image_size"], square=True)
        self.eval_preprocess = finetune_preprocess(backbone.spec, options["image_size"], square=False)
        self.normalize = BatchNormalizer(backbone.spec.preprocess, device)
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.AdamW([
            {"params": self.net.parameters(), "lr": options["lr"]},
            {"params": self.head.parameters(), "lr": options["head_lr"]},
        ])

    def _loader(self, image_ids, preprocess, shuffle: bool):
        from torch.utils.data import DataLoader

        from .embed import ImageDataset

        dataset = ImageDataset(image_ids, self.workspace.image_paths(image_ids), preprocess)
        batch_size = int(self.options["batch_size"])
        # a training batch of one image breaks batch normalization: drop a last batch of one
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle and len(dataset) % batch_size == 1,
                          num_workers=int(self.options["num_workers"]), generator=self.generator)

    def _augment(self, images):
        """Random crop of ``image_size`` from the square, horizontal flip, brightness +-10%."""
        import torch

        size = self.options["image_size"]
        n, _, height, width = images.shape
        tops = torch.randint(0, height - size + 1, (n,), generator=self.generator)
        lefts = torch.randint(0, width - size + 1, (n,), generator=self.generator)
        crops = torch.stack([img[:, t : t + size, l : l + size] for img, t, l in zip(images, tops, lefts)])
        flip = torch.rand(n, generator=self.generator) < 0.5
        crops[flip] = crops[flip].flip(-1)
        x = self.normalize(crops.to(self.device))
        brightness = 1.0 + 0.2 * (torch.rand(n, 1, 1, 1, generator=self.generator) - 0.5)
        return x * brightness.to(self.device)

    def _loss(self, logits, codes, weights):
        import torch

        losses = torch.nn.functional.cross_entropy(logits, codes, reduction="none")
        return (losses * weights).sum() / weights.sum().clamp_min(1e-12)

    def fit(self, image_ids, codes, weights, train_rows, val_rows, progress: Progress | None) -> list[dict]:
        import copy

        import torch

        codes_t = torch.as_tensor(codes, dtype=torch.long)
        weights_t = torch.as_tensor(weights, dtype=torch.float32)
        row_of = {int(i): r for r, i in enumerate(image_ids)}
        loader = self._loader(image_ids[train_rows], self.train_preprocess, shuffle=True)
        epochs, patience = int(self.options["epochs"]), int(self.options["patience"])
        history, best, best_loss, waited = [], None, float("inf"), 0
        for epoch in range(epochs):
            self.net.train()
            self.head.train()
            total, count = 0.0, 0
            for ids, images, errors in loader:
                rows = torch.as_tensor([row_of[int(i)] for i in ids])
                logits = self.head(self.net(self._augment(images)))
                loss = self._loss(logits, codes_t[rows].to(self.device), weights_t[rows].to(self.device))
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                total, count = total + float(loss.detach()) * len(ids), count + len(ids)
            entry = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
            if val_rows is not None and len(val_rows):
                proba = self.proba(image_ids[val_rows])
                val_loss = float(-(weights[val_rows] * np.log(np.clip(proba[np.arange(len(val_rows)), codes[val_rows]], 1e-12, 1))).sum()
                                 / max(weights[val_rows].sum(), 1e-12))
                entry["val_loss"] = val_loss
                if val_loss < best_loss:
                    best_loss, waited = val_loss, 0
                    best = (copy.deepcopy(self.net.state_dict()), copy.deepcopy(self.head.state_dict()))
                else:
                    waited += 1
            history.append(entry)
            if progress:
                progress(epoch + 1, epochs)
            if waited >= patience:
                break
        if best is not None:
            self.net.load_state_dict(best[0])
            self.head.load_state_dict(best[1])
        self.net.eval()
        self.head.eval()
        return history

    def proba(self, image_ids) -> np.ndarray:
        import torch

        self.net.eval()
        self.head.eval()
        out = []
        with torch.no_grad():
            for _, images, _ in self._loader(image_ids, self.eval_preprocess, shuffle=False):
                logits = self.head(self.net(self.normalize(images.to(self.device))))
                out.append(torch.softmax(logits, dim=1).cpu().numpy())
        return np.vstack(out)


def network_path(workspace: Workspace, model_id: int):
    return workspace.models_dir / f"model-{model_id}.pt"


@dataclass(frozen=True)
class NetworkLoader:
    """Loads a fine-tuned network from its file alone (no catalog), so a Ray actor can build it."""

    path: str
    model_id: int

    def __call__(self):
        import torch

        from .backbones import Backbone, WeightsChoice, load_backbone

        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        backbone = load_backbone(saved["backbone"], "random")
        backbone.module.load_state_dict(saved["state_dict"])
        spec = replace(backbone.spec, preprocess=finetune_preprocess(backbone.spec, saved["image_size"], square=False))
        return Backbone(spec, WeightsChoice(saved["backbone"], f"model-{self.model_id}"), backbone.module.eval())


def network_loader(workspace: Workspace, model_id: int) -> NetworkLoader:
    path = network_path(workspace, model_id)
    if not path.is_file():
        raise PipelineError(f"model {model_id} has no fine-tuned network file ({path}); it is not a 'finetune' model, or the file was removed")
    return NetworkLoader(str(path), model_id)


def load_network(workspace: Workspace, model_id: int):
    """The fine-tuned network of a model as a :class:`pipeline.backbones.Backbone` (eval mode)."""
    return network_loader(workspace, model_id)()


def embed_with_model(
    workspace: Workspace,
    model_id: int,
    image_ids,
    device: str = "cpu",
    progress: Progress | None = None,
    engine: str = "local",
    address: str | None = None,
) -> int:
    """Store a fine-tuned model's penultimate features (feature set ``model-<id>``) for ``image_ids``."""
    from .embed import ShardWriter, embed_images, resolve_device

    loader = network_loader(workspace, model_id)
    network = loader()
    name = f"model-{model_id}"
    store = FeatureStore(workspace)
    store.register(name, network.name, name, network.spec.dim, params={"model_id": model_id, "preprocess": asdict(network.spec.preprocess)})
    todo = store.missing(name, image_ids)
    if engine == "ray":
        from .distributed import embed_ids_with_ray

        return embed_ids_with_ray(workspace, name, loader, network.spec.preprocess, todo, device, address=address, progress=progress)[0]
    done = 0
    with ShardWriter(store, name, network.spec.dim, "float32") as writer:
        for ids, vectors in embed_images(network, todo, workspace.image_paths(todo), resolve_device(device), num_workers=0):
            writer.add(ids, vectors)
            done += len(ids)
            if progress:
                progress(done, len(todo))
    return done


MODES: dict[str, Callable[..., Trained]] = {"head": train_head, "finetune": train_finetune}

# the semi-supervised modes (issue 9): fuzzy overclustering and the VAE with named centres
from .overcluster import train_overcluster  # noqa: E402
from .vae import train_vae  # noqa: E402

MODES.update(overcluster=train_overcluster, vae=train_vae)

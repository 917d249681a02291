"""models.modes"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serieslabeler.embed.backbones import resolve_weights
from serieslabeler.metrics.classification import classification_report
from serieslabeler.models.base import image_subjects
from serieslabeler.models.features import (
    ensure_features,
    image_backbone,
    image_preprocess,
)
from serieslabeler.models.splits import grouped_split
from serieslabeler.models.torch_loop import load_image_array
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore


@dataclass(frozen=True)
class ModeInputs:
    """What a training mode feeds its network: the labeled images first, then an unlabeled pool."""

    image_ids: np.ndarray
    X: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    subjects: np.ndarray
    n_labeled: int


def mode_inputs(workspace, data, feature_set: str, options, seed: int, device: str, progress: Progress | None) -> ModeInputs:
    """The labeled images plus up to ``options.max_unlabeled`` random unlabeled ones of ``feature_set``.

    ``input="features"``: their vectors; ``input="images"``: their pixels in [0, 1] at
    ``image_size``. Pool images are those the feature set covers, so the model's clusters
    can be saved in that set's space.
    """

    ensure_features(workspace, feature_set, data.image_ids, device, progress)
    store = FeatureStore(workspace)
    pool = np.setdiff1d(store.ids(feature_set), data.image_ids)
    if len(pool) > options.max_unlabeled:
        pool = np.sort(np.random.default_rng(seed).choice(pool, options.max_unlabeled, replace=False))
    ids = np.concatenate([np.asarray(data.image_ids, dtype=np.int64), pool])
    if options.input == "features":
        X = store.load(feature_set, ids)[1]
    else:
        backbone, _ = image_backbone(workspace, feature_set, options)
        X = load_image_array(workspace, ids, image_preprocess(backbone, options.image_size), progress)
    labels = np.concatenate([np.asarray(data.labels, dtype=object), np.full(len(pool), None, dtype=object)])
    weights = np.concatenate([np.asarray(data.weights, dtype=np.float32), np.zeros(len(pool), np.float32)])
    subjects = np.concatenate([np.asarray(data.subjects), image_subjects(workspace, pool)]) if len(pool) else np.asarray(data.subjects)
    return ModeInputs(ids, X, labels, weights, subjects, len(data.image_ids))


def grouped_holdout(inputs: ModeInputs, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(train_rows, test_rows)``: a quarter of the labeled subjects held out, none of their images trained on.

    None when the labels cover fewer than 2 subjects or 2 classes.
    """

    labeled = np.arange(inputs.n_labeled)
    if len(np.unique(inputs.subjects[labeled])) < 2 or len(set(inputs.labels[labeled])) < 2:
        return None
    split = grouped_split(inputs.subjects[labeled], 0.25, seed)
    held_out = np.isin(inputs.subjects, inputs.subjects[split.test])
    train = np.flatnonzero(~held_out)
    if len(set(inputs.labels[train[train < inputs.n_labeled]])) < 2:
        return None
    return train, split.test


def holdout_metrics(classifier, inputs: ModeInputs, test: np.ndarray, held_out_subjects: int) -> dict:
    """Scores of a classifier trained without the held-out subjects, on their labeled images."""

    classes = np.asarray(classifier.classes_)
    proba = classifier.predict_proba(inputs.X[test])
    truth = inputs.labels[test].astype(str)
    report = classification_report(truth, classes[proba.argmax(axis=1)].astype(str), None, proba, classes.astype(str))
    return {
        "validation": report.to_dict(),
        "validation_split": (
            f"GroupShuffleSplit by subject: {len(test)} labeled images of {held_out_subjects} held-out subjects, "
            "none of their images (labeled or not) used in training"
        ),
    }


def trunk_network(module, backbone: str, weights: str, image_size: int) -> dict:
    """An ImageNet trunk in the fine-tune format of :func:`serieslabeler.models.predictions.save_model`."""

    return {
        "backbone": backbone,
        "weights": resolve_weights(backbone, weights).identity,
        "image_size": image_size,
        "state_dict": {k: v.detach().cpu() for k, v in module.trunk.state_dict().items()},
    }

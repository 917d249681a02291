"""Model files: the classifier as arrays plus JSON (``models/model-<id>.npz``, see
:mod:`serieslabeler.models.stored`) and, for image-input modes, the network's state dict
(``model-<id>.pt``, read with ``weights_only=True``). Nothing is unpickled: a model left as a
pickle by an older version is refused (train it again), as is a catalog path that is absolute
or leaves the workspace, and a model made with another scikit-learn major.minor."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

from serieslabeler.embed.backbones import (
    Backbone,
    WeightsChoice,
    finetune_preprocess,
    load_backbone,
)
from serieslabeler.errors import PipelineError
from serieslabeler.models.base import ModelRecord, Trained, TrainingData
from serieslabeler.models.stored import classifier_from_arrays, classifier_to_arrays
from serieslabeler.store.arrays import load_saved, save_arrays
from serieslabeler.store.paths import relative_inside
from serieslabeler.store.workspace import Workspace, atomic_path


def save_model(workspace: Workspace, mode: str, trained: Trained, data: TrainingData, params: dict) -> ModelRecord:
    """Insert the ``models`` row and write its files atomically, in one transaction."""
    classes = [str(c) for c in trained.classifier.classes_]
    with workspace.transaction() as db:
        model_id = db.execute(
            "INSERT INTO models(mode, feature_set, path, classes, params, metrics, training_set) VALUES (?,?,?,?,?,?,?)",
            (mode, trained.feature_set or "", "", json.dumps(classes), json.dumps(params), json.dumps(trained.metrics),
             json.dumps([int(i) for i in data.image_ids])),
        ).lastrowid
        feature_set = trained.feature_set or f"model-{model_id}"
        path = workspace.models_dir / f"model-{model_id}.npz"
        with atomic_path(path) as tmp:
            save_arrays(tmp, *classifier_to_arrays(trained.classifier))
        if trained.network is not None:
            import torch

            with atomic_path(network_path(workspace, model_id)) as tmp:
                torch.save(trained.network, tmp)
        db.execute(
            "UPDATE models SET path=?, feature_set=? WHERE id=?",
            (str(path.relative_to(workspace.root)), feature_set, model_id),
        )
    return load_model_record(workspace, model_id)


def _model_row(workspace: Workspace, model_id: int, columns: str = "*"):
    row = workspace.db.execute(f"SELECT {columns} FROM models WHERE id=?", (int(model_id),)).fetchone()
    if row is None:
        raise PipelineError(f"no model {model_id} in {workspace.root}; list them with 'serieslabeler models --workspace ...'")
    return row


def load_model_record(workspace: Workspace, model_id: int) -> ModelRecord:
    row = _model_row(workspace, model_id)
    return ModelRecord(
        row["id"], row["mode"], row["feature_set"], row["path"], json.loads(row["classes"]), json.loads(row["params"]),
        json.loads(row["metrics"]), json.loads(row["training_set"]), row["created_at"],
    )


def latest_model_id(workspace: Workspace) -> int:
    row = workspace.db.execute("SELECT MAX(id) FROM models").fetchone()
    if row[0] is None:
        raise PipelineError(f"no model in {workspace.root} yet; train one with 'serieslabeler train --workspace ...'")
    return int(row[0])


def model_classes(workspace: Workspace, model_id: int) -> list[str]:
    """A model's classes, in the order of its probability columns (its training set is not read)."""
    return json.loads(_model_row(workspace, model_id, "classes")["classes"])


def list_models(workspace: Workspace, classifiers_only: bool = False) -> list[dict]:
    """Every model's :meth:`ModelRecord.summary`, newest first; the training sets are counted in
    SQL, not decoded (each holds an id per labeled image). ``classifiers_only``: without the VAEs
    only pretrained so far (their centres not named yet), which have no head to predict or score with."""
    rows = workspace.db.execute(
        "SELECT id, mode, feature_set, path, classes, params, metrics, json_array_length(training_set) AS training_set, created_at "
        "FROM models ORDER BY id DESC"
    )
    decoded = ("classes", "params", "metrics")
    models = [{key: json.loads(row[key]) if key in decoded else row[key] for key in row.keys()} for row in rows]
    return [m for m in models if not classifiers_only or m["metrics"].get("phase") != "unsupervised"]


def load_classifier(workspace: Workspace, record: ModelRecord, device: str = "auto"):
    path = relative_inside(workspace.root, record.path, f"model {record.id} file")
    arrays, meta = load_saved(path, f"model {record.id}", "retrain it ('serieslabeler train' or the Train & route page)")
    return classifier_from_arrays(arrays, meta, device)


def network_path(workspace: Workspace, model_id: int):
    return workspace.models_dir / f"model-{model_id}.pt"


@dataclass(frozen=True)
class NetworkLoader:
    """Loads a fine-tuned network from its file alone (no catalog), so a Ray actor can build it."""

    path: str
    model_id: int

    def __call__(self):
        import torch

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
    """The fine-tuned network of a model as a :class:`serieslabeler.embed.backbones.Backbone` (eval mode)."""
    return network_loader(workspace, model_id)()

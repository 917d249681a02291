"""models.finetune"""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from serieslabeler.embed.backbones import (
    BACKBONES,
    finetune_preprocess,
    load_backbone,
    seeded_init,
)
from serieslabeler.embed.local import BatchNormalizer, ImageDataset, resolve_device
from serieslabeler.errors import PipelineError
from serieslabeler.metrics.classification import classification_report
from serieslabeler.models.base import Trained, TrainingData
from serieslabeler.models.configs import FinetuneConfig
from serieslabeler.models.head import LinearSoftmax
from serieslabeler.models.splits import grouped_split
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore
from serieslabeler.store.workspace import Workspace


# --- mode: finetune ---------------------------------------------------------------------------
def train_finetune(workspace: Workspace, data: TrainingData, feature_set: str, params: dict, seed: int, device: str, progress: Progress | None) -> Trained:
    """The backbone of ``feature_set`` (or ``backbone``/``weights``) with a new linear head, trained end to end."""
    options = FinetuneConfig.from_params(params)
    classes = np.unique(data.labels)
    codes = np.searchsorted(classes, data.labels)
    if not options.backbone:
        info = FeatureStore(workspace).info(feature_set)
        if info.backbone not in _known_backbones():
            raise PipelineError(f"feature set '{feature_set}' has no known backbone to fine-tune; pass backbone=NAME")
        options = replace(options, backbone=info.backbone, weights=options.weights or info.weights)
    options = replace(options, weights=options.weights or "default")
    device = resolve_device(device)
    split = grouped_split(data.subjects, options.val_share, seed) if len(np.unique(data.subjects)) >= 2 else None
    train_rows = np.arange(len(codes)) if split is None else split.train
    # the head's initialisation and the backbone's dropout draw from torch's generator, forked
    # and seeded here; batch order and augmentations from the trainer's own generator
    with seeded_init(seed, device):
        backbone = load_backbone(options.backbone, options.weights)
        options = replace(options, image_size=int(options.image_size or backbone.spec.preprocess.crop))
        trainer = _FineTuner(workspace, backbone, len(classes), options, device, seed)
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
        "backbone": options.backbone,
        "weights": backbone.weights.identity,
        "image_size": options.image_size,
        "state_dict": {k: v.cpu() for k, v in trainer.net.state_dict().items()},
    }
    return Trained(classifier, None, options.to_dict(), metrics, network)


def _known_backbones() -> tuple[str, ...]:

    return tuple(BACKBONES)


class _FineTuner:
    """Training loop state for one fine-tuning run."""

    def __init__(self, workspace: Workspace, backbone, n_classes: int, options: FinetuneConfig, device: str, seed: int):
        import torch

        self.workspace = workspace
        self.options = options
        self.device = device
        self.net = backbone.module.to(device)
        self.head = torch.nn.Linear(backbone.spec.dim, n_classes).to(device)
        self.train_preprocess = finetune_preprocess(backbone.spec, options.image_size, square=True)
        self.eval_preprocess = finetune_preprocess(backbone.spec, options.image_size, square=False)
        self.normalize = BatchNormalizer(backbone.spec.preprocess, device)
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.AdamW([
            {"params": self.net.parameters(), "lr": options.lr},
            {"params": self.head.parameters(), "lr": options.head_lr},
        ])

    def _loader(self, image_ids, preprocess, shuffle: bool):
        from torch.utils.data import DataLoader

        dataset = ImageDataset(image_ids, self.workspace.image_paths(image_ids), preprocess)
        batch_size = self.options.batch_size
        # a training batch of one image breaks batch normalization: drop a last batch of one
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle and len(dataset) % batch_size == 1,
                          num_workers=self.options.num_workers, generator=self.generator)

    def _augment(self, images):
        """Random crop of ``image_size`` from the square, horizontal flip, brightness +-10%."""
        import torch

        size = self.options.image_size
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
        import torch

        codes_t = torch.as_tensor(codes, dtype=torch.long)
        weights_t = torch.as_tensor(weights, dtype=torch.float32)
        row_of = {int(i): r for r, i in enumerate(image_ids)}
        loader = self._loader(image_ids[train_rows], self.train_preprocess, shuffle=True)
        epochs, patience = self.options.epochs, self.options.patience
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

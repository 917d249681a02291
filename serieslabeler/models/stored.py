"""A trained model's classifier as plain arrays plus JSON (:mod:`serieslabeler.store.arrays`).

What ``Trained.classifier`` can be, by training mode: a :class:`HeadClassifier` (``head``), a
:class:`LinearSoftmax` (``finetune``, and the image-input ``overcluster``/``vae`` modes, whose
network is a separate torch file read with ``weights_only=True``), or a fitted torch estimator
(:class:`TorchEstimator`: ``FuzzyOvercluster`` / ``LatentVAE`` on feature vectors). A torch
estimator is stored as its configuration, its fitted attributes and its network's state dict,
and rebuilt by its own ``_build_net(pretrained=False)``; its class is found among the
subclasses of :class:`TorchEstimator` by name, never imported from a name in the file.
"""
from __future__ import annotations

import dataclasses
import inspect
from types import SimpleNamespace

import numpy as np

from serieslabeler.embed.local import resolve_device
from serieslabeler.models.head import HeadClassifier, LinearSoftmax
from serieslabeler.models.torch_loop import Standardizer, TorchEstimator
from serieslabeler.store.arrays import (
    Arrays,
    ModelFileError,
    classes_from_array,
    classes_to_array,
    json_params,
    logistic_from_arrays,
    logistic_to_arrays,
    mlp_from_arrays,
    mlp_to_arrays,
    nest,
    part,
    standard_scaler_from_arrays,
    standard_scaler_to_arrays,
    take,
)

HEAD_KIND = "serieslabeler.HeadClassifier"
LINEAR_KIND = "serieslabeler.LinearSoftmax"
TORCH_KIND = "serieslabeler.TorchEstimator"
HEAD_MODELS = {"LogisticRegression": (logistic_to_arrays, logistic_from_arrays), "MLPClassifier": (mlp_to_arrays, mlp_from_arrays)}


def classifier_to_arrays(classifier) -> tuple[Arrays, dict]:
    """``(arrays, meta)`` for :func:`serieslabeler.store.arrays.save_arrays`."""
    if isinstance(classifier, HeadClassifier):
        return _head_to_arrays(classifier)
    if isinstance(classifier, LinearSoftmax):
        classes, dtype = classes_to_array(classifier.classes_)
        return {"weight": classifier.weight, "bias": classifier.bias, "classes_": classes}, {"kind": LINEAR_KIND, "classes_dtype": dtype}
    if isinstance(classifier, TorchEstimator):
        return _torch_to_arrays(classifier)
    raise ValueError(f"a {type(classifier).__name__} cannot be saved as arrays")


def classifier_from_arrays(arrays: Arrays, meta: dict, device: str = "auto"):
    kind = meta.get("kind")
    if kind == HEAD_KIND:
        return _head_from_arrays(arrays, meta)
    if kind == LINEAR_KIND:
        return LinearSoftmax(take(arrays, "weight"), take(arrays, "bias"), classes_from_array(take(arrays, "classes_"), meta["classes_dtype"]))
    if kind == TORCH_KIND:
        return _torch_from_arrays(arrays, meta, device)
    raise ModelFileError(f"not a classifier file (kind {kind!r})")


# --- HeadClassifier ------------------------------------------------------------------------------
def _head_to_arrays(head: HeadClassifier) -> tuple[Arrays, dict]:
    classes, dtype = classes_to_array(head.classes_)
    scaler_arrays, scaler_meta = standard_scaler_to_arrays(head.scaler_)
    arrays = {"classes_": classes, **nest("scaler", scaler_arrays)}
    meta = {"kind": HEAD_KIND, "params": json_params(_init_params(head)), "classes_dtype": dtype, "scaler": scaler_meta, "model": None}
    if head.model_ is not None:
        model_arrays, model_meta = HEAD_MODELS[type(head.model_).__name__][0](head.model_)
        arrays.update(nest("model", model_arrays))
        meta["model"] = {"class": type(head.model_).__name__, **model_meta}
    return arrays, meta


def _head_from_arrays(arrays: Arrays, meta: dict) -> HeadClassifier:
    head = HeadClassifier(**meta["params"])
    head.classes_ = classes_from_array(take(arrays, "classes_"), meta["classes_dtype"])
    head.scaler_ = standard_scaler_from_arrays(part(arrays, "scaler"), meta["scaler"])
    head.model_ = None
    if meta["model"] is not None:
        if meta["model"]["class"] not in HEAD_MODELS:
            raise ModelFileError(f"unknown head model {meta['model']['class']!r}")
        head.model_ = HEAD_MODELS[meta["model"]["class"]][1](part(arrays, "model"), meta["model"])
    return head


# --- torch estimators ----------------------------------------------------------------------------
def _init_params(estimator) -> dict:
    names = [n for n in inspect.signature(type(estimator).__init__).parameters if n != "self"]
    return {name: getattr(estimator, name) for name in names}


def _torch_to_arrays(estimator: TorchEstimator) -> tuple[Arrays, dict]:
    """Configuration and plain fitted attributes as JSON; arrays, the standardizer, the training
    history, the random generator's state and the network's state dict each in their own form."""
    params = _init_params(estimator)
    arrays: Arrays = {}
    attributes, tuples, special = {}, [], {}
    for name, value in vars(estimator).items():
        if name in params or name == "device_":
            continue
        if name == "net_":
            arrays.update(nest("net", {key: tensor.detach().cpu().numpy() for key, tensor in value.state_dict().items()}))
        elif isinstance(value, Standardizer):
            special[name] = {"type": "standardizer", "input": value.input}
            arrays.update(nest(name, {k: v for k, v in (("mean_", value.mean_), ("scale_", value.scale_)) if v is not None}))
        elif isinstance(value, np.random.Generator):
            special[name] = {"type": "generator", "state": value.bit_generator.state}
        elif isinstance(value, list) and value and all(_is_record(item) for item in value):
            special[name] = {"type": "records", "items": [dict(vars(item)) for item in value]}
        elif isinstance(value, np.ndarray):
            stored, dtype = classes_to_array(value)
            arrays[name] = stored
            special[name] = {"type": "array", "dtype": dtype}
        else:
            if isinstance(value, tuple):
                tuples.append(name)
            attributes[name] = value
    meta = {
        "kind": TORCH_KIND, "class": type(estimator).__name__, "params": json_params(params),
        "attributes": json_params(attributes), "tuples": tuples, "special": special,
    }
    return arrays, meta


def _is_record(item) -> bool:
    """A training-history entry: a dataclass, or one read back from a file (a SimpleNamespace)."""
    return dataclasses.is_dataclass(item) or isinstance(item, SimpleNamespace)


def _estimator_class(name: str) -> type[TorchEstimator]:
    found = {cls.__name__: cls for cls in _subclasses(TorchEstimator)}
    if name not in found:
        raise ModelFileError(f"unknown model class {name!r}")
    return found[name]


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def _torch_from_arrays(arrays: Arrays, meta: dict, device: str) -> TorchEstimator:
    import torch

    estimator = _estimator_class(meta["class"])(**meta["params"])
    for name, value in meta["attributes"].items():
        setattr(estimator, name, tuple(value) if name in meta["tuples"] else value)
    for name, spec in meta["special"].items():
        setattr(estimator, name, _special_value(name, spec, arrays))
    estimator.device_ = resolve_device("cpu" if estimator.device == "cpu" else device)
    estimator.net_ = estimator._build_net(pretrained=False)
    try:
        estimator.net_.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in part(arrays, "net").items()})
    except RuntimeError:
        raise ModelFileError(f"a saved {meta['class']} does not fit this version's network; train the model again") from None
    estimator.net_.to(estimator.device_).eval()
    return estimator


def _special_value(name: str, spec: dict, arrays: Arrays):
    kind = spec["type"]
    if kind == "standardizer":
        scaler = Standardizer(spec["input"])
        stored = part(arrays, name)
        scaler.mean_, scaler.scale_ = stored.get("mean_"), stored.get("scale_")
        return scaler
    if kind == "generator":
        generator = np.random.default_rng()
        generator.bit_generator.state = spec["state"]
        return generator
    if kind == "records":
        return [SimpleNamespace(**item) for item in spec["items"]]
    if kind == "array":
        return classes_from_array(take(arrays, name), spec["dtype"])
    raise ModelFileError(f"unknown stored attribute type {kind!r}")

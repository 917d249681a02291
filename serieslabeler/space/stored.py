"""A map's model (:class:`MapModel`: the metadata encoding, PCA and openTSNE embedding) as plain
arrays plus JSON (:mod:`serieslabeler.store.arrays`): a map file never runs code when read."""
from __future__ import annotations

import numpy as np

from serieslabeler.space.metadata import MetadataAppender, _FieldEncoder
from serieslabeler.store.arrays import (
    Arrays,
    json_params,
    nest,
    part,
    pca_from_arrays,
    pca_to_arrays,
    take,
    tsne_from_arrays,
    tsne_to_arrays,
)

MAP_MODEL_KIND = "serieslabeler.MapModel"


def appender_to_arrays(appender: MetadataAppender) -> tuple[Arrays, dict]:
    arrays: Arrays = {"feature_mean_": appender.feature_mean_}
    encoders = []
    for i, (name, encoder) in enumerate(appender.encoders_.items()):
        arrays[f"center_{i}"] = np.asarray(encoder.center_)
        encoders.append({
            "name": name, "kind": encoder.kind, "mean_": getattr(encoder, "mean_", None),
            "categories_": getattr(encoder, "categories_", None), "scale_": float(encoder.scale_), "width_": int(encoder.width_),
        })
    meta = {
        "params": json_params({"weights": dict(appender.weights or {}), "kinds": dict(appender.kinds or {})}),
        "weights_": json_params(dict(appender.weights_)), "feature_scale_": float(appender.feature_scale_),
        "blocks_": {name: [block.start, block.stop] for name, block in appender.blocks_.items()}, "encoders_": encoders,
    }
    return arrays, meta


def appender_from_arrays(arrays: Arrays, meta: dict) -> MetadataAppender:
    appender = MetadataAppender(**meta["params"])
    appender.weights_ = dict(meta["weights_"])
    appender.feature_mean_ = take(arrays, "feature_mean_")
    appender.feature_scale_ = float(meta["feature_scale_"])
    appender.blocks_ = {name: slice(start, stop) for name, (start, stop) in meta["blocks_"].items()}
    appender.encoders_ = {}
    for i, stored in enumerate(meta["encoders_"]):
        encoder = _FieldEncoder(stored["kind"])
        if stored["mean_"] is not None:
            encoder.mean_ = float(stored["mean_"])
        if stored["categories_"] is not None:
            encoder.categories_ = list(stored["categories_"])
        encoder.center_, encoder.scale_, encoder.width_ = take(arrays, f"center_{i}"), stored["scale_"], stored["width_"]
        appender.encoders_[stored["name"]] = encoder
    return appender


MAPPER_FITTED = ("perplexity_", "negative_gradient_method_", "kl_divergence_")


def map_model_to_arrays(model) -> tuple[Arrays, dict]:
    """A fitted :class:`serieslabeler.space.reduce.MapModel` as ``(arrays, meta)`` for ``save_arrays``."""
    mapper = model.mapper
    appender_arrays, appender_meta = appender_to_arrays(model.appender)
    pca_arrays, pca_meta = pca_to_arrays(mapper.pca_)
    tsne_arrays, tsne_meta = tsne_to_arrays(mapper.embedding_)
    arrays = {
        **nest("appender", appender_arrays), **nest("pca", pca_arrays), **nest("tsne", tsne_arrays),
        "fit_index_": np.asarray(mapper.fit_index_),
    }
    mapper_params = {name: getattr(mapper, name) for name in ("perplexity", "pca_components", "random_state", "n_jobs", "negative_gradient_method", "n_iter", "max_fit")}
    meta = {
        "kind": MAP_MODEL_KIND, "absolute_dates": bool(model.absolute_dates), "appender": appender_meta,
        "mapper": {"params": json_params(mapper_params), **json_params({name: getattr(mapper, name) for name in MAPPER_FITTED})},
        "pca": pca_meta, "tsne": tsne_meta,
    }
    return arrays, meta


def map_model_parts(arrays: Arrays, meta: dict, mapper_class, n_jobs: int = 1):
    """``(appender, mapper, absolute_dates)`` rebuilt from :func:`map_model_to_arrays`'s output."""
    mapper = mapper_class(**meta["mapper"]["params"])
    for name in MAPPER_FITTED:
        setattr(mapper, name, meta["mapper"][name])
    mapper.fit_index_ = take(arrays, "fit_index_")
    mapper.pca_ = pca_from_arrays(part(arrays, "pca"), meta["pca"])
    mapper.embedding_ = tsne_from_arrays(part(arrays, "tsne"), meta["tsne"], n_jobs=n_jobs)
    return appender_from_arrays(part(arrays, "appender"), meta["appender"]), mapper, bool(meta["absolute_dates"])

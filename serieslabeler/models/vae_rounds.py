"""A VAE whose latent cluster centres the expert names (top-down hierarchical labeling).

On a collection with almost no labels, an expert names a dozen cluster centres faster than
he reviews clusters. The steps, on arrays:

1. :meth:`LatentVAE.fit_unsupervised`: a few epochs of the VAE alone, on backbone features
   (default, fast) or on small images;
2. :func:`cluster_latents`: k-means on the latent vectors, ``k`` from the elbow of the
   inertia curve (:func:`elbow_k`);
3. :func:`centre_pictures`: each centre decoded back to the input space (an image of the
   input shape in image mode) plus the member nearest to the centre, a real picture to
   show when the input is a feature vector;
4. the expert gives each centre a label and a confidence (:class:`CentreDecision`), or asks
   for a split: :func:`split_latent_cluster` re-clusters that cluster with k=2 (top-down);
5. :func:`centre_training_labels`: every member gets its centre's label with weight
   ``w_n = p_c exp(-a d_n)``, ``d_n`` its latent distance to the centre divided by the
   cluster's median distance, so ``a`` means the same for tight and loose clusters;
6. :meth:`LatentVAE.fit_labeled`: training continues with the classification term,
   ``L = L_VAE - gamma * sum_n w_n y_n ln yhat_n``, through a head on the latent mean.

In a workspace the same steps reuse the catalog's own machinery: :func:`vae_centres`
(``serieslabeler vae-centres``) does 1-2 and stores the latents as the feature set
``model-<id>`` with a k-means clustering of them; :func:`decoded_centres` does 3 for any
clustering of those latents; naming is ``label_cluster`` with a confidence (its weights are
exactly step 5), a split is ``split_cluster`` on that clustering (k=2 in latent space); and
:func:`train_vae`, the training mode ``vae``, does 6 on the accepted labels.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np

from serieslabeler.clustering.runs import (
    list_clusterings,
    load_clustering,
    run_clustering,
)
from serieslabeler.clustering.suggest import suggest_k
from serieslabeler.errors import PipelineError
from serieslabeler.models.base import Trained, TrainingData, default_feature_set
from serieslabeler.models.configs import VAEConfig
from serieslabeler.models.features import (
    _all_inputs,
    _input_backbone,
    latent_set_name,
    vae_model_of,
)
from serieslabeler.models.files import load_classifier, load_model_record, save_model
from serieslabeler.models.head import LinearSoftmax
from serieslabeler.models.modes import (
    grouped_holdout,
    holdout_metrics,
    mode_inputs,
    trunk_network,
)
from serieslabeler.models.vae import LatentVAE, centre_pictures
from serieslabeler.progress import Progress
from serieslabeler.store.features import FeatureStore


# --- in a workspace: centres to name (phase 1) and the ``vae`` training mode (phase 2) -----
@dataclass(frozen=True)
class CentreRound:
    """Phase 1 in a workspace: the unsupervised VAE (a model), its latents, their clustering."""

    model_id: int
    feature_set: str
    latents: str
    clustering_id: int
    k: int
    images: int

    def to_dict(self) -> dict:
        return dict(vars(self))


def _vae_for(options: VAEConfig, backbone: str, weights: str | None, seed: int, device: str) -> LatentVAE:
    return LatentVAE(
        input=options.input, backbone=backbone, backbone_weights=weights, latent_dim=options.latent_dim,
        hidden=options.hidden, beta=options.beta, gamma=options.gamma, pretrain_epochs=options.pretrain_epochs,
        epochs=options.epochs, batch_size=options.batch_size, lr=options.lr,
        unlabeled_ratio=options.unlabeled_ratio, device=device, random_state=seed,
    )


def vae_centres(
    workspace,
    feature_set: str | None = None,
    k: int | None = None,
    k_max: int = 12,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
    **params,
) -> CentreRound:
    """Phase 1: train the VAE without labels, store its latents, cluster them for the expert.

    The VAE is trained on every image ``feature_set`` covers (its vectors, or with
    ``input="images"`` their pixels) and saved as a model of mode ``vae`` without classes.
    Its latent means become the feature set ``model-<id>``, clustered by k-means with ``k``
    from the elbow (or ``k``). The expert names the clusters with ``label_cluster`` (a label
    and a confidence ``p_c``: members get ``p_c exp(-a d)``) or splits one in two
    (:func:`serieslabeler.clustering.runs.split_cluster` on that clustering is the top-down split in
    latent space); :func:`decoded_centres` gives the pictures to show. Then
    ``train --mode vae`` continues this VAE with the classification term.
    """

    options = VAEConfig.from_params(params, only=VAEConfig.CENTRE_OPTIONS)
    store = FeatureStore(workspace)
    feature_set = store.resolve(feature_set) if feature_set else default_feature_set(workspace)
    image_ids = store.ids(feature_set)
    if len(image_ids) < 3:
        raise PipelineError(f"feature set '{feature_set}' covers {len(image_ids)} image(s); the VAE needs at least 3")
    backbone, weights = _input_backbone(workspace, feature_set, options)
    X = _all_inputs(workspace, feature_set, image_ids, options, backbone, progress)
    model = _vae_for(options, backbone, weights, seed, device).fit_unsupervised(X, progress=progress)
    metrics = {"history": [vars(h) for h in model.history_], "phase": "unsupervised", "images": len(image_ids)}
    options = replace(options, backbone=backbone, weights=weights)
    empty = np.empty(0)
    record = save_model(
        workspace, "vae", Trained(model, feature_set, options.to_dict(), metrics), TrainingData(empty.astype(np.int64), empty, empty, empty),
        {**options.to_dict(), "seed": seed},
    )
    latents = latent_set_name(record.id)
    store.register(latents, "vae", latents, model.latent_dim, params={"model_id": record.id, "latent_of": feature_set})
    store.append(latents, image_ids, model.transform(X))
    if k is None:
        k = suggest_k(workspace, latents, ks=range(2, max(2, min(k_max, len(image_ids) - 1)) + 1), seed=seed).elbow_k
    clustering = run_clustering(workspace, latents, "kmeans", int(k), seed=seed)
    return CentreRound(record.id, feature_set, latents, clustering.id, clustering.k, len(image_ids))


@dataclass(frozen=True)
class CentrePicture:
    """One cluster of a VAE's latent clustering as the expert sees it.

    ``decoded``: the centre decoded, ``(3, H, W)`` in [0, 1] for an image VAE (show it),
    a feature vector for a feature VAE (show ``nearest_image_id`` instead).
    """

    cluster: int
    size: int
    nearest_image_id: int
    decoded: np.ndarray
    is_image: bool


def decoded_centres(workspace, clustering_id: int) -> list[CentrePicture]:
    """The centres of a clustering made on a VAE's latents (also after splits and merges), decoded."""

    clustering = load_clustering(workspace, clustering_id)
    _, model = vae_model_of(workspace, clustering.feature_set)
    _, Z = FeatureStore(workspace).load(clustering.feature_set, clustering.image_ids)
    pictures = centre_pictures(model, Z, clustering.clusters)
    return [
        CentrePicture(int(c), int((clustering.clusters == c).sum()), int(clustering.image_ids[row]), decoded, model.input == "images")
        for c, row, decoded in zip(pictures.clusters, pictures.nearest, pictures.decoded)
    ]


def latent_clusterings(workspace) -> list[dict]:
    """The clusterings made on a phase-1 VAE's latents (also splits and merges of them), newest first."""

    rows = workspace.db.execute("SELECT id FROM models WHERE mode='vae' AND json_extract(metrics, '$.phase') = 'unsupervised'")
    latents = {latent_set_name(r[0]) for r in rows}
    return [c for c in list_clusterings(workspace) if c["feature_set"] in latents]


def latest_vae_model(workspace) -> int | None:
    """The newest phase-1 VAE (the one whose latent clusters the expert has been naming)."""
    row = workspace.db.execute(
        "SELECT MAX(id) FROM models WHERE mode='vae' AND json_extract(metrics, '$.phase') = 'unsupervised'"
    ).fetchone()
    return row[0]


def train_vae(workspace, data, feature_set: str, params: dict, seed: int, device: str, progress: Progress | None):
    """Training mode ``vae`` (:data:`serieslabeler.models.predictions.MODES`): the classification term on the accepted labels.

    Continues the VAE of ``init_model`` (default: the newest ``vae`` model, whose latent
    clusters the expert named), on that model's input; without one, pretrains a new VAE on
    ``feature_set`` first. Validation: a quarter of the labeled subjects held out.
    """
    options = VAEConfig.from_params(params)
    init_model = options.init_model if options.init_model is not None else latest_vae_model(workspace)
    model = None
    if init_model is not None:
        record = load_model_record(workspace, init_model)
        model = load_classifier(workspace, record)
        if record.mode != "vae" or not isinstance(model, LatentVAE):
            raise PipelineError(f"init_model {init_model} is not a VAE to continue; name a model made by 'vae-centres'")
        feature_set = record.feature_set
        options = replace(options, **{name: record.params[name] for name in VAEConfig.CENTRE_OPTIONS if name in record.params})
        model.set_params(gamma=options.gamma, epochs=options.epochs, unlabeled_ratio=options.unlabeled_ratio)
        model.to_device(device)
    inputs = mode_inputs(workspace, data, feature_set, options, seed, device, progress)
    if model is None:
        backbone, weights = _input_backbone(workspace, feature_set, options)
        options = replace(options, backbone=backbone, weights=weights)
        model = _vae_for(options, backbone, weights, seed, device).fit_unsupervised(inputs.X, progress=progress)
    metrics: dict = {"validation": None, "validation_note": "needs labels of at least 2 subjects and 2 classes"}
    holdout = grouped_holdout(inputs, seed) if options.validate else None
    if holdout is not None:
        train, test = holdout
        probe = copy.deepcopy(model).fit_labeled(inputs.X[train], inputs.labels[train], inputs.weights[train])
        metrics = holdout_metrics(probe, inputs, test, len(np.unique(inputs.subjects[test])))
    pretrained = len(model.history_)
    model.fit_labeled(inputs.X, inputs.labels, inputs.weights, progress=progress)
    metrics.update(
        history=[vars(h) for h in model.history_[pretrained:]], init_model=init_model,
        unlabeled_pool=len(inputs.image_ids) - inputs.n_labeled,
    )
    options = replace(options, init_model=init_model)
    if options.input == "features":
        return Trained(model, feature_set, options.to_dict(), metrics)
    return Trained(_latent_head(model), None, options.to_dict(), metrics, _encoder_network(model, options))


def _latent_head(model: LatentVAE):
    """The classifier on the latent mean, folded onto the encoder's trunk features (two linear maps)."""

    mu, head = model.net_.mu, model.net_.classifier
    weight = head.weight.detach().cpu().numpy() @ mu.weight.detach().cpu().numpy()
    bias = head.weight.detach().cpu().numpy() @ mu.bias.detach().cpu().numpy() + head.bias.detach().cpu().numpy()
    return LinearSoftmax(weight, bias, model.classes_)


def _encoder_network(model: LatentVAE, options: VAEConfig) -> dict:

    if not hasattr(model.net_.encoder, "trunk"):
        raise PipelineError(f"an image VAE in a workspace needs an ImageNet encoder (backbone=resnet18, ...), not '{model.backbone_}'")
    return trunk_network(model.net_.encoder, model.backbone_, model.backbone_weights or "random", options.image_size)

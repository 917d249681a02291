"""Fitted models saved as plain arrays plus JSON in an .npz file: no pickle anywhere.

Unpickling runs whatever code the file names, so a pickled model in a shared workspace is a way
to run code as whoever opens it. Here a model file is an uncompressed .npz of numeric (or
fixed-width string) arrays; its ``__meta__`` entry is UTF-8 JSON stored as a uint8 array. It is
read with ``allow_pickle=False``, and every estimator is rebuilt from arrays and parameters.

``meta`` also records the library versions the model was made with: a model is only trusted
by the scikit-learn / openTSNE major.minor it came from, since their fitted attributes change
between releases (:class:`VersionMismatch`).

Each ``*_to_arrays`` returns ``(arrays, meta)`` ready for :func:`save_arrays`, and each
``*_from_arrays`` takes what :func:`load_arrays` returns.
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import LabelBinarizer, StandardScaler

from serieslabeler.errors import PipelineError
from serieslabeler.store.workspace import atomic_path

FORMAT = "serieslabeler.arrays/1"
META_KEY = "__meta__"
# Libraries whose fitted attributes a model depends on: import name -> name shown to users.
CHECKED_LIBRARIES = {"sklearn": "scikit-learn", "openTSNE": "openTSNE"}
# How openTSNE's nearest-neighbour index classes are chosen by name in its ``method`` argument.
KNN_METHODS = {"Sklearn": "exact", "Annoy": "annoy", "NNDescent": "pynndescent", "HNSW": "hnsw"}
TSNE_AFFINITIES = ("MultiscaleMixture", "PerplexityBasedNN")

StrPath = str | os.PathLike[str]
Arrays = dict[str, np.ndarray]


class ModelFileError(PipelineError, ValueError):
    """A model file that is not a plain-array file of ours, or lacks what its kind needs."""


class VersionMismatch(PipelineError, ValueError):
    """A model made with another major.minor of scikit-learn or openTSNE than the installed one."""


# --- the file format ---------------------------------------------------------------------------
def save_record_arrays(path: Path, record) -> None:
    """A dataclass whose fields are arrays, written atomically as an .npz (one entry per field)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{name: np.asarray(getattr(record, name)) for name in record.__dataclass_fields__})


def load_record_arrays(path: Path, cls):
    """The ``cls`` dataclass :func:`save_record_arrays` wrote (read without pickle)."""
    with np.load(path, allow_pickle=False) as arrays:
        return cls(**{name: arrays[name] for name in cls.__dataclass_fields__})


def installed_versions() -> dict[str, str]:
    """Versions of numpy, Python and of each checked library that can be imported."""
    versions = {"numpy": np.__version__, "python": platform.python_version()}
    for module_name in CHECKED_LIBRARIES:
        try:
            versions[module_name] = importlib.import_module(module_name).__version__
        except ImportError:
            continue
    return versions


def save_arrays(path: StrPath, arrays: Arrays, meta: dict) -> None:
    """Write ``arrays`` and ``meta`` (plus format and versions) to ``path`` as an .npz.

    Writes exactly ``path`` (no '.npz' appended); callers wanting atomicity pass a temporary path.
    """
    if META_KEY in arrays:
        raise ValueError(f"'{META_KEY}' is reserved for the metadata; rename that array")
    plain = {name: _plain_array(name, value) for name, value in arrays.items()}
    full_meta = {**meta, "format": FORMAT, "versions": installed_versions()}
    plain[META_KEY] = np.frombuffer(json.dumps(full_meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **plain)


def load_arrays(path: StrPath, expected_versions_check: bool = True) -> tuple[Arrays, dict]:
    """``(arrays, meta)`` from a file written by :func:`save_arrays`, pickles refused.

    With ``expected_versions_check`` a model from another scikit-learn / openTSNE major.minor
    raises :class:`VersionMismatch`; pass False and call :func:`check_versions` to decide yourself.
    """
    path = Path(path)
    with _open_npz(path) as npz:
        arrays = {name: _read_entry(npz, name, path) for name in npz.files}
    meta = _decode_meta(arrays.pop(META_KEY, None), path)
    if expected_versions_check:
        try:
            check_versions(meta)
        except VersionMismatch as mismatch:
            raise VersionMismatch(f"{path.name}: {mismatch}") from None
    return arrays, meta


def load_saved(path: Path, what: str, remedy: str) -> tuple[Arrays, dict]:
    """:func:`load_arrays` for a file of a workspace, every refusal one user-facing line naming
    ``what`` (``model 3``) and the ``remedy``: a pickle (or a pickle left where the arrays should
    be, by an older version) is refused unread, a missing file and another version are named."""
    path = Path(path)
    if path.suffix == ".pkl" or (not path.is_file() and path.with_suffix(".pkl").is_file()):
        raise PipelineError(f"{what} was saved as a pickle by an older version, and pickles are never loaded; {remedy}")
    if not path.is_file():
        raise PipelineError(f"{what}: its file {path.name} is missing; {remedy}")
    try:
        return load_arrays(path)
    except VersionMismatch as mismatch:
        raise PipelineError(f"{what}: {mismatch}; {remedy}") from None


def check_versions(meta: dict) -> None:
    """Raise :class:`VersionMismatch` if a checked library's major.minor differs from the recorded one.

    A library recorded but not installed is not checked here: rebuilding a model that needs it
    fails on its import with a plain ImportError.
    """
    recorded = meta.get("versions", {})
    installed = installed_versions()
    for module_name, shown in CHECKED_LIBRARIES.items():
        if module_name not in recorded or module_name not in installed:
            continue
        made_with, here = _major_minor(recorded[module_name]), _major_minor(installed[module_name])
        if made_with != here:
            raise VersionMismatch(f"made with {shown} {made_with}, this is {here}")


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _plain_array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.hasobject:
        raise ValueError(f"array '{name}' holds Python objects ({array.dtype}); only plain arrays can be saved")
    return array


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:  # numpy takes anything that is neither .npy nor .npz for a pickle
        raise ModelFileError(f"{path.name}: refused, it holds a pickle or is no array file ({error})") from None
    except (EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path.name}: empty or damaged ({error})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path.name}: a single .npy array, not a model file (.npz)")
    _refuse_compressed_entries(loaded, path)
    return loaded


def _refuse_compressed_entries(npz: np.lib.npyio.NpzFile, path: Path) -> None:
    """np.savez stores entries uncompressed, so a compressed entry is foreign, and it could
    inflate far beyond the file's size when read."""
    for info in npz.zip.infolist():
        if info.compress_type != zipfile.ZIP_STORED:
            npz.close()
            raise ModelFileError(f"{path.name}: entry '{info.filename}' is compressed; not a model file of ours")


def _read_entry(npz: np.lib.npyio.NpzFile, name: str, path: Path) -> np.ndarray:
    try:
        return npz[name]
    except ValueError as error:  # e.g. "Object arrays cannot be loaded when allow_pickle=False"
        raise ModelFileError(
            f"{path.name}: entry '{name}' cannot be loaded as a plain array ({error}); pickled objects are never loaded"
        ) from None


def _decode_meta(raw: np.ndarray | None, path: Path) -> dict:
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path.name}: no '{META_KEY}' entry; not a model file of ours")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path.name}: its metadata is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path.name}: not a {FORMAT} file")
    return meta


# --- shared pieces of the estimator (de)serialisers ---------------------------------------------
def nest(prefix: str, arrays: Arrays) -> Arrays:
    """``arrays`` under ``prefix/`` names, to store several estimators' arrays in one file."""
    return {f"{prefix}/{name}": value for name, value in arrays.items()}


def part(arrays: Arrays, prefix: str) -> Arrays:
    """The arrays stored by :func:`nest` under ``prefix``, with their own names back."""
    head = f"{prefix}/"
    return {name[len(head):]: value for name, value in arrays.items() if name.startswith(head)}


def _require_kind(meta: dict, kind: str) -> None:
    if meta.get("kind") != kind:
        raise ModelFileError(f"expected a {kind} model, this file holds {meta.get('kind')!r}")


def take(arrays: Arrays, name: str) -> np.ndarray:
    try:
        return arrays[name]
    except KeyError:
        raise ModelFileError(f"the model file lacks its '{name}' array") from None


def json_params(params: dict) -> dict:
    """Estimator parameters as JSON values (tuples become lists, numpy scalars Python ones)."""
    converted = {}
    for name, value in params.items():
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name}={value!r} cannot be stored as JSON; set it to a plain value") from None
        converted[name] = value
    return converted


def classes_to_array(classes: np.ndarray) -> tuple[np.ndarray, str]:
    """``classes_`` as a plain array, and the dtype to restore: object arrays of labels
    (what scikit-learn keeps for string labels) are stored as fixed-width strings."""
    classes = np.asarray(classes)
    if not classes.dtype.hasobject:
        return classes, classes.dtype.str
    if not all(isinstance(label, str) for label in classes):
        raise ValueError("class labels must all be strings, or all numbers, to be saved")
    return classes.astype(str), "object"


def classes_from_array(stored: np.ndarray, dtype: str) -> np.ndarray:
    return stored.astype(object) if dtype == "object" else stored.astype(dtype)


def _input_arrays(model) -> Arrays:
    """``feature_names_in_`` when the model was fitted on a DataFrame (sklearn checks it on predict)."""
    if not hasattr(model, "feature_names_in_"):
        return {}
    return {"feature_names_in_": np.asarray(model.feature_names_in_).astype(str)}


def _restore_inputs(model, arrays: Arrays, meta: dict) -> None:
    model.n_features_in_ = int(meta["n_features_in_"])
    if "feature_names_in_" in arrays:
        model.feature_names_in_ = arrays["feature_names_in_"].astype(object)


def _scalar(array: np.ndarray):
    """A 0-d array back as the numpy scalar it was saved from."""
    return array[()] if array.ndim == 0 else array


# --- scikit-learn ------------------------------------------------------------------------------
def logistic_to_arrays(model) -> tuple[Arrays, dict]:
    """A fitted ``sklearn.linear_model.LogisticRegression``."""
    classes, classes_dtype = classes_to_array(model.classes_)
    arrays = {"coef_": model.coef_, "intercept_": model.intercept_, "classes_": classes, **_input_arrays(model)}
    meta = {
        "kind": "sklearn.LogisticRegression", "params": json_params(model.get_params()),
        "classes_dtype": classes_dtype, "n_features_in_": int(model.n_features_in_),
    }
    return arrays, meta


def logistic_from_arrays(arrays: Arrays, meta: dict):
    _require_kind(meta, "sklearn.LogisticRegression")
    model = LogisticRegression(**meta["params"])
    model.coef_ = take(arrays, "coef_")
    model.intercept_ = take(arrays, "intercept_")
    model.classes_ = classes_from_array(take(arrays, "classes_"), meta["classes_dtype"])
    _restore_inputs(model, arrays, meta)
    return model


def mlp_to_arrays(model) -> tuple[Arrays, dict]:
    """A fitted ``sklearn.neural_network.MLPClassifier`` (single-label: one class per sample)."""
    if model._label_binarizer.y_type_ == "multilabel-indicator":
        raise ValueError("multi-label MLPClassifier models cannot be saved; train one label per image")
    classes, classes_dtype = classes_to_array(model.classes_)
    arrays = {"classes_": classes, **_input_arrays(model)}
    arrays.update({f"coefs_{i}": coef for i, coef in enumerate(model.coefs_)})
    arrays.update({f"intercepts_{i}": intercept for i, intercept in enumerate(model.intercepts_)})
    meta = {
        "kind": "sklearn.MLPClassifier", "params": json_params(model.get_params()),
        "classes_dtype": classes_dtype, "n_features_in_": int(model.n_features_in_),
        "n_layers_": int(model.n_layers_), "n_outputs_": int(model.n_outputs_), "out_activation_": model.out_activation_,
    }
    return arrays, meta


def mlp_from_arrays(arrays: Arrays, meta: dict):
    """The classifier back, ready for ``predict``/``predict_proba`` (not for further training:
    the optimiser's state is not saved)."""
    _require_kind(meta, "sklearn.MLPClassifier")
    params = dict(meta["params"])
    params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    model = MLPClassifier(**params)
    layers = int(meta["n_layers_"])
    model.coefs_ = [take(arrays, f"coefs_{i}") for i in range(layers - 1)]
    model.intercepts_ = [take(arrays, f"intercepts_{i}") for i in range(layers - 1)]
    model.n_layers_ = layers
    model.n_outputs_ = int(meta["n_outputs_"])
    model.out_activation_ = meta["out_activation_"]
    model.classes_ = classes_from_array(take(arrays, "classes_"), meta["classes_dtype"])
    # predict() maps the output layer back to labels through the binarizer fitted on y at training
    # time; for single-label y, one fitted on the classes themselves is the same mapping.
    model._label_binarizer = LabelBinarizer().fit(model.classes_)
    _restore_inputs(model, arrays, meta)
    return model


SCALER_ARRAYS = ("mean_", "scale_", "var_")


def standard_scaler_to_arrays(model) -> tuple[Arrays, dict]:
    """A fitted ``sklearn.preprocessing.StandardScaler`` (``mean_``/``scale_``/``var_`` are None
    when ``with_mean``/``with_std`` are off: those are simply not stored)."""
    arrays = {name: getattr(model, name) for name in SCALER_ARRAYS if getattr(model, name) is not None}
    arrays["n_samples_seen_"] = np.asarray(model.n_samples_seen_)
    arrays.update(_input_arrays(model))
    meta = {
        "kind": "sklearn.StandardScaler", "params": json_params(model.get_params()),
        "n_features_in_": int(model.n_features_in_),
    }
    return arrays, meta


def standard_scaler_from_arrays(arrays: Arrays, meta: dict):
    _require_kind(meta, "sklearn.StandardScaler")
    model = StandardScaler(**meta["params"])
    for name in SCALER_ARRAYS:
        setattr(model, name, arrays.get(name))
    model.n_samples_seen_ = _scalar(take(arrays, "n_samples_seen_"))
    _restore_inputs(model, arrays, meta)
    return model


PCA_ARRAYS = ("components_", "mean_", "explained_variance_", "explained_variance_ratio_", "singular_values_", "noise_variance_")


def pca_to_arrays(model) -> tuple[Arrays, dict]:
    """A fitted ``sklearn.decomposition.PCA``."""
    arrays = {name: np.asarray(getattr(model, name)) for name in PCA_ARRAYS}
    arrays.update(_input_arrays(model))
    meta = {
        "kind": "sklearn.PCA", "params": json_params(model.get_params()), "n_features_in_": int(model.n_features_in_),
        "n_components_": int(model.n_components_), "n_samples_": int(model.n_samples_),
    }
    return arrays, meta


def pca_from_arrays(arrays: Arrays, meta: dict):
    _require_kind(meta, "sklearn.PCA")
    model = PCA(**meta["params"])
    for name in PCA_ARRAYS:
        setattr(model, name, _scalar(take(arrays, name)))
    model.n_components_ = int(meta["n_components_"])
    model.n_samples_ = int(meta["n_samples_"])
    _restore_inputs(model, arrays, meta)
    return model


# --- openTSNE ----------------------------------------------------------------------------------
def tsne_to_arrays(embedding) -> tuple[Arrays, dict]:
    """A fitted ``openTSNE.TSNEEmbedding``, kept able to ``transform`` (place) new points.

    The affinity object is not stored: it is rebuilt on load from the training data (which its
    nearest-neighbour index holds) and the parameters that built it. The embedding's gradient
    descent parameters are kept too, except callbacks (they only matter while fitting).
    """
    affinities = embedding.affinities
    affinity_class = type(affinities).__name__
    if affinity_class not in TSNE_AFFINITIES:
        raise ValueError(f"t-SNE maps with {affinity_class} affinities cannot be saved; only {', '.join(TSNE_AFFINITIES)}")
    knn = affinities.knn_index
    knn_class = type(knn).__name__
    if knn_class not in KNN_METHODS:
        raise ValueError(f"t-SNE maps whose neighbours come from {knn_class} cannot be saved (no data to rebuild them from)")
    arrays = {"embedding": np.asarray(embedding), "training_data": np.asarray(knn.data)}
    meta = {
        "kind": "openTSNE.TSNEEmbedding",
        "affinity": {
            "class": affinity_class, "perplexity": _affinity_perplexity(affinities), "k_neighbors": int(knn.k),
            "method": KNN_METHODS[knn_class], "metric": knn.metric, "metric_params": knn.metric_params,
            "knn_kwargs": knn.knn_kwargs, "symmetrize": bool(affinities.symmetrize),
            "random_state": _plain_seed(knn.random_state, "the neighbour index"),
            "build_jobs": _build_jobs(knn.n_jobs),
        },
        "random_state": _plain_seed(embedding.random_state, "the embedding"),
        "gradient_descent_params": json_params(
            {name: value for name, value in embedding.gradient_descent_params.items() if name != "callbacks"}
        ),
        "kl_divergence": None if embedding.kl_divergence is None else float(embedding.kl_divergence),
    }
    return arrays, meta


def tsne_from_arrays(arrays: Arrays, meta: dict, n_jobs: int = 1):
    """The embedding back, with affinities recomputed, so ``.transform(new_points)`` works.

    ``n_jobs`` is what rebuilding and placing may use, except that an Annoy index (openTSNE's
    choice from 1,000 points) is rebuilt with the thread count of the fit (``build_jobs``):
    Annoy's trees depend on it, and with the same seed and thread count the neighbours, hence
    the placements, are identical.
    """
    import openTSNE
    from openTSNE import affinity as affinity_module

    _require_kind(meta, "openTSNE.TSNEEmbedding")
    settings = meta["affinity"]
    affinity_class = settings["class"]
    if affinity_class not in TSNE_AFFINITIES:
        raise ModelFileError(f"unknown t-SNE affinity class {affinity_class!r}")
    common = dict(
        method=settings["method"], metric=settings["metric"], metric_params=settings["metric_params"],
        symmetrize=settings["symmetrize"], random_state=settings["random_state"],
        n_jobs=settings["build_jobs"] if settings["method"] == "annoy" else n_jobs,
        knn_kwargs=settings["knn_kwargs"],
    )
    data = take(arrays, "training_data")
    if affinity_class == "MultiscaleMixture":
        affinities = affinity_module.MultiscaleMixture(data, perplexities=settings["perplexity"], **common)
    else:
        affinities = affinity_module.PerplexityBasedNN(
            data, perplexity=settings["perplexity"], k_neighbors=settings["k_neighbors"], **common
        )
    affinities.n_jobs = affinities.knn_index.n_jobs = n_jobs  # what placing points may use
    gradient_params = {**meta["gradient_descent_params"], "n_jobs": n_jobs}
    embedding = openTSNE.TSNEEmbedding(
        take(arrays, "embedding"), affinities, random_state=meta["random_state"], **gradient_params
    )
    embedding.kl_divergence = meta["kl_divergence"]
    return embedding


def _affinity_perplexity(affinities) -> float | list[float]:
    value = affinities.perplexities if type(affinities).__name__ == "MultiscaleMixture" else affinities.perplexity
    return [float(p) for p in value] if np.ndim(value) else float(value)


def _plain_seed(random_state, owner: str) -> int | None:
    if random_state is None:
        return None
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    raise ValueError(f"the random_state of {owner} is a {type(random_state).__name__}; only an int seed (or None) can be saved")


def _build_jobs(n_jobs: int | None) -> int:
    """The thread count a negative ``n_jobs`` (-1: all cores, -2: all but one...) meant on this machine."""
    if n_jobs is None:
        return 1
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)


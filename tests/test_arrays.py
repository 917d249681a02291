import json
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from serieslabeler.store import arrays as model_arrays
from serieslabeler.store.arrays import (
    META_KEY,
    ModelFileError,
    VersionMismatch,
    check_versions,
    installed_versions,
    load_arrays,
    logistic_from_arrays,
    logistic_to_arrays,
    mlp_from_arrays,
    mlp_to_arrays,
    pca_from_arrays,
    pca_to_arrays,
    save_arrays,
    standard_scaler_from_arrays,
    standard_scaler_to_arrays,
    tsne_from_arrays,
    tsne_to_arrays,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def roundtrip(tmp_path, arrays, meta, name="model.npz"):
    path = tmp_path / name
    save_arrays(path, arrays, meta)
    return load_arrays(path)


# --- the file format ---------------------------------------------------------------------------
def test_save_and_load_keep_arrays_meta_and_record_versions(tmp_path):
    data = {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "labels": np.array(["cat", "dög"])}
    arrays, meta = roundtrip(tmp_path, data, {"kind": "test", "note": "ünïcode"})
    assert set(arrays) == {"a", "labels"}
    assert arrays["a"].dtype == np.int16 and np.array_equal(arrays["a"], data["a"])
    assert arrays["labels"].tolist() == ["cat", "dög"]
    assert meta["kind"] == "test" and meta["note"] == "ünïcode"
    assert meta["versions"] == installed_versions()
    assert {"numpy", "python", "sklearn", "openTSNE"} <= set(meta["versions"])


def test_save_writes_exactly_the_given_path_and_leaves_meta_alone(tmp_path):
    meta = {"kind": "test"}
    save_arrays(tmp_path / "model.bin", {"a": np.zeros(2)}, meta)
    assert (tmp_path / "model.bin").is_file() and not (tmp_path / "model.bin.npz").exists()
    assert meta == {"kind": "test"}


def test_meta_is_a_uint8_json_entry(tmp_path):
    save_arrays(tmp_path / "m.npz", {"a": np.zeros(2)}, {"kind": "test"})
    with np.load(tmp_path / "m.npz", allow_pickle=False) as raw:
        assert raw[META_KEY].dtype == np.uint8
        assert json.loads(raw[META_KEY].tobytes())["kind"] == "test"


def test_object_arrays_are_not_saved(tmp_path):
    with pytest.raises(ValueError, match="Python objects"):
        save_arrays(tmp_path / "m.npz", {"bad": np.array([{"x": 1}], dtype=object)}, {})


def test_reserved_meta_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_arrays(tmp_path / "m.npz", {META_KEY: np.zeros(1)}, {})


def test_npy_with_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match="pickle"):
        load_arrays(path)


def test_npz_with_pickled_object_entry_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    meta = np.frombuffer(json.dumps({"format": model_arrays.FORMAT}).encode(), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **{META_KEY: meta, "evil": np.array([object()], dtype=object)})
    with pytest.raises(ModelFileError, match=r"'evil' cannot be loaded as a plain array.*allow_pickle"):
        load_arrays(path)


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression()))
    with pytest.raises(ModelFileError, match="holds a pickle"):
        load_arrays(path)


def test_compressed_npz_is_refused(tmp_path):
    path = tmp_path / "squeezed.npz"
    np.savez_compressed(path, a=np.zeros(10))
    with pytest.raises(ModelFileError, match="compressed"):
        load_arrays(path)


def test_npz_without_meta_or_of_another_format_is_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ModelFileError, match="__meta__"):
        load_arrays(tmp_path / "plain.npz")
    other = np.frombuffer(json.dumps({"format": "something/9"}).encode(), dtype=np.uint8)
    np.savez(tmp_path / "other.npz", **{META_KEY: other})
    with pytest.raises(ModelFileError, match="not a serieslabeler"):
        load_arrays(tmp_path / "other.npz")


def test_damaged_file_is_refused(tmp_path):
    save_arrays(tmp_path / "m.npz", {"a": np.zeros(100)}, {})
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        load_arrays(tmp_path / "cut.npz")


def with_recorded_version(tmp_path, module_name: str, version: str):
    """A model file as if written where ``module_name`` had ``version``."""
    path = tmp_path / "old.npz"
    save_arrays(path, {"a": np.zeros(2)}, {"kind": "test"})
    _, meta = load_arrays(path)
    meta["versions"][module_name] = version
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, a=np.zeros(2), **{META_KEY: raw})
    return path


def test_sklearn_minor_version_mismatch_raises(tmp_path):
    path = with_recorded_version(tmp_path, "sklearn", "0.1.3")
    with pytest.raises(VersionMismatch, match=r"made with scikit-learn 0\.1, this is \d+\.\d+"):
        load_arrays(path)


def test_opentsne_version_mismatch_raises(tmp_path):
    path = with_recorded_version(tmp_path, "openTSNE", "0.3.0")
    with pytest.raises(VersionMismatch, match=r"openTSNE 0\.3"):
        load_arrays(path)


def test_patch_level_difference_is_accepted(tmp_path):
    import sklearn

    major_minor = ".".join(sklearn.__version__.split(".")[:2])
    load_arrays(with_recorded_version(tmp_path, "sklearn", f"{major_minor}.999"))


def test_version_check_can_be_deferred_to_the_caller(tmp_path):
    path = with_recorded_version(tmp_path, "sklearn", "0.1.3")
    _, meta = load_arrays(path, expected_versions_check=False)
    with pytest.raises(VersionMismatch):
        check_versions(meta)


def test_numpy_and_python_versions_are_not_checked():
    check_versions({"versions": {"numpy": "0.1", "python": "2.7"}})


# --- scikit-learn estimators ----------------------------------------------------------------------
@pytest.mark.parametrize("string_labels", [False, True])
def test_logistic_regression_roundtrip_is_exact(tmp_path, digits, string_labels):
    X, y = digits
    labels = np.array([f"digit-{v}" for v in y], dtype=object) if string_labels else y
    model = LogisticRegression(C=0.5, max_iter=200).fit(X[:1000], labels[:1000])
    rebuilt = logistic_from_arrays(*roundtrip(tmp_path, *logistic_to_arrays(model)))
    assert np.array_equal(rebuilt.predict_proba(X[1000:]), model.predict_proba(X[1000:]))
    assert np.array_equal(rebuilt.predict(X[1000:]), model.predict(X[1000:]))
    assert rebuilt.classes_.dtype == model.classes_.dtype
    assert rebuilt.get_params() == model.get_params()


def test_binary_logistic_regression_roundtrip_is_exact(tmp_path, digits):
    X, y = digits
    model = LogisticRegression().fit(X[:500], np.where(y[:500] > 4, "big", "small"))
    rebuilt = logistic_from_arrays(*roundtrip(tmp_path, *logistic_to_arrays(model)))
    assert np.array_equal(rebuilt.predict_proba(X[500:]), model.predict_proba(X[500:]))
    assert np.array_equal(rebuilt.predict(X[500:]), model.predict(X[500:]))


@pytest.mark.parametrize("n_classes", [2, 10])
def test_mlp_roundtrip_is_exact(tmp_path, digits, n_classes):
    X, y = digits
    labels = np.array([f"c{v % n_classes}" for v in y], dtype=object)
    model = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=60, random_state=0).fit(X[:800], labels[:800])
    rebuilt = mlp_from_arrays(*roundtrip(tmp_path, *mlp_to_arrays(model)))
    assert np.array_equal(rebuilt.predict_proba(X[800:]), model.predict_proba(X[800:]))
    assert np.array_equal(rebuilt.predict(X[800:]), model.predict(X[800:]))
    assert rebuilt.get_params() == model.get_params()


def test_multilabel_mlp_is_refused(digits):
    X, y = digits
    indicator = np.stack([y % 2, (y > 4).astype(int)], axis=1)
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X[:200], indicator[:200])
    with pytest.raises(ValueError, match="multi-label"):
        mlp_to_arrays(model)


@pytest.mark.parametrize("options", [{}, {"with_mean": False}, {"with_std": False}])
def test_standard_scaler_roundtrip_is_exact(tmp_path, digits, options):
    X, _ = digits
    model = StandardScaler(**options).fit(X[:1000])
    rebuilt = standard_scaler_from_arrays(*roundtrip(tmp_path, *standard_scaler_to_arrays(model)))
    assert np.array_equal(rebuilt.transform(X[1000:]), model.transform(X[1000:]))
    assert np.array_equal(rebuilt.inverse_transform(X[1000:]), model.inverse_transform(X[1000:]))
    assert rebuilt.n_samples_seen_ == model.n_samples_seen_


@pytest.mark.parametrize("whiten", [False, True])
def test_pca_roundtrip_is_exact(tmp_path, digits, whiten):
    X, _ = digits
    model = PCA(n_components=20, whiten=whiten, random_state=0).fit(X[:1000])
    rebuilt = pca_from_arrays(*roundtrip(tmp_path, *pca_to_arrays(model)))
    assert np.array_equal(rebuilt.transform(X[1000:]), model.transform(X[1000:]))
    projected = model.transform(X[1000:])
    assert np.array_equal(rebuilt.inverse_transform(projected), model.inverse_transform(projected))
    assert rebuilt.noise_variance_ == model.noise_variance_


def test_estimator_of_another_kind_is_refused(tmp_path, digits):
    X, _ = digits
    arrays, meta = roundtrip(tmp_path, *pca_to_arrays(PCA(n_components=2).fit(X[:100])))
    with pytest.raises(ModelFileError, match=r"expected a sklearn\.LogisticRegression"):
        logistic_from_arrays(arrays, meta)


def test_missing_array_is_reported_by_name(tmp_path, digits):
    X, _ = digits
    arrays, meta = roundtrip(tmp_path, *pca_to_arrays(PCA(n_components=2).fit(X[:100])))
    del arrays["components_"]
    with pytest.raises(ModelFileError, match="components_"):
        pca_from_arrays(arrays, meta)


# --- openTSNE ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_map(digits):
    """A t-SNE map of 300 digits (PCA to 20), plus 30 held-out digits to place into it."""
    import openTSNE

    X, y = digits
    reduced = PCA(n_components=20, random_state=0).fit_transform(X)
    embedding = openTSNE.TSNE(n_components=2, perplexity=10, random_state=0, n_jobs=1).fit(reduced[:300])
    return embedding, reduced[300:330], y[:300], y[300:330]


def test_tsne_roundtrip_places_new_points_identically(tmp_path, digit_map):
    embedding, held_out, map_labels, held_out_labels = digit_map
    arrays, meta = roundtrip(tmp_path, *tsne_to_arrays(embedding))
    rebuilt = tsne_from_arrays(arrays, meta, n_jobs=1)
    assert np.array_equal(np.asarray(rebuilt), np.asarray(embedding))
    placed_by_original = np.asarray(embedding.transform(held_out))
    placed_after_loading = np.asarray(rebuilt.transform(held_out))
    assert np.allclose(placed_after_loading, placed_by_original, rtol=0, atol=1e-6)
    # and the placement is meaningful: most points land among their own digit's neighbours
    near = np.argsort(np.linalg.norm(placed_after_loading[:, None] - np.asarray(rebuilt)[None], axis=2), axis=1)[:, :10]
    own_class_share = (map_labels[near] == held_out_labels[:, None]).mean(axis=1)
    assert np.mean(own_class_share > 0.5) > 0.8


def test_tsne_meta_records_how_to_rebuild_the_affinities(digit_map):
    embedding = digit_map[0]
    arrays, meta = tsne_to_arrays(embedding)
    assert arrays["training_data"].shape == (300, 20) and arrays["embedding"].shape == (300, 2)
    assert meta["affinity"]["class"] == type(embedding.affinities).__name__
    assert meta["affinity"]["perplexity"] == 10 and meta["affinity"]["method"] == "exact"
    assert meta["affinity"]["random_state"] == 0 and meta["random_state"] == 0
    assert "callbacks" not in meta["gradient_descent_params"]
    json.dumps(meta)


def test_tsne_with_perplexity_based_affinities_roundtrips(tmp_path, digit_map):
    import openTSNE
    from openTSNE.affinity import PerplexityBasedNN

    _, held_out, _, _ = digit_map
    data = digit_map[0].affinities.knn_index.data
    affinities = PerplexityBasedNN(data, perplexity=10, random_state=0, n_jobs=1)
    embedding = openTSNE.TSNE(random_state=0, n_jobs=1, n_iter=100).fit(affinities=affinities, initialization="random")
    rebuilt = tsne_from_arrays(*roundtrip(tmp_path, *tsne_to_arrays(embedding)))
    assert type(rebuilt.affinities).__name__ == "PerplexityBasedNN"
    assert np.allclose(rebuilt.transform(held_out), embedding.transform(held_out), rtol=0, atol=1e-6)


def test_tsne_approximate_index_is_rebuilt_with_its_fit_time_threads(tmp_path, digits):
    """Annoy (used from 1,000 points) builds different trees with different thread counts."""
    import openTSNE

    X, _ = digits
    reduced = PCA(n_components=20, random_state=0).fit_transform(X)
    embedding = openTSNE.TSNE(perplexity=30, random_state=0, n_jobs=2, early_exaggeration_iter=10, n_iter=10).fit(
        reduced[:1500]
    )
    assert type(embedding.affinities.knn_index).__name__ == "Annoy"
    arrays, meta = roundtrip(tmp_path, *tsne_to_arrays(embedding))
    assert meta["affinity"]["build_jobs"] == 2
    rebuilt = tsne_from_arrays(arrays, meta, n_jobs=1)
    assert np.allclose(rebuilt.transform(reduced[1500:1530]), embedding.transform(reduced[1500:1530]), rtol=0, atol=1e-6)


def test_tsne_with_a_random_state_object_is_refused(digit_map, monkeypatch):
    embedding = digit_map[0]
    monkeypatch.setattr(embedding, "random_state", np.random.RandomState(0))
    with pytest.raises(ValueError, match="only an int seed"):
        tsne_to_arrays(embedding)

"""The colour histogram embedding: HSV against the standard library, bins, the whole image, the embed path."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from conftest import cli
from PIL import Image

from serieslabeler.embed import (
    COLOUR,
    WorkerBackbone,
    colour_dim,
    colour_histogram,
    decode_image,
    embed_workspace,
    resolve_weights,
    rgb_to_hsv,
    weights_argument,
)
from serieslabeler.errors import PipelineError
from serieslabeler.models.head import HeadClassifier
from serieslabeler.models.splits import grouped_split
from serieslabeler.store import FeatureStore, Workspace
from test_embed import ground_truth


def histogram(rgb_pixels: np.ndarray) -> np.ndarray:
    """The colour vector of one image given as ``(H, W, 3)`` uint8."""
    module = colour_histogram(COLOUR.preprocess.mean, COLOUR.preprocess.std)
    x = torch.tensor(rgb_pixels.transpose(2, 0, 1)[None] / 255.0, dtype=torch.float32)
    mean, std = torch.tensor(COLOUR.preprocess.mean).view(1, 3, 1, 1), torch.tensor(COLOUR.preprocess.std).view(1, 3, 1, 1)
    return module((x - mean) / std)[0].numpy()


def test_hue_saturation_and_value_match_colorsys():
    rng = np.random.default_rng(0)
    rgb = rng.random((500, 3))
    rgb[:20] = rgb[:20, :1]  # greys: no hue
    rgb[20:30] = 0.0
    h, s, v = rgb_to_hsv(torch.tensor(rgb.T[None, :, :, None], dtype=torch.float64))
    expected = np.array([colorsys.rgb_to_hsv(*pixel) for pixel in rgb])
    np.testing.assert_allclose(np.c_[h.flatten(), s.flatten(), v.flatten()], expected, atol=1e-9)


@pytest.mark.parametrize(("colour", "hue_bin"), [((255, 0, 0), 0), ((0, 255, 0), 4), ((0, 0, 255), 8), ((255, 255, 0), 2)])
def test_a_plain_colour_fills_one_bin(colour, hue_bin):
    vector = histogram(np.full((8, 8, 3), colour, dtype=np.uint8))
    assert vector.shape == (colour_dim(),) == (192,)
    full_saturation, full_value = 3, 3
    assert np.flatnonzero(vector).tolist() == [(hue_bin * 4 + full_saturation) * 4 + full_value]
    assert vector.max() == pytest.approx(1.0)


def test_the_vector_is_the_square_root_of_the_colour_shares():
    pixels = np.zeros((10, 10, 3), dtype=np.uint8)
    pixels[:, :3] = (255, 0, 0)
    pixels[:, 3:] = (255, 255, 255)
    vector = histogram(pixels)
    white = (0 * 4 + 0) * 4 + 3
    red = (0 * 4 + 3) * 4 + 3
    np.testing.assert_allclose(vector[[red, white]], np.sqrt([0.3, 0.7]), atol=1e-6)
    assert np.linalg.norm(vector) == pytest.approx(1.0)


def test_the_whole_image_is_counted_not_its_centre(tmp_path):
    pixels = np.full((60, 180, 3), 255, dtype=np.uint8)
    pixels[:, :40] = (0, 0, 255)  # a blue stripe that a centre crop would cut off
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    decoded = decode_image(path.read_bytes(), COLOUR.preprocess)
    assert decoded.shape == (3, 224, 224)
    blue = (decoded[2] > 200) & (decoded[0] < 50)
    assert blue.mean() == pytest.approx(40 / 180, abs=0.02)


def test_colour_features_are_embedded_cached_and_separate_held_out_ripeness(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        report = embed_workspace(workspace, "colour", num_workers=0)
        again = embed_workspace(workspace, "colour", num_workers=0)
        ids, X = FeatureStore(workspace).load(report.feature_set)
        stages = ground_truth(workspace, ids)
        subject_of = dict(workspace.db.execute("SELECT i.id, s.name FROM images i JOIN subjects s ON s.id = i.subject_id").fetchall())
    subjects = np.array([subject_of[int(i)] for i in ids])
    assert report.feature_set == "colour@hsv-12x4x4" and report.computed == 220 and again.computed == 0
    assert X.shape == (220, 192)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    split = grouped_split(subjects, 0.25, 0)
    model = HeadClassifier(random_state=0).fit(X[split.train], stages[split.train])
    accuracy = (model.predict(X[split.test]) == stages[split.test]).mean()
    majority = max((stages[split.test] == s).mean() for s in "URVO")
    assert accuracy > majority + 0.2, (accuracy, majority)


def test_the_colour_histogram_takes_no_weights(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        with pytest.raises(PipelineError, match="the colour histogram has no weights"):
            embed_workspace(workspace, "colour", "random")
    code, data = cli("embed", "--workspace", bananas_workspace, "--backbone", "colour", "--weights", "model.pt")
    assert code == 2 and "--weights 'model.pt': the colour histogram has no weights" in data["error"]


def test_a_ray_worker_resolves_the_same_colour_histogram():
    choice = resolve_weights("colour")
    backbone = WorkerBackbone("colour", weights_argument(choice), choice.identity)()
    assert backbone.feature_set == "colour@hsv-12x4x4" and backbone.spec.dim == 192

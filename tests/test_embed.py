"""Embedding: real backbones on the real bananas images, the feature cache, weights handling."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import BANANAS, BANANAS_MAPPING, cli
from PIL import Image, ImageOps

from serieslabeler.embed import (
    BACKBONES,
    BatchNormalizer,
    embed_workspace,
    load_backbone,
    load_image,
    resolve_weights,
    seeded_init,
)
from serieslabeler.errors import PipelineError
from serieslabeler.store import FeatureStore, Workspace

LITE0 = "efficientnet_lite0@imagenet"


def ground_truth(workspace: Workspace, ids: np.ndarray) -> np.ndarray:
    labels = dict(workspace.db.execute("SELECT image_id, label FROM ground_truth").fetchall())
    return np.array([labels[int(i)] for i in ids])


def test_efficientnet_lite0_features_group_images_by_ripeness(bananas_embedded_template):
    with Workspace.open(bananas_embedded_template) as workspace:
        ids, X = FeatureStore(workspace).load(LITE0)
        stages = ground_truth(workspace, ids)
    assert X.shape == (220, 1280) and np.isfinite(X).all()
    distances = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=-1)
    for stage in "URVO":
        inside = stages == stage
        within = distances[np.ix_(inside, inside)][~np.eye(inside.sum(), dtype=bool)].mean()
        between = distances[np.ix_(inside, ~inside)].mean()
        assert within < between, (stage, within, between)


def add_flipped_copies(workspace_path, tmp_path, count: int) -> list[str]:
    """Ingest ``count`` new images (mirrored copies of bananas images, so new SHA-256s)."""
    source = tmp_path / "new"
    (source / "images").mkdir(parents=True)
    with open(BANANAS / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:count]
    for row in rows:
        with Image.open(BANANAS / "images" / row["file"]) as image:
            row["file"] = "mirrored_" + row["file"]
            ImageOps.mirror(image).save(source / "images" / row["file"], quality=90)
    with open(source / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, data = cli("ingest", "--workspace", workspace_path, "--images", source / "images",
                     "--metadata", source / "metadata.csv", *BANANAS_MAPPING)
    assert code == 0 and data["added"] == count, data
    return [row["file"] for row in rows]


def test_cache_second_run_computes_nothing_and_new_images_only_themselves(bananas_embedded, bananas, tmp_path):
    code, data = cli("embed", "--workspace", bananas_embedded, "--backbone", "efficientnet_lite0")
    assert code == 0 and (data["computed"], data["cached"], data["feature_set"]) == (0, 220, LITE0)

    with Workspace.open(bananas_embedded) as workspace:
        _, before = FeatureStore(workspace).load(LITE0)
    add_flipped_copies(bananas_embedded, tmp_path, 3)
    code, data = cli("embed", "--workspace", bananas_embedded, "--backbone", "efficientnet_lite0", "--workers", "0")
    assert code == 0 and (data["computed"], data["cached"]) == (3, 220), data
    with Workspace.open(bananas_embedded) as workspace:
        ids, after = FeatureStore(workspace).load(LITE0)
    assert after.shape == (223, 1280)
    np.testing.assert_array_equal(after[:220], before)
    # a mirrored banana is still a banana: nearer its original than the average image is
    mirrored, originals = after[220:], after[:3]
    assert (np.linalg.norm(mirrored - originals, axis=1) < np.linalg.norm(after[:220] - after[:220].mean(0), axis=1).mean()).all()


def test_float16_storage_and_image_subset(bananas_embedded):
    with Workspace.open(bananas_embedded) as workspace:
        report = embed_workspace(workspace, "resnet18", "random", image_ids=[3, 1, 2], dtype="float16", num_workers=0)
        info = FeatureStore(workspace).info("resnet18@random")
        ids, X = FeatureStore(workspace).load("resnet18@random")
    assert (report.feature_set, report.computed, report.cached) == ("resnet18@random", 3, 0)
    assert (info.dtype, info.dim, info.count) == ("float16", 512, 3)
    assert ids.tolist() == [1, 2, 3] and X.shape == (3, 512) and np.isfinite(X).all() and X.std() > 0


def test_random_weights_are_seeded():
    first, second = (load_backbone("resnet18", "random").module.state_dict() for _ in range(2))
    assert all(np.array_equal(first[key].numpy(), second[key].numpy()) for key in first)


def features_of(module, spec, paths) -> np.ndarray:
    """Reference features: the preprocessing and network applied directly, one batch."""
    import torch

    batch = torch.stack([torch.from_numpy(load_image(p, spec.preprocess)) for p in paths])
    with torch.inference_mode():
        return module.eval()(BatchNormalizer(spec.preprocess, "cpu")(batch)).numpy()


def saved_resnet18(path, seed: int = 1):
    """A complete torchvision resnet18 state dict (classification head included) saved to ``path``."""
    import torch
    import torchvision

    with seeded_init(seed):
        network = torchvision.models.resnet18(weights=None)
    torch.save(network.state_dict(), path)
    network.fc = torch.nn.Identity()
    return network


def test_weights_path_loads_a_saved_state_dict(bananas_embedded, tmp_path):
    weights = tmp_path / "resnet18-finetuned.pth"
    reference = saved_resnet18(weights)
    with Workspace.open(bananas_embedded) as workspace:
        report = embed_workspace(workspace, "resnet18", str(weights), image_ids=[1, 2], num_workers=0)
        assert report.feature_set == resolve_weights("resnet18", str(weights)).feature_set
        assert report.feature_set.startswith("resnet18@file-") and len(report.feature_set) == len("resnet18@file-") + 12
        _, X = FeatureStore(workspace).load(report.feature_set)
        expected = features_of(reference, BACKBONES["resnet18"], workspace.image_paths([1, 2]))
        # the identity names the same file on a later run
        again = embed_workspace(workspace, "resnet18", report.feature_set.split("@")[1], image_ids=[1, 2, 3], num_workers=0)
    np.testing.assert_allclose(X, expected, rtol=1e-4, atol=1e-4)
    assert (again.computed, again.cached) == (1, 2)


def test_weights_path_errors_name_the_file(bananas_workspace, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    code, data = cli("embed", "--workspace", bananas_workspace, "--backbone", "resnet18", "--weights", garbage)
    assert code == 2 and str(garbage) in data["error"] and "not a PyTorch state dict" in data["error"]

    other = tmp_path / "resnet18.pth"
    saved_resnet18(other)
    code, data = cli("embed", "--workspace", bananas_workspace, "--backbone", "vgg16", "--weights", other)
    assert code == 2 and "not a vgg16 state dict" in data["error"]

    code, data = cli("embed", "--workspace", bananas_workspace, "--backbone", "resnet18", "--weights", tmp_path / "absent.pth")
    assert code == 2 and "no such file" in data["error"]


def test_missing_default_weights_say_which_file_goes_where(bananas_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    code, data = cli("embed", "--workspace", bananas_workspace, "--backbone", "resnet50")
    assert code == 2
    assert "resnet50-11ad3fa6.pth" in data["error"] and str(folder) in data["error"] and "--weights PATH" in data["error"]
    with Workspace.open(bananas_workspace) as workspace:
        assert FeatureStore(workspace).names() == []

    # placed there by hand, the file is used (and nothing is downloaded)
    folder.mkdir(parents=True)
    reference = saved_resnet18(folder / "resnet18-f37072fd.pth")
    with Workspace.open(bananas_workspace) as workspace:
        report = embed_workspace(workspace, "resnet18", image_ids=[5], num_workers=0)
        _, X = FeatureStore(workspace).load(report.feature_set)
        expected = features_of(reference, BACKBONES["resnet18"], workspace.image_paths([5]))
    assert report.feature_set == "resnet18@IMAGENET1K_V1"
    np.testing.assert_allclose(X, expected, rtol=1e-4, atol=1e-4)


def test_unreadable_image_is_named_and_earlier_vectors_are_kept(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        broken = workspace.image_path(3)
        broken.write_bytes(b"truncated")
        with pytest.raises(PipelineError, match=rf"image 3 \({broken}\) cannot be read"):
            embed_workspace(workspace, "resnet18", "random", image_ids=[1, 2, 3, 4], batch_size=2, num_workers=0)
        assert FeatureStore(workspace).ids("resnet18@random").tolist() == [1, 2]


def test_unknown_backbone_and_unavailable_device(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        with pytest.raises(PipelineError, match="unknown backbone 'resnet19'; choose one of: resnet18"):
            embed_workspace(workspace, "resnet19")
    import torch

    if not torch.cuda.is_available():
        code, data = cli("embed", "--workspace", bananas_workspace, "--backbone", "resnet18", "--weights", "random", "--device", "cuda")
        assert code == 2 and "no CUDA GPU" in data["error"]


def test_texture_features_are_the_channel_statistics_of_lite0s_inner_blocks(bananas_embedded):
    import torch

    from serieslabeler.embed import TEXTURE
    from serieslabeler.embed.texture import TEXTURE_BLOCKS

    network = load_backbone("efficientnet_lite0").module
    outputs = {}
    for index in TEXTURE_BLOCKS:
        network._blocks[index].register_forward_hook(lambda module, inputs, output, index=index: outputs.__setitem__(index, output))
    with Workspace.open(bananas_embedded) as workspace:
        report = embed_workspace(workspace, TEXTURE.name, image_ids=[1, 2, 3], num_workers=0)
        _, X = FeatureStore(workspace).load(report.feature_set)
        features_of(network, TEXTURE, workspace.image_paths([1, 2, 3]))
    expected = torch.cat([torch.cat([outputs[i].mean(dim=(2, 3)), outputs[i].std(dim=(2, 3))], dim=1) for i in TEXTURE_BLOCKS], dim=1)
    assert report.feature_set == "efficientnet_lite0_texture@imagenet" and X.shape == (3, TEXTURE.dim) == (3, 608)
    np.testing.assert_allclose(X, expected.numpy(), rtol=1e-4, atol=1e-4)

"""One config dataclass per training mode: typed options from the command line, the app and the library."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cli

from serieslabeler.cli.commands.train import FINETUNE_OPTIONS, HEAD_OPTIONS
from serieslabeler.errors import PipelineError
from serieslabeler.labels import label_images
from serieslabeler.loop import ground_truth
from serieslabeler.models import (
    MODE_CONFIGS,
    MODES,
    FinetuneConfig,
    HeadConfig,
    OverclusterConfig,
    VAEConfig,
)
from serieslabeler.store import Workspace


def test_command_line_strings_become_the_declared_types():
    config = OverclusterConfig.from_params({"epochs": "10", "lr": "0.01", "validate": "false", "n_overclusters": "12", "input": "images"})
    assert (config.epochs, config.lr, config.validate, config.n_overclusters, config.input) == (10, 0.01, False, 12, "images")
    assert type(config.epochs) is int and type(config.lr) is float
    assert OverclusterConfig.from_params({"epochs": 10.0}).epochs == 10  # argparse floats that are whole
    assert VAEConfig.from_params({"init_model": "none"}).init_model is None
    assert VAEConfig.from_params({"init_model": "3"}).init_model == 3
    assert FinetuneConfig.from_params({}) == FinetuneConfig()


@pytest.mark.parametrize(
    ("config", "params", "message"),
    [
        (OverclusterConfig, {"epochs": "2.5"}, "mode 'overcluster': option epochs='2.5' is not a whole number"),
        (VAEConfig, {"gamma": "much"}, "mode 'vae': option gamma='much' is not a number"),
        (OverclusterConfig, {"validate": "maybe"}, "option validate='maybe' is not a boolean"),
        (OverclusterConfig, {"unlabeled_ratio": "1.5"}, r"option unlabeled_ratio=1.5 must be in \[0, 1\)"),
        (VAEConfig, {"input": "sounds"}, "option input='sounds' must be one of features, images"),
        (HeadConfig, {"kind": "svm"}, "option kind='svm' must be one of logreg, mlp"),
        (HeadConfig, {"C": "0"}, "option C=0.0 must be positive"),
        (FinetuneConfig, {"val_share": "1"}, "option val_share=1.0 must be between 0 and 1"),
        (HeadConfig, {"epochs": 3}, "mode 'head' does not take option.*epochs; it takes kind, C, hidden, max_iter"),
    ],
)
def test_a_bad_option_gives_one_message_naming_mode_and_option(config, params, message):
    with pytest.raises(PipelineError, match=message):
        config.from_params(params)


def test_every_mode_has_a_config_and_the_command_line_flags_are_its_fields():
    assert set(MODE_CONFIGS) == set(MODES)
    assert HEAD_OPTIONS == ("kind", "C", "hidden", "max_iter")
    assert set(FINETUNE_OPTIONS) == set(FinetuneConfig.names()) - {"num_workers"}
    centre_only = VAEConfig.from_params({"latent_dim": "8"}, only=VAEConfig.CENTRE_OPTIONS)
    assert centre_only.latent_dim == 8
    with pytest.raises(PipelineError, match="does not take option.*gamma"):
        VAEConfig.from_params({"gamma": 2}, only=VAEConfig.CENTRE_OPTIONS)


def test_a_saved_model_keeps_its_config_and_a_bad_option_exits_2(bananas_embedded):
    with Workspace.open(bananas_embedded) as workspace:
        ids, truth, _ = ground_truth(workspace)
        for label in np.unique(truth):
            label_images(workspace, ids[truth == label][:10], label, author="test")
    code, data = cli("train", "--workspace", bananas_embedded, "--kind", "mlp", "--hidden", "16", "--max-iter", "300")
    assert code == 0, data
    assert HeadConfig.from_record(data["model"]["params"]) == HeadConfig(kind="mlp", hidden=16, max_iter=300)
    code, data = cli("train", "--workspace", bananas_embedded, "--mode", "overcluster", "--option", "unlabeled_ratio=1.5")
    assert code == 2 and "option unlabeled_ratio=1.5 must be in [0, 1)" in data["error"]
    code, data = cli("train", "--workspace", bananas_embedded, "--mode", "vae", "--option", "epochs=x")
    assert code == 2 and "option epochs='x' is not a whole number" in data["error"]

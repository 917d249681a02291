"""One frozen dataclass per training mode: its options, their types, defaults and ranges.

The command line (``--kind``, ``--option NAME=VALUE``) and the app hand a mode its options as
a mapping whose values may be strings (``"10"``, ``"true"``) or numbers (``10.0``);
:meth:`ModeConfig.from_params` reads each value as its field's declared type and rejects an
unknown option or a bad value with one message naming the mode and the option. A config
is what a model's ``params`` are saved from (:meth:`ModeConfig.to_dict`).
"""
from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from serieslabeler.errors import PipelineError
from serieslabeler.models.head import HeadClassifier
from serieslabeler.models.torch_loop import INPUTS

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
KIND_NAMES = {int: "whole number", float: "number", bool: "boolean (true or false)", str: "text"}


@dataclass(frozen=True)
class ModeConfig:
    """Options of one training mode; subclasses declare the fields and check their ranges."""

    MODE: ClassVar[str] = ""
    POSITIVE: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self.POSITIVE:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise self.option_error(name, value, "must be positive")
        self.check()

    def check(self) -> None:
        """Ranges beyond positivity (subclasses)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_params(cls, params: Mapping, only: Iterable[str] | None = None):
        """The config with ``params`` over the defaults, each value read as its field's type.

        ``only``: the options this step takes (the others keep their defaults).
        """
        allowed = cls.names() if only is None else tuple(only)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise PipelineError(f"mode '{cls.MODE}' does not take option(s) {', '.join(unknown)}; it takes {', '.join(allowed)}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: cls._read(name, value, hints[name]) for name, value in params.items()})

    @classmethod
    def from_record(cls, params: Mapping):
        """The config a saved model was trained with (its ``params`` also hold keys such as ``seed``)."""
        return cls.from_params({name: params[name] for name in cls.names() if name in params})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def option_error(cls, name: str, value, problem: str) -> PipelineError:
        return PipelineError(f"mode '{cls.MODE}': option {name}={value!r} {problem}")

    @classmethod
    def _read(cls, name: str, value, hint):
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
        kind = next(k for k in kinds if k is not type(None))
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            if type(None) in kinds:
                return None
            raise cls.option_error(name, value, f"is not a {KIND_NAMES[kind]}")
        try:
            return _as_type(kind, value)
        except (TypeError, ValueError):
            raise cls.option_error(name, value, f"is not a {KIND_NAMES[kind]}") from None


def _as_type(kind: type, value):
    if kind is bool:
        if isinstance(value, str):
            word = value.strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError(value)
            return word in TRUE_WORDS
        if value not in (0, 1):
            raise ValueError(value)
        return bool(value)
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    return str(value)


@dataclass(frozen=True)
class HeadConfig(ModeConfig):
    """``head``: a classifier on cached feature vectors (see :class:`serieslabeler.models.head.HeadClassifier`)."""

    MODE: ClassVar[str] = "head"
    POSITIVE: ClassVar[tuple[str, ...]] = ("C", "hidden", "max_iter")

    kind: str = "logreg"
    C: float = 0.1
    hidden: int = 128
    max_iter: int = 2000

    def check(self) -> None:
        if self.kind not in HeadClassifier.KINDS:
            raise self.option_error("kind", self.kind, f"must be one of {', '.join(HeadClassifier.KINDS)}")

    def classifier(self, random_state: int | None) -> HeadClassifier:
        return HeadClassifier(kind=self.kind, C=self.C, hidden=self.hidden, max_iter=self.max_iter, random_state=random_state)


@dataclass(frozen=True)
class FinetuneConfig(ModeConfig):
    """``finetune``: a backbone and a new linear head trained end to end on the images."""

    MODE: ClassVar[str] = "finetune"
    POSITIVE: ClassVar[tuple[str, ...]] = ("epochs", "patience", "batch_size", "lr", "head_lr", "image_size")

    backbone: str | None = None
    weights: str | None = None
    epochs: int = 5
    patience: int = 2
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    image_size: int | None = None
    val_share: float = 0.2
    num_workers: int = 0

    def check(self) -> None:
        if not 0 < self.val_share < 1:
            raise self.option_error("val_share", self.val_share, "must be between 0 and 1")
        if self.num_workers < 0:
            raise self.option_error("num_workers", self.num_workers, "must not be negative")


@dataclass(frozen=True)
class SemiSupervisedConfig(ModeConfig):
    """What ``overcluster`` and ``vae`` share: the network's input, trunk, training loop and unlabeled pool."""

    POSITIVE: ClassVar[tuple[str, ...]] = ("image_size", "hidden", "epochs", "batch_size", "lr", "max_unlabeled")

    input: str = "features"
    backbone: str | None = None
    weights: str | None = None
    image_size: int = 64
    hidden: int = 256
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    unlabeled_ratio: float = 0.5
    max_unlabeled: int = 5000
    validate: bool = True

    def check(self) -> None:
        if self.input not in INPUTS:
            raise self.option_error("input", self.input, f"must be one of {', '.join(INPUTS)}")
        if not 0 <= self.unlabeled_ratio < 1:
            raise self.option_error("unlabeled_ratio", self.unlabeled_ratio, "must be in [0, 1)")


@dataclass(frozen=True)
class OverclusterConfig(SemiSupervisedConfig):
    """``overcluster``: fuzzy overclustering (:class:`serieslabeler.models.foc.FuzzyOvercluster`)."""

    MODE: ClassVar[str] = "overcluster"
    POSITIVE: ClassVar[tuple[str, ...]] = SemiSupervisedConfig.POSITIVE + ("n_overclusters", "overcluster_factor")

    n_overclusters: int | None = None
    overcluster_factor: int = 5
    mi_weight: float = 1.0
    inverse_weight: float = 1.0


@dataclass(frozen=True)
class VAEConfig(SemiSupervisedConfig):
    """``vae`` (and ``vae-centres``): the VAE of :class:`serieslabeler.models.vae.LatentVAE`."""

    MODE: ClassVar[str] = "vae"
    POSITIVE: ClassVar[tuple[str, ...]] = SemiSupervisedConfig.POSITIVE + ("latent_dim", "pretrain_epochs")
    CENTRE_OPTIONS: ClassVar[tuple[str, ...]] = (
        "input", "backbone", "weights", "image_size", "latent_dim", "hidden", "beta", "pretrain_epochs", "batch_size", "lr",
    )

    epochs: int = 30
    latent_dim: int = 16
    beta: float = 1.0
    gamma: float = 1.0
    pretrain_epochs: int = 30
    init_model: int | None = None

    def check(self) -> None:
        super().check()
        for name in ("beta", "gamma"):
            if getattr(self, name) < 0:
                raise self.option_error(name, getattr(self, name), "must not be negative")


MODE_CONFIGS: dict[str, type[ModeConfig]] = {
    config.MODE: config for config in (HeadConfig, FinetuneConfig, OverclusterConfig, VAEConfig)
}

"""Model kinds: a registry of `StackedModel` classes by the name a config's `model.kind` gives.

    @register_model("mlp")
    class StackedMLP(StackedModel): ...

Importing `winit_cli.models` imports every module of the package, so a new kind is one file
(its class, decorated) plus its test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from winit_cli.errors import ConfigError
from winit_cli.models.base import StackedModel

MODELS: dict[str, type[StackedModel]] = {}


def register_model(name: str) -> Callable[[type[StackedModel]], type[StackedModel]]:
    """Class decorator: make `model.kind: name` build this class."""

    def decorate(cls: type[StackedModel]) -> type[StackedModel]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model kind {name!r} is registered twice")
        MODELS[name] = cls
        return cls

    return decorate


def get_model_kind(name: str, where: str = "model.kind") -> type[StackedModel]:
    if name not in MODELS:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"{where}: unknown model kind {name!r}; known: {known}")
    return MODELS[name]


def build_model(config: Any, input_size: int, classes: int, members: int = 1) -> StackedModel:
    """The model `config` (a `config.ModelConfig`) describes, for inputs of `input_size` features
    and `classes` outputs (both from the dataset), with `members` stacked members."""
    return get_model_kind(config.kind).from_config(config, input_size, classes, members)

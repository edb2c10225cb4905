"""Model kinds: a registry of `StackedModel` classes by the name a config's `model.kind` gives.

    @MODELS.register("mlp")
    class StackedMLP(StackedModel): ...

Importing `winit_cli.models` imports every module of the package, so a new kind is one file
(its class, decorated) plus its test.
"""

from __future__ import annotations

from typing import Any

from winit_cli.models.base import StackedModel
from winit_cli.registry import Registry

MODELS: Registry[type[StackedModel]] = Registry("model kind")


def get_model_kind(name: str, where: str = "model.kind") -> type[StackedModel]:
    return MODELS.lookup(name, where)


def build_model(config: Any, input_size: int, classes: int, members: int = 1) -> StackedModel:
    """The model `config` (a `config.ModelConfig`) describes, for inputs of `input_size` features
    and `classes` outputs (both from the dataset), with `members` stacked members."""
    return get_model_kind(config.kind).from_config(config, input_size, classes, members)

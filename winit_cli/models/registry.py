"""Model kinds: a registry of what a config's `model.kind` names, readable without torch.

Each entry is a `ModelKind`: what config validation, the theory and `winit advise` ask of a kind
(its config checks, its Linear layers' shapes and roles, whether it has residual branches), and
where its `StackedModel` class lives, imported only when a model is built. Config validation and
`winit advise` thereby never import torch (about 1.2 s of a 2 s start-up, measured).

    MODELS.add("mlp", ModelKind("winit_cli.models.mlp:StackedMLP", check=..., shapes=...))

A new kind is its module (the class) plus its entry here, and its test.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from winit_cli.models import checks
from winit_cli.registry import Registry

if TYPE_CHECKING:
    from winit_cli.models.base import StackedModel

Shapes = list[tuple[int, int]]


@dataclass(frozen=True)
class ModelKind:
    """One model kind. `model_class`: "module:Class", or the class itself (a test's own kind)."""

    model_class: str | type[StackedModel]
    # Raise a ConfigError (one line) for what this kind cannot build from a `config.Config`.
    check_config: Callable[[Any], None]
    # (model config, input size, classes) -> (fan_in, fan_out) of every Linear layer in order;
    # None: read them off a built model.
    shapes: Callable[[Any, int, int], Shapes] | None = None
    has_branches: bool = False  # residual branches: schemes such as Fixup need them

    def load(self) -> type[StackedModel]:
        if not isinstance(self.model_class, str):
            return self.model_class
        module, _, name = self.model_class.partition(":")
        return getattr(importlib.import_module(module), name)

    def from_config(self, config: Any, input_size: int, classes: int,
                    members: int) -> StackedModel:
        return self.load().from_config(config, input_size, classes, members)

    def layer_shapes(self, config: Any, input_size: int, classes: int) -> Shapes:
        if self.shapes is None:
            return self.from_config(config, input_size, classes, 1).layer_shapes()
        return self.shapes(config, input_size, classes)


def layer_roles(blocks: int, branch_layers: int) -> list[tuple[str, int]]:
    """(role, block) of every Linear layer of a residual MLP in forward order: the input
    projection (block 0), each block's branch layers, the output layer (block B + 1)."""
    roles = [("input", 0)]
    for b in range(1, blocks + 1):
        roles += [("branch_inner", b)] * (branch_layers - 1) + [("branch_out", b)]
    return [*roles, ("output", blocks + 1)]


def _plain_checks(config: Any) -> None:
    checks.check_no_branches(config)
    checks.check_common(config)


def _residual_checks(config: Any) -> None:
    checks.check_residual_layout(config)
    checks.check_common(config)


def _pairs(sizes: list[int]) -> Shapes:
    return list(zip(sizes[:-1], sizes[1:], strict=True))


def _mlp_shapes(model: Any, input_size: int, classes: int) -> Shapes:
    return _pairs([input_size, *model.hidden_widths(), classes])


def _resmlp_shapes(model: Any, input_size: int, classes: int) -> Shapes:
    width = model.hidden_widths()[0]
    return [(input_size, width), *[(width, width)] * (model.depth - 2), (width, classes)]


MODELS: Registry[ModelKind] = Registry("model kind")
MODELS.add("mlp", ModelKind("winit_cli.models.mlp:StackedMLP", _plain_checks, _mlp_shapes))
MODELS.add("resmlp", ModelKind("winit_cli.models.resmlp:StackedResMLP", _residual_checks,
                               _resmlp_shapes, has_branches=True))


def get_model_kind(name: str, where: str = "model.kind") -> ModelKind:
    return MODELS.lookup(name, where)


def build_model(config: Any, input_size: int, classes: int, members: int = 1) -> StackedModel:
    """The model `config` (a `config.ModelConfig`) describes, for inputs of `input_size` features
    and `classes` outputs (both from the dataset), with `members` stacked members."""
    return get_model_kind(config.kind).from_config(config, input_size, classes, members)

"""Model kinds behind one interface (`base.StackedModel`), chosen by `model.kind`.

The registry (registry.py: every kind's config checks, layer shapes and roles, and where its
class lives) is read without torch, so config validation and `winit advise` do not import it;
the tensor-holding names below (`StackedModel`, `Trace`, ...) import it on first use. Import names
from here, not from the modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from winit_cli.models.registry import MODELS, ModelKind, build_model, get_model_kind, layer_roles

if TYPE_CHECKING:
    from winit_cli.models.base import ACTIVATIONS, LinearView, NormView, StackedModel, Trace

_WITH_TORCH = ("ACTIVATIONS", "LinearView", "NormView", "StackedModel", "Trace")


def __getattr__(name: str):
    if name in _WITH_TORCH:
        from winit_cli.models import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ACTIVATIONS", "MODELS", "LinearView", "ModelKind", "NormView", "StackedModel",
           "Trace", "build_model", "get_model_kind", "layer_roles"]

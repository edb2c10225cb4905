"""Model kinds behind one interface (`base.StackedModel`), chosen by `model.kind`.

Importing this package imports every module in it, which registers every kind: adding a kind is
adding one file. Import names from here, not from the modules.
"""

import importlib
import pkgutil

from winit_cli.models.base import ACTIVATIONS, LinearView, NormView, StackedModel, Trace
from winit_cli.models.registry import MODELS, build_model, get_model_kind

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["ACTIVATIONS", "MODELS", "LinearView", "NormView", "StackedModel", "Trace",
           "build_model", "get_model_kind"]

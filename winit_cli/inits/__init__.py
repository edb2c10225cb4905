"""Init schemes: the registry (`registry.py`), the schemes themselves, one function each, by
family (`classic.py`, `scaling.py`, `structured.py`, `residual.py`), and how a scheme is applied
to a model (`apply.py`). A new scheme is one registered function in the family module it
belongs to; `residual.py` holds those defined on residual branches (Fixup, SkipInit, ReZero).

Importing this package registers every scheme; import names from here, not from the modules.
"""

# Each family module registers its schemes when imported: this fills SCHEMES, in this order.
from winit_cli.inits import classic, scaling, structured, residual  # noqa: F401  isort: skip
from winit_cli.inits.apply import (
    calibrate_member,
    check_init_for_model,
    initial_branch_scale,
    initialize,
    layer_factors,
)
from winit_cli.inits.registry import (
    COMMON_PARAMS,
    SCHEMES,
    Scheme,
    activation_gain,
    check_scheme,
    get_scheme,
    register,
    weight_decay,
)
from winit_cli.inits.structured import unit_variance_

__all__ = ["COMMON_PARAMS", "SCHEMES", "Scheme", "activation_gain", "calibrate_member",
           "check_init_for_model", "check_scheme", "get_scheme", "initial_branch_scale",
           "initialize", "layer_factors", "register", "unit_variance_", "weight_decay"]

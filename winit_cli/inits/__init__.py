"""Init schemes: the registry (`registry.py`), the schemes themselves (`schemes.py`), and how a
scheme is applied to a model (`apply.py`).

Importing this package registers every scheme; import names from here, not from the modules.
"""

from winit_cli.inits import schemes as _schemes  # noqa: F401  fills SCHEMES
from winit_cli.inits.apply import calibrate_member, initialize
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

__all__ = ["COMMON_PARAMS", "SCHEMES", "Scheme", "activation_gain", "calibrate_member",
           "check_scheme", "get_scheme", "initialize", "register", "weight_decay"]

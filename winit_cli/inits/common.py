"""What the scheme modules share: fan selection, bias filling, no_grad.

The scheme modules import torch inside the functions that fill tensors, not at the top: the
registry's metadata (names, parameters, variances, formulas) is then read without torch, which
config validation and `winit advise` do in a fraction of torch's import time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def fans(fan_in: int, fan_out: int, mode: str) -> int:
    return fan_in if mode == "fan_in" else fan_out


def fill_bias(bias: torch.Tensor | None, value: float) -> None:
    import torch

    if bias is not None:
        torch.nn.init.constant_(bias, value)


def fan_in_out(weight: torch.Tensor) -> tuple[int, int]:
    return weight.shape[1], weight.shape[0]


def no_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`@torch.no_grad()` with torch imported at the first call, not at decoration."""

    @functools.wraps(fn)
    def without_grad(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return without_grad

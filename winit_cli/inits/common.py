"""What the scheme modules share: fan selection and bias filling."""

from __future__ import annotations

import torch


def fans(fan_in: int, fan_out: int, mode: str) -> int:
    return fan_in if mode == "fan_in" else fan_out


def fill_bias(bias: torch.Tensor | None, value: float) -> None:
    if bias is not None:
        torch.nn.init.constant_(bias, value)


def fan_in_out(weight: torch.Tensor) -> tuple[int, int]:
    return weight.shape[1], weight.shape[0]

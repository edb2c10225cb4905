"""Each activation's init gain (inits.activation_gain, used by He, orthogonal, Fixup and the
`winit schemes` table) against torch.nn.init.calculate_gain where torch has the activation, and
against the values torch documents for it; ELU and GELU, which torch has no gain for, get ReLU's
sqrt(2), the derivation activation_gain documents (both are the identity for large positive
inputs and near zero for large negative ones, so half the variance passes, as for ReLU)."""

from __future__ import annotations

import math
import typing

import pytest
import torch

from winit_cli.config import Activation
from winit_cli.inits import activation_gain

# torch.nn.init.calculate_gain's documented table; leaky_relu at its default slope 0.01, the
# slope winit's models use.
TORCH_DOCUMENTED = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2),
                    "leaky_relu": math.sqrt(2 / (1 + 0.01**2)), "selu": 3 / 4}
DERIVED = {"elu": math.sqrt(2), "gelu": math.sqrt(2)}


def test_every_activation_a_config_accepts_has_a_checked_gain():
    assert set(typing.get_args(Activation)) == set(TORCH_DOCUMENTED) | set(DERIVED)


@pytest.mark.parametrize("activation", sorted(TORCH_DOCUMENTED))
def test_gain_is_torchs(activation):
    assert activation_gain(activation) == torch.nn.init.calculate_gain(activation)
    assert activation_gain(activation) == pytest.approx(TORCH_DOCUMENTED[activation],
                                                        rel=1e-12)


@pytest.mark.parametrize("activation", sorted(DERIVED))
def test_gain_without_a_torch_entry_is_the_documented_one(activation):
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain(activation)  # still none in torch: the derivation applies
    assert activation_gain(activation) == pytest.approx(DERIVED[activation], rel=1e-12)


@pytest.mark.parametrize(("scheme", "normal"), [("he_normal", True), ("he_uniform", False)])
def test_an_explicit_gain_keeps_the_schemes_distribution(scheme, normal):
    """gain 2 on a 400 x 400 weight (std 2 / 20 = 0.1): a normal draw puts about 8% of its
    values past sqrt(3) std (2 (1 - Phi(sqrt 3)) = 0.083), a uniform one of that std none."""
    from winit_cli.inits import SCHEMES

    weight = torch.empty(400, 400)
    generator = torch.Generator().manual_seed(0)
    SCHEMES[scheme].fill(weight, None, activation="relu", generator=generator, gain=2.0)
    assert weight.std().item() == pytest.approx(0.1, rel=0.02)
    beyond = (weight.abs() > math.sqrt(3) * 0.1 * 1.0001).float().mean().item()
    assert beyond == (pytest.approx(0.083, abs=0.01) if normal else 0.0)

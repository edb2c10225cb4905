"""Every activation the theory knows (theory/activations.py), phi and phi', against torch's own
function and autograd's derivative of it, at points on both sides of the kink and at it (where
phi' takes torch's one-sided value), with and without a parameter; GELU's derivative at +-inf
by hand (Phi(+-inf) = 1 or 0, x pdf(x) -> 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from winit_cli.theory.activations import ACTIVATIONS, activation_functions

POINTS = [-3.0, -0.5, 0.0, 0.7, 2.5]
TORCH = {
    ("relu", None): F.relu,
    ("leaky_relu", None): lambda x: F.leaky_relu(x, 0.01),
    ("leaky_relu", 0.2): lambda x: F.leaky_relu(x, 0.2),
    ("tanh", None): torch.tanh,
    ("sigmoid", None): torch.sigmoid,
    ("elu", None): F.elu,
    ("elu", 0.5): lambda x: F.elu(x, alpha=0.5),
    ("selu", None): F.selu,
    ("gelu", None): F.gelu,
    ("linear", None): lambda x: x,
}


def test_every_activation_is_compared_here():
    assert {name for name, _ in TORCH} == set(ACTIVATIONS)


@pytest.mark.parametrize(("name", "param"), list(TORCH))
def test_phi_and_its_derivative_are_torchs(name, param):
    phi, dphi = activation_functions(name, activation_param=param)
    x = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    y = TORCH[name, param](x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    points = np.array(POINTS)
    assert np.asarray(phi(points), dtype=float) == pytest.approx(y.detach().numpy(), abs=1e-12)
    assert np.broadcast_to(np.asarray(dphi(points), dtype=float), points.shape) == \
        pytest.approx(grad.numpy(), abs=1e-12)


def test_gelus_derivative_at_infinity():
    _, dphi = activation_functions("gelu")
    with np.errstate(invalid="ignore"):  # np.where computes inf * 0 in the branch not taken
        found = np.asarray(dphi(np.array([np.inf, -np.inf])), dtype=float)
    assert found.tolist() == [1.0, 0.0]

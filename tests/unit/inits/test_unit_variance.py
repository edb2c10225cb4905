"""LSUV's per-layer step (inits/structured.py unit_variance_) against a plain-torch recompute:
after it, the layer's output updated in place is the output of the rescaled weights with the
bias unchanged, the factor is what the weights were multiplied by, and it runs on weights that
require grad (as a model's do) without building a graph."""

from __future__ import annotations

import pytest
import torch

from winit_cli.inits.structured import unit_variance_


@pytest.mark.parametrize("with_bias", [True, False])
def test_the_output_is_the_rescaled_layers(with_bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g, dtype=torch.float64)
    weight = (3.0 * torch.randn(16, 32, generator=g, dtype=torch.float64)).requires_grad_()
    bias = torch.full((16,), 0.5, dtype=torch.float64) if with_bias else None
    before = weight.detach().clone()
    z = x @ weight.detach().T + (0.0 if bias is None else bias)
    factor = unit_variance_(weight, bias, z, tol=1e-6, max_iter=50)
    assert torch.allclose(weight.detach(), factor * before, rtol=1e-12, atol=0)
    recomputed = x @ weight.detach().T + (0.0 if bias is None else bias)
    assert torch.allclose(z, recomputed, rtol=1e-10, atol=1e-12)
    assert z.var().item() == pytest.approx(1.0, abs=1e-6)
    assert weight.grad_fn is None


def test_by_default_at_most_ten_rounds_as_in_the_paper():
    """Mishkin & Matas's T_max = 10 and Tol_var = 0.1 are the defaults: biases of variance 4 across
    the units keep Var(z) above 1.1 however small W gets, so the step runs all 10 rounds; the
    same 10 rounds recomputed from x W^T + b give the same weights."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 8, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 8, generator=g, dtype=torch.float64)
    bias = torch.tensor([2.0, -2.0, 2.0, -2.0], dtype=torch.float64)
    expected = weight.clone()
    for _ in range(10):
        expected /= (x @ expected.T + bias).var().sqrt()
    unit_variance_(weight, bias, x @ weight.T + bias)
    torch.testing.assert_close(weight, expected, rtol=1e-12, atol=0)

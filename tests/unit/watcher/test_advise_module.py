"""`winit.advise(model, inputs)` and `winit.fix_init`: one pass at init on any nn.Module, the
module left exactly as it was, the numbers checked against plain autograd."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import winit_cli as winit
from winit_cli.errors import ConfigError


def relu_mlp(depth: int, width: int = 64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(784, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def test_the_module_is_left_exactly_as_it_was():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(inplace=True),
                          nn.Dropout(0.3), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 5))
    x = torch.randn(16, 20)
    model(x).sum().backward()  # gradients the user already has
    model.eval()
    model[1].train()  # a mixed mode, to see it kept per module
    grads = {n: p.grad for n, p in model.named_parameters()}
    saved_grads = {n: g.clone() for n, g in grads.items()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    advice = winit.advise(model, x)
    assert [m.training for m in model.modules()] == modes
    for n, p in model.named_parameters():
        assert p.grad is grads[n] and torch.equal(p.grad, saved_grads[n])
    for k, v in model.state_dict().items():  # BatchNorm's running stats included
        assert torch.equal(v, state[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    assert list(advice.table.name) == ["0", "4", "6"]


def test_backward_and_forward_gains_are_autograd_s():
    model = relu_mlp(6, 32)
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    advice = winit.advise(model, x, y)
    zs = []
    h = x.flatten(1)
    for m in model[1:]:
        h = m(h)
        if isinstance(m, nn.Linear):
            h.retain_grad()
            zs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    norms = [z.grad.norm().item() for z in zs]
    expected = [math.log10(n / norms[-1]) for n in norms]
    assert advice.table.backward_log10.tolist() == pytest.approx(expected, abs=1e-4)
    moments = [z.detach().pow(2).mean().item() for z in zs]
    gains = [moments[0] / x.pow(2).mean().item()] + [
        b / a for a, b in zip(moments, moments[1:], strict=False)]
    assert advice.table.forward_gain.tolist() == pytest.approx(gains, rel=1e-4)
    model.zero_grad(set_to_none=True)


def test_a_deep_default_init_relu_net_vanishes_and_fix_init_heals_it():
    model = relu_mlp(40, 128)
    x = torch.randn(256, 1, 28, 28)
    before = winit.advise(model, x)
    assert before.verdict == "vanishing" and before.layer is not None
    assert "shrinks" in before.table.flagged.iloc[1]
    after = winit.fix_init(model, x)
    assert after.verdict == "healthy", after
    assert {"forward_gain_before", "backward_log10_before", "scale"} <= set(after.table)
    # unit variance; the 10-unit output layer's second moment also holds its units' means
    assert after.table.forward_gain.iloc[1:-1].between(0.8, 1.25).all()
    assert winit.advise(model, x).verdict == "healthy"  # the weights stay fixed
    assert all(p.grad is None for p in model.parameters())


def test_conv_nets_and_the_80_column_rendering():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10))
    advice = winit.fix_init(model, torch.randn(32, 1, 28, 28))
    assert list(advice.table.type) == ["Conv2d", "Conv2d", "Linear"]
    assert advice.table.forward_gain.iloc[1:].between(0.8, 1.25).all()
    text = str(advice)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "verdict:" in text


def test_a_custom_loss_and_tuple_inputs():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 1)

        def forward(self, x, scale):
            return self.b(torch.tanh(self.a(x))) * scale

    advice = winit.advise(Two(), (torch.randn(8, 4), 2.0), torch.randn(8, 1),
                          nn.functional.mse_loss)
    assert len(advice.table) == 2 and advice.verdict == "healthy"


def test_not_a_module_is_a_user_error():
    with pytest.raises(ConfigError, match="nn.Module"):
        winit.advise("model", torch.zeros(1))
    with pytest.raises(ConfigError, match="no nn.Linear"):
        winit.advise(nn.ReLU(), torch.zeros(1))

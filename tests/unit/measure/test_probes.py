"""Probe quantities against a plain autograd computation on the same weights and batch.

For each member of a stacked model (built through `models.build_model`, read through its
`linears()` and a `Trace`, as the training loop does) the test copies the weights into an ordinary
`torch.nn.Sequential` of `nn.Linear` + activation, computes the batch-mean cross-entropy, and gets
dL/dW, dL/db and dL/dz with `torch.autograd.grad`; every statistic is then recomputed from its
definition in measure/quantities.py's docstring.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.config import ModelConfig
from winit_cli.inits import initialize
from winit_cli.measure.probes import Probe
from winit_cli.measure.quantities import QUANTITIES, columns
from winit_cli.models import Trace, build_model

SIZES = (12, 16, 16, 10, 5)  # input, three hidden layers, 5 classes
BATCH = 6
LR = 0.1
NN_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh}


def make_model(activation: str, members: int, bias: bool = True, seed: int = 0):
    spec = ModelConfig(depth=len(SIZES) - 1, widths=list(SIZES[1:-1]), activation=activation,
                       bias=bias)
    model = build_model(spec, input_size=SIZES[0], classes=SIZES[-1], members=members)
    for k in range(members):
        # A wide draw so tanh units saturate and biases that kill some ReLU units outright.
        initialize(model, k, "normal", {"std": 0.6}, torch.Generator().manual_seed(seed + k))
    if bias:
        g = torch.Generator().manual_seed(100 + seed)
        with torch.no_grad():
            for layer in model.linears():
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) - 0.5)
    return model


def batch(members: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(members, BATCH, SIZES[0], generator=g) * 1.5
    y = torch.randint(0, SIZES[-1], (members, BATCH), generator=g)
    return x, y


def reference(model, member: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Every column for one member, with plain torch.nn and torch.autograd."""
    layers = []
    has_bias = model.linears()[0].bias is not None
    for l, view in enumerate(model.linears()):
        lin = nn.Linear(view.fan_in, view.fan_out, bias=has_bias)
        with torch.no_grad():
            lin.weight.copy_(view.weight[member])
            if has_bias:
                lin.bias.copy_(view.bias[member])
        layers.append(lin)
        if l < model.depth - 1:
            layers.append(NN_ACT[model.activation]())
    net = nn.Sequential(*layers)

    pre, post = [], []  # z_l and h_l, kept through forward hooks
    for module in net:
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda m, i, out: pre.append(out))
    for module in net:
        if not isinstance(module, nn.Linear):
            module.register_forward_hook(lambda m, i, out: post.append(out))
    logits = net(x[member])
    post.append(logits)
    loss = F.cross_entropy(logits, y[member])

    linears = [m for m in net if isinstance(m, nn.Linear)]
    weights = [m.weight for m in linears]
    biases = [m.bias for m in linears] if has_bias else []
    grads = torch.autograd.grad(loss, [*weights, *biases, *pre])
    gw, gb, gz = grads[:len(weights)], grads[len(weights):len(weights) + len(biases)], \
        grads[len(weights) + len(biases):]

    out: dict[str, list[float]] = {c: [] for c in columns()}
    for l in range(model.depth):
        hidden = l < model.depth - 1
        h = post[l].detach().double()
        z = pre[l].detach().double()
        out["weight_grad_norm"].append(gw[l].double().pow(2).sum().sqrt().item())
        out["bias_grad_norm"].append(gb[l].double().pow(2).sum().sqrt().item() if biases
                                     else math.nan)
        out["act_grad_norm"].append(gz[l].double().pow(2).sum().sqrt().item())
        out["weight_norm"].append(weights[l].detach().double().pow(2).sum().sqrt().item())
        # plot_grad_flow's bars: mean and max of |dL/dW| over the layer's weights
        out["weight_grad_abs_mean"].append(gw[l].double().abs().mean().item())
        out["weight_grad_abs_max"].append(gw[l].double().abs().max().item())
        n = h.numel()
        mean = h.sum().item() / n
        out["act_mean"].append(mean)
        out["act_std"].append(math.sqrt(((h - mean) ** 2).sum().item() / (n - 1)))
        if hidden and model.activation == "relu":
            dead = sum(bool((z[:, j] <= 0).all()) for j in range(z.shape[1]))
            out["dead_fraction"].append(dead / z.shape[1])
        else:
            out["dead_fraction"].append(math.nan)
        if hidden and model.activation == "tanh":
            out["saturated_fraction"].append((h.abs() > 0.99).double().mean().item())
        else:
            out["saturated_fraction"].append(math.nan)
        # The update of a plain SGD step, lr * dL/dW, against the weight before it.
        out["update_ratio"].append(
            (LR * gw[l].double()).pow(2).sum().sqrt().item() / out["weight_norm"][-1])
    return out


def measure(model, x, y, will_update: bool = True) -> torch.Tensor:
    """What train.py does at a recorded step: forward with a Trace, backward, probe, SGD."""
    probe = Probe(model)
    trace = Trace()
    logits = model(x, trace)
    k, b, c = logits.shape
    losses = F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b),
                             reduction="none").view(k, b).mean(1)
    losses.sum().backward()
    values = probe.before_step(trace, will_update)
    if will_update:
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad
        probe.after_step(values)
    return values


def assert_close(actual: float, expected: float, what: str, scale: float = 0.0) -> None:
    if math.isnan(expected):
        assert math.isnan(actual), f"{what}: expected NaN (not applicable), got {actual}"
        return
    assert actual == pytest.approx(expected, rel=1e-5, abs=1e-6 * scale + 1e-12), what


@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_probe_matches_plain_autograd(activation: str, members: int):
    model = make_model(activation, members)
    x, y = batch(members)
    refs = [reference(model, k, x, y) for k in range(members)]  # before the update
    values = measure(model, x, y)
    assert values.shape == (members, model.depth, len(columns()))
    assert values.dtype == torch.float64

    for k, ref in enumerate(refs):
        for l in range(model.depth):
            for j, name in enumerate(columns()):
                scale = ref["act_std"][l] if name == "act_mean" else 0.0
                assert_close(values[k, l, j].item(), ref[name][l],
                             f"member {k} layer {l + 1} {name}", scale)

    # The comparison must not be vacuous: the interesting fractions are neither 0 nor 1 somewhere.
    column = "saturated_fraction" if activation == "tanh" else "dead_fraction"
    fractions = [f for ref in refs for f in ref[column][:-1]]
    assert any(0 < f < 1 for f in fractions), fractions
    # Members hold different weights, so their numbers differ.
    if members > 1:
        assert refs[0]["weight_grad_norm"] != refs[1]["weight_grad_norm"]


def test_probe_without_bias_and_without_update():
    model = make_model("relu", 2, bias=False)
    x, y = batch(2)
    refs = [reference(model, k, x, y) for k in range(2)]
    values = measure(model, x, y, will_update=False)
    for k, ref in enumerate(refs):
        for l in range(model.depth):
            row = dict(zip(columns(), values[k, l].tolist(), strict=True))
            assert math.isnan(row["bias_grad_norm"])
            assert math.isnan(row["update_ratio"])  # no update at this step
            for name in ("weight_grad_norm", "act_grad_norm", "weight_norm", "dead_fraction"):
                assert_close(row[name], ref[name][l], f"member {k} layer {l + 1} {name}")


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.SGD(p, lr=0.05),
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=1e-3),
    # Variants whose update is not lr * buf: measured by difference even when told.
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.5),
    lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.1),
    # weight decay 1 and dampening 1 too: no value of either is special to the probe
    lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=1.0),
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=1.0, weight_decay=1.0),
], ids=["sgd", "momentum", "adam", "nesterov", "dampening", "weight-decay", "weight-decay-1",
        "dampening-1"])
@pytest.mark.parametrize("tell_probe", [True, False], ids=["from-state", "by-difference"])
def test_update_ratio_is_the_applied_update(make, tell_probe):
    """Read from SGD's state (no weight copy) or by difference (Adam, or an optimizer the probe
    is not told about): both measure W' - W."""
    model = make_model("relu", 2)
    x, y = batch(2)
    opt = make(model.parameters())
    probe = Probe(model, opt if tell_probe else None)
    for _ in range(3):
        opt.zero_grad()
        trace = Trace()
        logits = model(x, trace)
        F.cross_entropy(logits.reshape(-1, SIZES[-1]), y.reshape(-1)).backward()
        weights = [layer.weight for layer in model.linears()]
        before = [w.detach().clone() for w in weights]
        values = probe.before_step(trace, True)
        opt.step()
        probe.after_step(values)
        for l, (w, old) in enumerate(zip(weights, before, strict=True)):
            for k in range(2):
                expected = ((w[k] - old[k]).double().norm() / old[k].double().norm()).item()
                assert values[k, l, columns().index("update_ratio")].item() == pytest.approx(
                    expected, rel=1e-4)


def test_columns_order():
    assert columns() == ("weight_grad_norm", "bias_grad_norm", "act_grad_norm", "weight_norm",
                         "act_mean", "act_std", "dead_fraction", "saturated_fraction",
                         "weight_grad_abs_mean", "weight_grad_abs_max", "update_ratio")
    assert tuple(QUANTITIES) == columns()[:-1]


@pytest.mark.parametrize(("scheme", "activation"), [
    ("normal", "tanh"),  # stds down to ~1e-10: recomputed in float64
    ("he_normal", "sigmoid"),  # mean 0.5 >> std: float32 sums would cancel digits
    ("he_normal", "relu"),
])
def test_act_std_is_exact_in_every_regime(scheme, activation):
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=12, width=256, activation=activation), 784, 10)
    initialize(model, 0, scheme, {}, torch.Generator().manual_seed(0))
    x, y = torch.randn(1, 128, 784), torch.randint(0, 10, (1, 128))
    trace = Trace()
    F.cross_entropy(model(x, trace)[0], y[0]).backward()
    got = Probe(model).before_step(trace, False)[0, :, columns().index("act_std")]
    expected = torch.tensor([h.double().std().item() for h in trace.post], dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-5, atol=0)

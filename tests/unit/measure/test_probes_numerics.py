"""The probe in the regimes winit exists to study, where float32 arithmetic fails: gradients far
below 1e-19 or above 1e19 (their squares underflow or overflow in float32), and the unit
fractions (dead, saturated) on a net whose every pre-activation is set by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from winit_cli.config import ModelConfig
from winit_cli.datasets import make_splits
from winit_cli.inits import initialize
from winit_cli.measure.probes import Probe
from winit_cli.measure.quantities import columns
from winit_cli.models import Trace, build_model


@pytest.fixture(scope="module")
def mnist_batch(mnist_raw):
    splits = make_splits(mnist_raw, val_size=0, subset=128)
    return splits.x_train[None], splits.y_train[None]  # [1, 128, 784], [1, 128]


def probe_step0(activation: str, depth: int, std: float, x, y):
    """One recorded step of a fresh net: the probe's record, and the trace and model."""
    model = build_model(ModelConfig(depth=depth, width=256, activation=activation), 784, 10)
    initialize(model, 0, "normal", {"std": std}, torch.Generator().manual_seed(0))
    trace = Trace()
    F.cross_entropy(model(x, trace)[0], y[0]).backward()
    return Probe(model).before_step(trace, False)[0], trace, model


def float64_norms(trace: Trace, model) -> dict[str, list[float]]:
    """The norms from their definition, every element squared in float64."""
    def n(t):
        return t.detach().double().pow(2).sum().sqrt().item()
    layers = model.linears()
    return {"act_grad_norm": [n(trace.pre_grad(l)) for l in range(len(layers))],
            "weight_grad_norm": [n(layer.weight.grad) for layer in layers],
            "bias_grad_norm": [n(layer.bias.grad) for layer in layers],
            "act_std": [h.double().std().item() for h in trace.post]}


@pytest.mark.mnist
@pytest.mark.parametrize(("activation", "std", "extreme"), [
    ("tanh", 0.01, "vanishing"),  # the README's 30-layer tanh N(0, 0.01^2) net
    ("linear", 0.35, "exploding"),  # sigma_w^2 = 31: x5.6 per layer, backwards and forwards
])
def test_norms_are_exact_far_outside_float32s_range(activation, std, extreme, mnist_batch):
    """Protects the float64 recompute of norms outside SAFE_BAND: without it, the gradients of a
    30-layer tanh net with N(0, 0.01^2) weights (1e-25 .. 1e-19 in the lower layers) record
    exactly 0, and those of an exploding net (beyond 1e19) record inf."""
    values, trace, model = probe_step0(activation, 30, std, *mnist_batch)
    expected = float64_norms(trace, model)
    for name, wanted in expected.items():
        got = values[:, columns().index(name)].tolist()
        for l, (g, w) in enumerate(zip(got, wanted, strict=True)):
            assert math.isfinite(g) and g > 0, f"layer {l + 1} {name}: recorded {g}, is {w}"
            assert g == pytest.approx(w, rel=1e-6, abs=0), f"layer {l + 1} {name}"
    # The premise: some norms really are beyond float32's squares.
    grads = expected["act_grad_norm"]
    if extreme == "vanishing":
        assert min(grads) < 1e-22 and max(grads) > 1e-3
    else:
        assert max(grads) > 1e20  # squares beyond float32 max (3e38)


def hand_built(activation: str):
    """One hidden layer of four units on two examples, z chosen by hand: with x the unit vectors
    e_1, e_2 and no bias, example i's pre-activations are column i of W_1.

        unit      1     2     3     4
        z(ex 1)  -1     2    -3    10
        z(ex 2)  -2    -1     5   -10
    """
    model = build_model(ModelConfig(depth=2, width=4, activation=activation, bias=False), 3, 2)
    z = torch.tensor([[-1.0, 2.0, -3.0, 10.0], [-2.0, -1.0, 5.0, -10.0]])
    with torch.no_grad():
        model.linears()[0].weight[0, :, :2] = z.T
        model.linears()[1].weight[0] = 0.1
    x = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    trace = Trace()
    F.cross_entropy(model(x, trace)[0], torch.tensor([0, 1])).backward()
    return Probe(model).before_step(trace, False)[0]


@pytest.mark.parametrize(("activation", "dead", "saturated"), [
    # dead: z <= 0 on both examples: unit 1 only
    ("relu", 1 / 4, None),
    ("leaky_relu", 1 / 4, None),
    # |tanh z| > 0.99 where |z| > 2.65: -3, 10, 5, -10
    ("tanh", None, 4 / 8),
    # sigmoid < 0.01 or > 0.99 where |z| > 4.6: 10, 5, -10
    ("sigmoid", None, 3 / 8),
])
def test_unit_fractions_by_hand(activation, dead, saturated):
    """Protects dead_fraction (ReLU and leaky ReLU: units never positive on the batch) and
    saturated_fraction (tanh: |h| > 0.99; sigmoid: h < 0.01 or h > 0.99; over batch and units)
    against counts done by hand; each is empty where it does not apply, and on the output."""
    values = hand_built(activation)
    hidden, output = values[0], values[1]
    for name, want in (("dead_fraction", dead), ("saturated_fraction", saturated)):
        got = hidden[columns().index(name)].item()
        if want is None:
            assert math.isnan(got), name
        else:
            assert got == pytest.approx(want, abs=1e-7), name
        assert math.isnan(output[columns().index(name)].item())


@pytest.mark.mnist
@pytest.mark.parametrize("members", [1, 2])
def test_act_std_is_exact_where_the_mean_dwarfs_the_spread(members, mnist_batch):
    """Protects act_std's recompute from centred values: a sigmoid net with N(0, 0.001^2)
    weights has h = 0.5 +- 0.002 in every hidden layer, and std from sum(h^2) - n * mean^2
    cancels all but the last few float32 digits of sum(h^2) (a relative error of 1e-2 or
    worse). Checked against torch's float64 std of the traced activations, for one member and
    for two stacked ones (each centred on its own mean)."""
    x, y = mnist_batch
    model = build_model(ModelConfig(depth=6, width=256, activation="sigmoid"), 784, 10, members)
    for k in range(members):
        initialize(model, k, "normal", {"std": 0.001 * (k + 1)}, torch.Generator().manual_seed(k))
    trace = Trace()
    logits = model(x.expand(members, *x.shape[1:]), trace)
    F.cross_entropy(logits.flatten(0, 1), y.expand(members, -1).flatten()).backward()
    values = Probe(model).before_step(trace, False)
    for k in range(members):
        got = values[k, :, columns().index("act_std")].tolist()
        wanted = [h[k].double().std().item() for h in trace.post]
        for l, (g, w) in enumerate(zip(got, wanted, strict=True)):
            assert g == pytest.approx(w, rel=1e-6, abs=0), f"member {k} layer {l + 1} act_std"
        # The premise: the mean is tens to hundreds of standard deviations from zero.
        means = [h[k].double().mean().item() for h in trace.post[:-1]]
        assert all(m / s > 25 for m, s in zip(means, wanted, strict=False)), f"member {k}"

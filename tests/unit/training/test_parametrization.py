"""model.parametrization: the per-layer factors against a hand-built table of Tensor Programs
V's rules, the standard parametrization untouched, every parametrization equal to the standard
one at its base width, and the output multiplier against a plain torch forward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from winit_cli.config import validate
from winit_cli.errors import ConfigError
from winit_cli.inits import initialize
from winit_cli.models import build_model
from winit_cli.training.parametrization import multiplier, param_groups, rescale_init

IN, CLASSES, LR = 12, 3, 0.01


def _config(parametrization: str, width: int, base: int | None, optimizer: str = "adam",
            kind: str = "mlp", depth: int = 4):
    model = {"kind": kind, "depth": depth, "width": width, "parametrization": parametrization}
    if base is not None:
        model["base_width"] = base
    return validate({"model": model, "train": {"optimizer": optimizer, "lr": LR}})


def _lrs(config) -> list[float]:
    """Each Linear layer's (weight lr, bias lr), flattened, from the parameter groups."""
    model = build_model(config.model, IN, CLASSES)
    groups = param_groups(model, config)
    by_param = {id(p): g["lr"] for g in groups for p in g["params"]}
    return [by_param[id(p)] for layer in model.linears() for p in (layer.weight, layer.bias)]


# width 512, base 128: m = 4. (input W, input b, hidden W, b, hidden W, b, output W, output b)
TABLE = {
    # TP5 Table 8 / the mup package: MuAdam divides a matrix-like (hidden) weight's lr by m
    ("mup", "adam"): [1, 1, 1 / 4, 1, 1 / 4, 1, 1, 1],
    # MuSGD multiplies a vector-like parameter's lr by its growing dimension's m: the input
    # weight, hidden biases, the output weight; a square hidden weight keeps lr; output bias too
    ("mup", "sgd"): [4, 4, 1, 4, 1, 4, 4, 1],
    ("ntk", "adam"): [1, 1, 1 / 2, 1, 1 / 2, 1, 1 / 2, 1],
    ("ntk", "sgd"): [1, 1, 1 / 4, 1, 1 / 4, 1, 1 / 4, 1],
}


@pytest.mark.parametrize(("parametrization", "optimizer"), sorted(TABLE))
def test_learning_rates_follow_the_table(parametrization, optimizer):
    got = _lrs(_config(parametrization, 512, 128, optimizer))
    assert got == pytest.approx([LR * f for f in TABLE[parametrization, optimizer]])


def test_momentum_scales_as_sgd():
    assert _lrs(_config("mup", 512, 128, "momentum")) == _lrs(_config("mup", 512, 128, "sgd"))


def test_standard_adds_nothing():
    config = _config("standard", 64, None)
    model = build_model(config.model, IN, CLASSES)
    assert multiplier(model, config.model) is None
    assert param_groups(model, config) is None


@pytest.mark.parametrize("parametrization", ["ntk", "mup"])
@pytest.mark.parametrize("kind", ["mlp", "resmlp"])
def test_every_parametrization_is_standard_at_its_base_width(parametrization, kind):
    config = _config(parametrization, 32, 32, kind=kind)
    model = build_model(config.model, IN, CLASSES)
    assert multiplier(model, config.model) is None
    assert {g["lr"] for g in param_groups(model, config)} == {LR}


def test_mup_output_layer_against_plain_torch():
    """mup's readout: weights and bias drawn x sqrt(m), logits = h (W / m)^T + b; hidden
    biases x sqrt(m); everything else as drawn (`mup.MuReadout`, `rescale_linear_bias`)."""
    m = 4
    config = _config("mup", 16 * m, 16, "adam")
    model, plain = (build_model(config.model, IN, CLASSES) for _ in range(2))
    model.output_multiplier = multiplier(model, config.model)
    for net in (model, plain):
        initialize(net, 0, "he_normal", {},
                   torch.Generator().manual_seed(0))
        with torch.no_grad():
            for layer in net.linears():
                layer.bias.normal_(generator=torch.Generator().manual_seed(1))
    rescale_init(model, 0, config)
    x = torch.randn(1, 5, IN)
    h = x[0]
    layers = plain.linears()
    for l, layer in enumerate(layers):
        w, b = layer.weight[0], layer.bias[0]
        if l == len(layers) - 1:
            h = F.linear(h, w * m ** 0.5 / m, b * m ** 0.5)
        else:
            h = F.relu(F.linear(h, w, b * (m ** 0.5 if l > 0 else 1.0)))
    torch.testing.assert_close(model(x)[0], h)


@pytest.mark.parametrize(("change", "message"), [
    ({"parametrization": "mup", "kind": "mlp", "depth": 1}, "hidden layer"),
    ({"parametrization": "mup", "norm": "layer"}, "model.norm"),
])
def test_combinations_that_do_not_exist_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        validate({"model": {"depth": 4, "width": 64, **change}})


@pytest.mark.parametrize("kind", ["mlp", "resmlp"])
def test_stacked_members_take_the_multiplier_as_one_does(kind):
    """K members batched compute what each computes alone (the stacked forward path)."""
    config = _config("mup", 64, 16, kind=kind)
    stacked, alone = build_model(config.model, IN, CLASSES, 2), build_model(config.model, IN,
                                                                             CLASSES)
    for net in (stacked, alone):
        net.output_multiplier = multiplier(net, config.model)
    assert stacked.output_multiplier == pytest.approx(1 / 4)
    for member in (0, 1):
        initialize(stacked, member, "he_normal", {}, torch.Generator().manual_seed(member))
    initialize(alone, 0, "he_normal", {}, torch.Generator().manual_seed(1))
    x = torch.randn(5, IN)
    torch.testing.assert_close(stacked(x.expand(2, 5, IN))[1], alone(x.unsqueeze(0))[0])


def test_without_a_base_width_the_first_hidden_width_is_the_base():
    """Per-layer widths 64, 32, 16 and no base_width: the base is the first hidden width, 64, so
    mup's readout (fan_in 16, m = 16 / 64) multiplies by 1 / m = 4."""
    config = validate({"model": {"depth": 4, "widths": [64, 32, 16], "parametrization": "mup"}})
    model = build_model(config.model, IN, CLASSES)
    assert multiplier(model, config.model) == pytest.approx(4.0)


def test_a_width_below_its_base_scales_the_readout_up():
    """mup at width 16, base 64: m = 1/4, the readout multiplier 1 / m = 4 (not 1: only exactly
    1 is left out)."""
    config = _config("mup", 16, 64)
    assert multiplier(build_model(config.model, IN, CLASSES), config.model) == pytest.approx(4.0)


def test_mup_rescales_the_weights_of_a_net_without_biases():
    """model.bias false: the readout's weights are still drawn x sqrt(m) (m = 4: x 2), the
    others left as drawn, and the absent biases are passed over."""
    config = validate({"model": {"depth": 4, "width": 64, "base_width": 16, "bias": False,
                                 "parametrization": "mup"}})
    model = build_model(config.model, IN, CLASSES)
    initialize(model, 0, "he_normal", {}, torch.Generator().manual_seed(0))
    drawn = [layer.weight[0].clone() for layer in model.linears()]
    rescale_init(model, 0, config)
    for layer, before, factor in zip(model.linears(), drawn, [1, 1, 1, 2], strict=True):
        assert layer.bias is None
        torch.testing.assert_close(layer.weight[0], before * factor)


@pytest.mark.parametrize("kind", ["mlp", "resmlp"])
def test_every_parameter_is_in_exactly_one_group(kind):
    """A resmlp's trained branch scales belong to no Linear layer: they form a group at
    train.lr; a plain MLP has no such parameter and no empty group."""
    config = validate({"model": {"kind": kind, "depth": 4, "width": 64, "base_width": 16,
                                 "parametrization": "mup", "learnable_scale": kind == "resmlp"},
                       "train": {"lr": LR}})
    model = build_model(config.model, IN, CLASSES)
    groups = param_groups(model, config)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    assert all(g["params"] for g in groups)
    linear = {id(p) for layer in model.linears() for p in (layer.weight, layer.bias)}
    rest = [g for g in groups if not {id(p) for p in g["params"]} & linear]
    assert [g["lr"] for g in rest] == ([LR] if kind == "resmlp" else [])

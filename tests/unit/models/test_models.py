"""Model kinds: the registry (`model.kind`), the interface every kind offers (`models.base`), and
sizes taken from the dataset rather than assumed."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.config import ModelConfig, load_config, validate
from winit_cli.datasets import make_splits
from winit_cli.errors import ConfigError
from winit_cli.inits import initialize
from winit_cli.measure.probes import Probe
from winit_cli.measure.quantities import columns
from winit_cli.models import (
    MODELS,
    LinearView,
    ModelKind,
    StackedModel,
    Trace,
    build_model,
    get_model_kind,
)
from winit_cli.models.mlp import StackedMLP
from winit_cli.runner.member import layers_frame
from winit_cli.training.loop import train


def test_mlp_is_the_default_kind():
    assert load_config(None).model.kind == "mlp"
    assert MODELS["mlp"].load() is StackedMLP
    assert isinstance(build_model(ModelConfig(depth=2, width=3), 5, 2), StackedMLP)


@pytest.mark.parametrize("overrides", [
    ["model.depth=4", "model.width=9"], ["model.depth=4", "model.widths=[7,5,3]"],
    ["model.kind=resmlp", "model.depth=6", "model.width=8"],
    ["model.kind=resmlp", "model.depth=4", "model.branch_layers=1", "model.width=5"]])
def test_a_kinds_layer_shapes_without_torch_are_those_of_the_model_it_builds(overrides):
    """`winit advise` reads the shapes from the registry, without building a model."""
    config = load_config(None, overrides)
    kind = get_model_kind(config.model.kind)
    built = build_model(config.model, 13, 3).layer_shapes()
    assert kind.layer_shapes(config.model, 13, 3) == built
    assert dataclasses.replace(kind, shapes=None).layer_shapes(config.model, 13, 3) == built


def test_unknown_model_kind_names_the_known_ones():
    with pytest.raises(ConfigError) as e:
        get_model_kind("resnet")
    assert str(e.value) == f"model.kind: unknown model kind 'resnet'; known: " \
                           f"{', '.join(sorted(MODELS))}"
    # given with --set, the error names the option (issue 9)
    with pytest.raises(ConfigError,
                       match=r"^--set model.kind=resnet: model.kind: unknown model kind 'resnet'"):
        load_config(None, ["model.kind=resnet"])


def test_mlp_linears_are_views_of_its_parameters_in_forward_order():
    """linears() lists every parameter once, input side first, with fans and activations, and
    a Trace records each layer's z and phi(z) as an independent computation gives them."""
    model = build_model(ModelConfig(depth=3, widths=[7, 5], activation="tanh"), 11, 4, members=2)
    for k in range(2):
        initialize(model, k, "he_normal", {}, torch.Generator().manual_seed(k))
    views = model.linears()
    assert [(v.fan_in, v.fan_out) for v in views] == [(11, 7), (7, 5), (5, 4)]
    assert model.layer_shapes() == [(11, 7), (7, 5), (5, 4)] and model.depth == 3
    assert [v.activation for v in views] == ["tanh", "tanh", None]
    in_views = [p for v in views for p in (v.weight, v.bias)]
    assert sorted(map(id, in_views)) == sorted(map(id, model.parameters()))

    x = torch.randn(2, 6, 11, generator=torch.Generator().manual_seed(5))
    trace = Trace()
    logits = model(x, trace)
    assert logits.shape == (2, 6, 4) and len(trace.pre) == 3
    for k in range(2):
        h = x[k]
        for l, v in enumerate(views):
            z = h @ v.weight[k].T + v.bias[k]
            h = z if v.activation is None else torch.tanh(z)
            assert torch.allclose(trace.pre[l][k], z, atol=1e-6)
            assert torch.allclose(trace.post[l][k], h, atol=1e-6)
        assert torch.allclose(logits[k], h, atol=1e-6)


def test_members_do_not_mix():
    model = build_model(ModelConfig(depth=3, width=8), 6, 3, members=3)
    for k in range(3):
        initialize(model, k, "he_normal", {}, torch.Generator().manual_seed(k))
    x = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(9))
    before = model(x).detach()
    with torch.no_grad():
        model.linears()[1].weight[1].mul_(3.0)
    after = model(x).detach()
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.equal(before[1], after[1])


class SoftmaxRegression(StackedModel):
    """The smallest kind there is: one Linear layer, no activation. Written only against the
    interface, as a new kind's file would be."""

    def __init__(self, input_size: int, classes: int, members: int):
        super().__init__()
        self.members, self.activation = members, "linear"
        self.weight = nn.Parameter(torch.zeros(members, classes, input_size))
        self.bias = nn.Parameter(torch.zeros(members, classes))

    @classmethod
    def from_config(cls, config, input_size, classes, members):
        return cls(input_size, classes, members)

    def linears(self) -> list[LinearView]:
        return [LinearView(self.weight, self.bias, None)]

    def forward(self, x, trace=None):
        z = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))
        return z if trace is None else trace.record(z, None, self.members)


@pytest.fixture
def softmax_kind():
    with MODELS.temporarily("softmax", ModelKind(SoftmaxRegression, lambda config: None)):
        yield


def test_a_new_kind_is_one_class_and_the_rest_of_winit_takes_it(softmax_kind):
    """Registering a class makes `model.kind` accept it, the schemes fill it, and the probe
    measures it through the interface (checked against the closed-form gradient)."""
    config = load_config(None, ["model.kind=softmax"])
    model = build_model(config.model, input_size=20, classes=3, members=2)
    assert isinstance(model, SoftmaxRegression)
    for k in range(2):
        initialize(model, k, "xavier_normal", {}, torch.Generator().manual_seed(k))
        expected = nn.init.xavier_normal_(torch.empty(3, 20), generator=torch.Generator()
                                          .manual_seed(k))
        assert torch.equal(model.weight[k].detach(), expected)

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 8, 20, generator=g), torch.randint(0, 3, (2, 8), generator=g)
    trace = Trace()
    logits = model(x, trace)
    F.cross_entropy(logits.reshape(-1, 3), y.reshape(-1), reduction="none").view(2, 8) \
        .mean(1).sum().backward()
    values = Probe(model).before_step(trace, will_update=False)
    for k in range(2):
        dz = (logits[k].softmax(-1) - F.one_hot(y[k], 3)).detach() / 8  # dL/dz, mean over 8
        expected = {"act_grad_norm": dz.norm().item(), "weight_grad_norm": (dz.T @ x[k]).norm()
                    .item(), "bias_grad_norm": dz.sum(0).norm().item()}
        for name, value in expected.items():
            assert values[k, 0, columns().index(name)].item() == pytest.approx(value, rel=1e-5)
        assert math.isnan(values[k, 0, columns().index("dead_fraction")].item())


@pytest.mark.mnist
def test_sizes_come_from_the_dataset(mnist_raw):
    """A dataset of 100 inputs and 3 classes (MNIST's 10x10 centre, digit mod 3) gives a model
    of those sizes; training runs and layers.csv's fans are the model's, not 784 and 10."""
    splits = make_splits(mnist_raw, val_size=200, subset=600, seed=0)
    centre = (torch.arange(9, 19)[:, None] * 28 + torch.arange(9, 19)[None, :]).flatten()
    small = dataclasses.replace(
        splits, x_train=splits.x_train[:, centre], x_val=splits.x_val[:, centre],
        x_test=splits.x_test[:, centre], y_train=splits.y_train % 3, y_val=splits.y_val % 3,
        y_test=splits.y_test % 3, classes=3)
    assert small.input_size == 100

    model = build_model(ModelConfig(depth=3, width=16), small.input_size, small.classes, 2)
    assert model(torch.zeros(2, 5, 100)).shape == (2, 5, 3)

    config = validate({"model": {"depth": 3, "width": 16}, "train": {"steps": 4},
                       "record": {"every": 2}})
    (log,) = train([config], small)
    assert log.status == "complete"
    assert log.layer_shapes == [(100, 16), (16, 16), (16, 3)]
    step0 = layers_frame(log).query("step == 0")
    assert step0.fan_in.tolist() == [100, 16, 16] and step0.fan_out.tolist() == [16, 16, 3]

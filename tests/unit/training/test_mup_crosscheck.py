"""The independent check of model.parametrization and record.coord: the `mup` package (Yang et
al.'s own code) builds the same MLP with MuReadout and set_base_shapes, trains it with MuAdam
(muP) or torch's Adam (SP) through its get_coord_data, and records each Linear layer's mean
|output| ("l1"). winit's coord column must match it within 10% at steps 0-3, at every width.

Both start from the same drawn weights (winit's he_normal draw, before any parametrization
rescales them: mup rescales its copy itself) and see the same data: one batch of all the
training examples, so winit's shuffled order changes neither the batch mean nor the gradient.
mup's step t (1-based) is the forward pass after t - 1 updates: winit's step t - 1."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from mup import MuReadout, set_base_shapes
from mup.coord_check import get_coord_data
from torch import nn

from winit_cli.config import validate
from winit_cli.datasets.splits import Splits
from winit_cli.inits import initialize
from winit_cli.models import build_model
from winit_cli.runner.member import layers_frame
from winit_cli.training.loop import train

IN, CLASSES, EXAMPLES, DEPTH = 24, 10, 64, 4
BASE, WIDTHS, LR, STEPS = 32, (32, 64, 128), 0.01, 3


def _config(parametrization: str, width: int):
    return validate({
        "model": {"depth": DEPTH, "width": width, "parametrization": parametrization,
                  "base_width": BASE},
        "train": {"steps": STEPS, "batch_size": EXAMPLES, "optimizer": "adam", "lr": LR,
                  "threads": 1},
        "record": {"every": 1, "coord": True}})


def _splits() -> Splits:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(EXAMPLES, IN, generator=g)
    y = torch.randint(0, CLASSES, (EXAMPLES,), generator=g)
    return Splits(x, y, x[:8], y[:8], x[:8], y[:8], torch.arange(EXAMPLES),
                  torch.arange(8), classes=CLASSES)


def _winit(parametrization: str, width: int) -> pd.DataFrame:
    (log,) = train([_config(parametrization, width)], _splits())
    frame = layers_frame(log)
    return frame[["step", "layer", "coord"]]


def _torch_mlp(width: int, readout: type[nn.Linear]) -> nn.Sequential:
    sizes = [IN, *[width] * (DEPTH - 1)]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, readout(width, CLASSES))


def _mup_model(parametrization: str, width: int) -> nn.Sequential:
    """The MLP as the mup package builds it, holding winit's drawn (unrescaled) weights."""
    mu = parametrization == "mup"
    net = _torch_mlp(width, MuReadout if mu else nn.Linear)
    drawn = build_model(_config("standard", width).model, IN, CLASSES)
    initialize(drawn, 0, "he_normal", {}, torch.Generator().manual_seed(0))
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for mine, theirs in zip(linears, drawn.linears(), strict=True):
            mine.weight.copy_(theirs.weight[0])
            mine.bias.copy_(theirs.bias[0])
    if mu:
        set_base_shapes(net, _torch_mlp(BASE, MuReadout), delta=_torch_mlp(2 * BASE, MuReadout))
    return net


def _mup(parametrization: str) -> pd.DataFrame:
    batch = (_splits().x_train, _splits().y_train)
    models = {w: (lambda w=w: _mup_model(parametrization, w)) for w in WIDTHS}
    data = get_coord_data(models, [batch], optimizer="adam", lr=LR,
                          mup=parametrization == "mup", nsteps=STEPS + 1, cuda=False,
                          show_progress=False, lossfn="xent")
    linear_names = {str(2 * i): i + 1 for i in range(DEPTH)}  # Sequential: Linear, ReLU, ...
    data = data[data.module.isin(linear_names)]
    return data.assign(layer=data.module.map(linear_names), step=data.t - 1)


@pytest.mark.parametrize("parametrization", ["standard", "mup"])
def test_coordinates_match_the_mup_package(parametrization):
    theirs = _mup(parametrization)
    for width in WIDTHS:
        ours = _winit(parametrization, width).set_index(["step", "layer"]).coord
        expected = theirs[theirs.width == width].set_index(["step", "layer"]).l1
        assert len(ours) == len(expected) == (STEPS + 1) * DEPTH
        ratio = ours / expected.reindex(ours.index)
        assert ((ratio - 1).abs() < 0.10).all(), (width, ratio.to_dict())

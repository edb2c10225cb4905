"""One recorder for `winit run` and `winit.watch`: a quantity registered in `QUANTITIES`, and
nothing else, is a column of both a CLI run's and a watched run's layers.csv, with the value a
plain torch computation gives."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from typer.testing import CliRunner

import winit_cli as winit
from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.measure.quantities import QUANTITIES, Quantity, columns
from winit_cli.runner.group import load_splits
from winit_cli.training.step import setup

pytestmark = [pytest.mark.mnist]

NAME = "tmp_weight_abs_sum"
TINY = {"model": {"depth": 3, "width": 16}, "train": {"steps": 4, "threads": 1},
        "data": {"subset": 600}, "record": {"every": 2}}


@pytest.fixture
def weight_abs_sum():
    """sum |W| per layer, registered after every winit module was imported; the registry is
    restored afterwards."""
    with QUANTITIES.temporarily(NAME, Quantity(norm_of=lambda v: v.weight, ord=1)):
        yield NAME


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.mark.usefixtures("winit_data_dir")
def test_a_registered_quantity_is_a_column_of_a_cli_run(tmp_path, weight_abs_sum):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "out")}))
    result = CliRunner().invoke(app, ["run", str(config_file), "--quiet"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    layers = pd.read_csv(only_run(tmp_path / "out") / "layers.csv")
    assert list(layers.columns[5:5 + len(columns())]) == list(columns())
    assert columns()[-2:] == (weight_abs_sum, "update_ratio")
    assert sorted(set(layers.step)) == [0, 2, 4] and layers[weight_abs_sum].notna().all()
    # the same member at initialization, built as the run built it: sum |W| in float64
    config = load_config(config_file)
    group = setup([config], load_splits(config), torch.device("cpu"))
    expected = [float(layer.weight[0].detach().double().abs().sum())
                for layer in group.model.linears()]
    step0 = layers[layers.step == 0].sort_values("layer")
    np.testing.assert_allclose(step0[weight_abs_sum], expected, rtol=1e-6)


def test_a_registered_quantity_is_a_column_of_a_watched_run(tmp_path, mnist_raw,
                                                            weight_abs_sum):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.LayerNorm(32), nn.ReLU(),
                          nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    probe = winit.watch(model, optimizer, every=1, out=tmp_path)
    x = mnist_raw.train_images[:64].float().div(255)
    y = mnist_raw.train_labels[:64]
    expected = []
    for _ in range(3):
        twin = copy.deepcopy(model)  # the weights this step is measured at
        expected.append([float(twin.get_submodule(name).weight.detach().double().abs().sum())
                         for name in ("1", "2", "4")])
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        probe.step(loss)
        optimizer.step()
        optimizer.zero_grad()
    run = probe.close()
    layers = pd.read_csv(run.dir / "layers.csv")
    assert list(layers.columns[6:6 + len(columns())]) == list(columns())
    got = layers.sort_values(["step", "layer"])[weight_abs_sum].to_numpy().reshape(3, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)

"""`winit.watch` on an nn.Sequential MLP gives the numbers a `winit run` of the same MLP gives:
the same step-0 weights, batches, optimizer and schedule, layers.csv compared value by value,
and the same verdict and theory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import winit_cli as winit
from winit_cli.config import load_config
from winit_cli.datasets import make_splits
from winit_cli.measure.quantities import columns
from winit_cli.runner.group import SPLIT_SEED, input_second_moment, run_group
from winit_cli.training.step import setup
from winit_cli.watcher import WatchedRun

pytestmark = pytest.mark.mnist

STEPS, EVERY = 20, 5  # the CLI also records the last step: make it a multiple of EVERY


def cli_config(tmp_path, activation: str, scheme: str):
    return load_config(None, [
        "name=twin", f"output_dir={tmp_path / 'cli'}", "model.depth=4", "model.width=48",
        f"model.activation={activation}", f"init.scheme={scheme}", f"train.steps={STEPS}",
        "train.batch_size=64", "train.optimizer=momentum", "train.lr=0.05", "train.seed=3",
        "data.subset=2000", "data.val_size=500", f"record.every={EVERY}"])


def sequential_twin(config, splits) -> tuple[nn.Sequential, object]:
    """An nn.Sequential holding the CLI model's step-0 weights (same seed, same init), and the
    CLI's batches."""
    group = setup([config], splits, torch.device("cpu"))
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[config.model.activation]
    modules: list[nn.Module] = []
    views = group.model.linears()
    for l, view in enumerate(views):
        linear = nn.Linear(view.fan_in, view.fan_out)
        with torch.no_grad():
            linear.weight.copy_(view.weight[0])
            linear.bias.copy_(view.bias[0])
        modules += [linear] if l == len(views) - 1 else [linear, act()]
    return nn.Sequential(*modules), group.batches


def watched_twin(config, splits, out, **kwargs) -> WatchedRun:
    model, batches = sequential_twin(config, splits)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    probe = winit.watch(model, optimizer, every=EVERY, out=out, name="twin", **kwargs)
    for step in range(STEPS + 1):
        x, y = batches.get(step)
        loss = F.cross_entropy(model(x[0]), y[0])
        loss.backward()
        probe.step(loss)
        if step < STEPS:  # the CLI's last step is measured, not taken
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return probe.close()


@pytest.mark.parametrize("activation,scheme", [("relu", "he_normal"), ("tanh", "xavier_uniform")])
def test_watch_matches_the_cli_probes(tmp_path, mnist_raw, activation, scheme):
    """Every layers.csv value of the hook-based probe equals the CLI's on the same MLP and
    batches, and both runs reach the same verdict and theory."""
    config = cli_config(tmp_path, activation, scheme)
    splits = make_splits(mnist_raw, config.data.val_size, config.data.subset, seed=SPLIT_SEED)
    (cli,) = run_group([config], splits)
    moment = input_second_moment(splits)
    run = watched_twin(config, splits, tmp_path / "watch", scheme=scheme,
                       input_second_moment=moment)
    ours = run.layers.set_index(["step", "layer"]).sort_index()
    theirs = pd.read_csv(cli.run_dir / "layers.csv").set_index(["step", "layer"]).sort_index()
    assert list(ours.index) == list(theirs.index)
    assert ours.name.tolist() == ["0", "2", "4", "6"] * (STEPS // EVERY + 1)
    # Equal to float rounding: the CLI reads update_ratio as lr * ||momentum buffer|| off SGD,
    # the watch takes ||W' - W|| (float32 rounding of the difference, ~1e-6); and the CLI trains
    # at the thread count it chose for the machine's load (train.threads: auto) with a foreach
    # SGD step, so later steps may differ from the twin's in the last bits.
    for column in [*columns(), "fan_in", "fan_out", "predicted_log10_grad_ratio"]:
        np.testing.assert_allclose(ours[column].to_numpy(float), theirs[column].to_numpy(float),
                                   rtol=2e-5, atol=0, equal_nan=True, err_msg=column)
    ours_verdict, theirs_verdict = run.record.verdict.model_dump(), cli.record.verdict.model_dump()
    assert ours_verdict.keys() == theirs_verdict.keys()
    for key, value in theirs_verdict.items():  # the verdict, layer and step exactly
        expected = pytest.approx(value, rel=1e-4) if isinstance(value, float) else value
        assert ours_verdict[key] == expected, key
    assert run.record.activation == activation and run.record.depth == 4
    assert run.record.width == 48
    assert run.record.theory.applicable
    assert run.record.theory.predicted_log10_ratio == pytest.approx(
        cli.record.theory.predicted_log10_ratio, rel=1e-9)
    losses = pd.read_csv(cli.run_dir / "metrics.csv").dropna(subset=["train_loss"])
    np.testing.assert_allclose(run.metrics.train_loss, losses.train_loss, rtol=1e-5)


def test_theory_needs_a_scheme_and_an_mlp(tmp_path, mnist_raw):
    """Without `scheme` the theory says why it is not applicable; the input moment defaults to
    step 0's batch (so the prediction moves only slightly)."""
    config = cli_config(tmp_path, "relu", "he_normal")
    splits = make_splits(mnist_raw, config.data.val_size, config.data.subset, seed=SPLIT_SEED)
    unknown = watched_twin(config, splits, tmp_path / "a")
    assert not unknown.record.theory.applicable
    assert "scheme is unknown" in unknown.record.theory.reason
    assert unknown.layers.predicted_q.isna().all()
    batch = watched_twin(config, splits, tmp_path / "b", scheme="he_normal")
    x, _ = sequential_twin(config, splits)[1].get(0)
    assert batch.record.theory.input_second_moment == pytest.approx(
        float(x[0].double().pow(2).mean()))

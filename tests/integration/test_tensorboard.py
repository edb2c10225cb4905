"""TensorBoard event files, read back with TensorBoard's own reader (EventAccumulator): written
live by `winit.watch(..., tensorboard=True)` and by CLI runs with `record.tensorboard: true`,
and by `winit export tensorboard` from finished run folders; every value equals layers.csv's
and metrics.csv's (to float32, the precision of an event)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from typer.testing import CliRunner

import winit_cli as winit
from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.errors import ConfigError
from winit_cli.measure.quantities import columns

QUICK = ["model.depth=3", "model.width=32", "train.steps=12", "train.batch_size=32",
         "data.subset=600", "data.val_size=100", "record.every=4", "record.eval_every=6"]


def scalars(folder: Path, outcome: bool = False) -> dict[str, dict[int, float]]:
    """Every scalar series in a folder's event files: tag -> {step: value}; the outcome/ tags
    (a finished run's numbers, test_outcome_... below) only if `outcome`."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)}
            for tag in events.Tags()["scalars"] if outcome or not tag.startswith("outcome/")}


def verdict_and_hparams(folder: Path) -> tuple[str, dict, dict]:
    """The winit/verdict text, and the HParams plugin's session: hparams and metric tags,
    read with TensorBoard's own reader and protobufs."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    text = events.Tensors("winit/verdict/text_summary")[-1].tensor_proto.string_val[0].decode()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
               for k, v in start.hparams.items()}
    metrics = {m.name.tag for m in experiment.metric_infos}
    return text, hparams, metrics


def expected(layers: pd.DataFrame, metrics: pd.DataFrame, names,
             quantities=columns()) -> dict[str, dict[int, float]]:
    """The series the tag layout promises, from the run's tables (finite cells only)."""
    want: dict[str, dict[int, float]] = {}
    for _, row in layers.iterrows():
        for q in quantities:
            if np.isfinite(row[q]):
                want.setdefault(f"{q}/{names(row)}", {})[int(row.step)] = row[q]
    for _, row in metrics.iterrows():
        for column in metrics.columns.drop(["step", "epoch"], errors="ignore"):
            if np.isfinite(row[column]):
                want.setdefault(f"metrics/{column}", {})[int(row.step)] = row[column]
    return want


def assert_same(got, want) -> None:
    assert sorted(got) == sorted(want)
    for tag, series in want.items():
        assert sorted(got[tag]) == sorted(series), tag
        np.testing.assert_allclose([got[tag][s] for s in sorted(series)],
                                   [series[s] for s in sorted(series)], rtol=1e-6, err_msg=tag)


def watched_run(out: Path, mnist_raw, tensorboard: bool):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 26 * 26, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = winit.watch(model, optimizer, every=3, out=out, tensorboard=tensorboard)
    x = mnist_raw.train_images[:160].float().div(255).view(-1, 1, 28, 28)
    y = mnist_raw.train_labels[:160]
    for i in range(0, 160, 16):
        loss = F.cross_entropy(model(x[i:i + 16]), y[i:i + 16])
        loss.backward()
        probe.step(loss)
        optimizer.step()
        optimizer.zero_grad()
    return probe.close()


@pytest.mark.mnist
def test_watch_writes_events_while_training(tmp_path, mnist_raw):
    """tensorboard=True: event files in the run folder, tags <quantity>/<module name> and
    metrics/train_loss, holding exactly the tables' values."""
    run = watched_run(tmp_path, mnist_raw, tensorboard=True)
    assert list(run.dir.glob("events.out.tfevents.*"))
    want = expected(run.layers, run.metrics, lambda row: row["name"])
    assert "act_grad_norm/0" in want and "update_ratio/3" in want
    assert_same(scalars(run.dir), want)


@pytest.mark.mnist
def test_cli_run_writes_events(tmp_path, mnist_raw, winit_data_dir):
    """record.tensorboard: true writes the same layout into a CLI run's folder (layers named
    layer_01, ...), metrics rows with validation included."""
    from winit_cli.app.run import run_experiment

    config = load_config(None, [*QUICK, "record.tensorboard=true", f"output_dir={tmp_path}"])
    outcome = run_experiment(config)
    layers = pd.read_csv(outcome.run_dir / "layers.csv")
    metrics = pd.read_csv(outcome.run_dir / "metrics.csv")
    want = expected(layers, metrics, lambda row: f"layer_{int(row.layer):02d}")
    assert "metrics/val_accuracy" in want
    assert_same(scalars(outcome.run_dir), want)


@pytest.mark.mnist
def test_residual_runs_have_their_family_columns_live_and_exported(tmp_path, winit_data_dir):
    """A resmlp run with BatchNorm: the stream and norm columns are charted too, live and by
    `winit export` (whose reading of layers.csv once took the text `role` column for a
    measurement and failed), and the block and role columns are not measurements."""
    from winit_cli.app.run import run_experiment

    config = load_config(None, [*QUICK, "model.kind=resmlp", "model.depth=6", "model.norm=batch",
                                "init.scheme=fixup", "record.tensorboard=true",
                                f"output_dir={tmp_path / 'results'}"])
    outcome = run_experiment(config)
    layers = pd.read_csv(outcome.run_dir / "layers.csv")
    metrics = pd.read_csv(outcome.run_dir / "metrics.csv")
    family = ["stream_grad_norm", "branch_scale", "norm_act_grad_norm", "norm_weight_norm"]
    assert set(family) <= set(layers.columns) and {"block", "role"} <= set(layers.columns)
    row_keys = {"step", "epoch", "layer", "fan_in", "fan_out", "block", "role"}
    measured = [c for c in layers.columns
                if c not in row_keys and not c.startswith("predicted_")]
    assert set(columns()) | set(family) <= set(measured)
    want = expected(layers, metrics, lambda row: f"layer_{int(row.layer):02d}", measured)
    assert any(tag.startswith("stream_grad_norm/") for tag in want)
    assert_same(scalars(outcome.run_dir), want)
    result = CliRunner().invoke(app, ["export", "tensorboard", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert_same(scalars(tmp_path / "results" / "tensorboard" / outcome.run_dir.name), want)


@pytest.mark.mnist
def test_export_converts_finished_runs(tmp_path, mnist_raw):
    """`winit export tensorboard` reads run folders only: one event folder per run under
    tensorboard/ beside them, the same series as written live; a second export replaces."""
    run = watched_run(tmp_path / "results", mnist_raw, tensorboard=False)
    assert not list(run.dir.glob("events.out.tfevents.*"))
    for _ in range(2):
        result = CliRunner().invoke(app, ["export", "tensorboard", str(tmp_path / "results")])
        assert result.exit_code == 0, result.output
    folder = tmp_path / "results" / "tensorboard" / run.dir.name
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert_same(scalars(folder), expected(run.layers, run.metrics, lambda row: row["name"]))
    assert "1 runs exported" in result.output


def test_export_skips_runs_still_running(tmp_path):
    """A folder whose summary says running is listed as skipped, not converted."""
    run_dir = tmp_path / "results" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text('{"status": "running"}')
    result = CliRunner().invoke(app, ["export", "tensorboard", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "0 runs exported" in result.output


def test_missing_tensorboard_is_a_config_error(monkeypatch):
    """Without the tensorboard package, record.tensorboard is refused when the config loads,
    with the install line."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'winit\[tensorboard\]'"):
        load_config(None, ["record.tensorboard=true"])


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.mnist
def test_outcome_verdict_and_hparams_live_and_exported(tmp_path, mnist_raw):
    """A finished run's verdict is text and its config hparams, written live by watch and by
    `winit export`: the text is summary.json's verdict_text, the hparams config.yaml's keys
    with their values, and outcome/dz_ratio_init summary.json's dz ratio."""
    import json

    import yaml

    run = watched_run(tmp_path / "results", mnist_raw, tensorboard=True)
    record = json.loads((run.dir / "summary.json").read_text())
    config = _flat(yaml.safe_load((run.dir / "config.yaml").read_text()))
    result = CliRunner().invoke(app, ["export", "tensorboard", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    for folder in (run.dir, tmp_path / "results" / "tensorboard" / run.dir.name):
        text, hparams, metrics = verdict_and_hparams(folder)
        assert record["verdict_text"] in text and record["verdict"]["verdict"] in text
        assert hparams["verdict"] == record["verdict"]["verdict"]
        assert hparams["scheme"] == "unknown" and hparams["model.kind"] == "Sequential"
        assert hparams["train.lr"] == pytest.approx(0.05)
        assert hparams["train.optimizer"] == "SGD"
        assert json.loads(hparams["model.layers"]) == config["model.layers"]
        assert "output_dir" not in hparams
        assert {"outcome/dz_ratio_init", "outcome/dz_ratio_end"} <= metrics
        got = scalars(folder, outcome=True)
        last = record["final"]["steps"] - 1
        assert got["outcome/dz_ratio_init"][last] == pytest.approx(
            record["verdict"]["log10_first_to_last"], rel=1e-6)


@pytest.mark.mnist
def test_a_cli_run_writes_its_verdict_and_hparams_live(tmp_path, winit_data_dir):
    """record.tensorboard: true: once the run has finished, its verdict text and hparams are in
    its event files, as summary.json and config.yaml have them."""
    import json

    from winit_cli.app.run import run_experiment

    config = load_config(None, [*QUICK, "record.tensorboard=true", "init.scheme=xavier_normal",
                                f"output_dir={tmp_path}"])
    outcome = run_experiment(config)
    record = json.loads((outcome.run_dir / "summary.json").read_text())
    text, hparams, metrics = verdict_and_hparams(outcome.run_dir)
    assert record["verdict_text"] in text
    assert hparams["init.scheme"] == hparams["scheme"] == "xavier_normal"
    assert hparams["model.depth"] == 3 and hparams["verdict"] == record["verdict"]["verdict"]
    assert {"outcome/test_accuracy", "outcome/dz_ratio_predicted"} <= metrics
    got = scalars(outcome.run_dir, outcome=True)
    assert got["outcome/test_accuracy"][record["final"]["steps"] - 1] == pytest.approx(
        record["final"]["test_accuracy"], rel=1e-6)

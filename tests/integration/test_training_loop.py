"""The training loop's bookkeeping, each checked against a second way of getting the same
number: step 0 measured on the initial weights, the train-metrics window, a divergence between
recorded steps, checkpoints written while training, the evaluation schedule."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from winit_cli.config import Config, validate
from winit_cli.datasets import make_splits
from winit_cli.measure.quantities import columns
from winit_cli.runner.group import run_group
from winit_cli.training.loop import train
from winit_cli.training.step import setup

pytestmark = pytest.mark.mnist

BASE = {"model": {"depth": 4, "width": 32}, "train": {"steps": 12, "batch_size": 64},
        "data": {"subset": 640, "val_size": 200}, "record": {"every": 1000}}


def make_config(tmp_path=None, **sections) -> Config:
    raw = {k: dict(v) for k, v in BASE.items()}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    if tmp_path is not None:
        raw["output_dir"] = str(tmp_path)
    return validate(raw)


@pytest.fixture(scope="module")
def splits(mnist_raw):
    return make_splits(mnist_raw, BASE["data"]["val_size"], BASE["data"]["subset"], seed=0)


def test_step0_is_measured_on_the_initial_weights_before_any_update(splits):
    """Protects "step 0 is the experiment": the step-0 record is the gradient of batch 0 at the
    initial weights, taken from a separately built copy of the net, not at weights already
    moved by the first update (a large learning rate makes that update visible)."""
    config = make_config(train={"steps": 1, "lr": 1.0}, record={"every": 1})
    initial = setup([config], splits, torch.device("cpu"))
    weights = [layer.weight[0].detach().clone() for layer in initial.model.linears()]
    biases = [layer.bias[0].detach().clone() for layer in initial.model.linears()]
    xb, yb = initial.batches.get(0)
    params = [t.requires_grad_() for t in (*weights, *biases)]
    h, pre = xb[0], []
    for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = F.linear(h, w, b)
        z.retain_grad()
        pre.append(z)
        h = z if l == len(weights) - 1 else F.relu(z)
    F.cross_entropy(h, yb[0]).backward()

    (log,) = train([config], splits)
    assert [s for s, _ in log.layer_steps] == [0, 1]
    step0, step1 = log.layer_values
    for l in range(len(weights)):
        for name, want in (("weight_norm", weights[l].detach().double().norm()),
                           ("weight_grad_norm", weights[l].grad.double().norm()),
                           ("act_grad_norm", pre[l].grad.double().norm())):
            got = step0[l, columns().index(name)].item()
            assert got == pytest.approx(want.item(), rel=1e-5), (l + 1, name)
    moved = step1[:, columns().index("weight_norm")] / step0[:, columns().index("weight_norm")]
    assert ((moved - 1).abs() > 1e-3).all(), "the premise: one update moves every layer"
    assert params  # (kept alive for autograd)


def test_train_metrics_are_means_over_the_steps_since_the_previous_row(splits):
    """Protects the train-metrics window: a row's train loss and accuracy average the steps
    since the previous row (exclusive) up to its own (inclusive), so the window must be reset
    at each row; summary.json's final train loss is the last row's, over train_window_steps
    steps. Checked against the same run recording every step, whose rows are single batches
    (recording does not change training)."""
    every_step = make_config(record={"every": 1, "eval_every": 1000})
    sparse = make_config(record={"every": 5, "eval_every": 1000})
    (dense,) = train([every_step], splits)
    (log,) = train([sparse], splits)
    per_step = pd.DataFrame(dense.metrics).set_index("step")
    assert list(per_step.index) == list(range(13))
    rows = pd.DataFrame(log.metrics)
    assert list(rows.step) == [0, 5, 10, 12]
    previous = -1
    for _, row in rows.iterrows():
        window = per_step.loc[previous + 1:row.step]
        assert row.train_loss == pytest.approx(window.train_loss.mean(), rel=1e-6)
        assert row.train_accuracy == pytest.approx(window.train_accuracy.mean(), abs=1e-6)
        previous = row.step
    # The final train loss is the last row's, and says how many steps it averages (2, not 5).
    assert log.final["train_loss"] == rows.train_loss.iloc[-1]
    assert log.final["train_window_steps"] == 12 - 10


def test_a_divergence_between_recorded_steps_is_measured_where_it_happens(splits):
    """Protects the redo-with-trace path: a member that diverges at a step off the recording
    schedule (the usual case: the default records every 10 steps) is measured there, its step
    and first affected layer the same as when every step is recorded. Without the redo such
    runs crashed with a TypeError."""
    sparse = make_config(train={"lr": 20.0, "steps": 30})  # diverges at step 4
    dense = make_config(train={"lr": 20.0, "steps": 30}, record={"every": 1})
    (log,) = train([sparse], splits)
    (every,) = train([dense], splits)
    assert every.status == "diverged" and every.diverged_step not in (0, 30)
    assert every.diverged_step % 1000 != 0  # premise: off the sparse schedule
    assert log.status == "diverged"
    assert (log.diverged_step, log.diverged_layer) == (every.diverged_step, every.diverged_layer)
    assert [s for s, _ in log.layer_steps] == [0, every.diverged_step]
    here, there = log.layer_values[-1], every.layer_values[-1]
    assert torch.equal(here.isnan(), there.isnan())
    finite = here.isfinite() & there.isfinite()
    assert torch.allclose(here[finite], there[finite], rtol=1e-5)
    assert log.metrics[-1]["step"] == every.diverged_step


def test_checkpoints_rewrite_the_tables_while_training(splits, tmp_path):
    """Protects checkpoints (record.checkpoint_seconds = 0: after every step): whenever the
    progress callback runs at a recorded step s, the run directory already holds every row
    measured before s, exactly as the final files hold them, and a summary saying `running`.
    With checkpoints far apart, nothing is written before the end."""
    seen: dict[int, tuple[pd.DataFrame, pd.DataFrame, str]] = {}
    dirs = []

    def on_progress(step, steps, info):
        if step == 0:
            assert not (dirs[0] / "layers.csv").exists()
            return
        seen[step] = (pd.read_csv(dirs[0] / "layers.csv"), pd.read_csv(dirs[0] / "metrics.csv"),
                      (dirs[0] / "summary.json").read_text())

    config = make_config(tmp_path, record={"every": 3, "checkpoint_seconds": 0})
    (outcome,) = run_group([config], splits, on_progress=on_progress, on_start=dirs.extend)
    final_layers = pd.read_csv(outcome.run_dir / "layers.csv")
    final_metrics = pd.read_csv(outcome.run_dir / "metrics.csv")
    assert sorted(seen) == [3, 6, 9, 12]
    for step, (layers, metrics, summary) in seen.items():
        assert sorted(set(layers.step)) == list(range(0, step, 3))
        earlier = final_layers[final_layers.step < step][layers.columns].reset_index(drop=True)
        pd.testing.assert_frame_equal(layers, earlier, check_exact=True)
        assert list(metrics.step) == [s for s in final_metrics.step if s < step]
        assert '"status": "running"' in summary

    later = make_config(tmp_path / "later", record={"every": 3, "checkpoint_seconds": 1e9})
    written = []

    def nothing_yet(step, steps, info):
        written.append((dirs[-1] / "layers.csv").exists())

    run_group([later], splits, on_progress=nothing_yet, on_start=dirs.extend)
    assert written and not any(written)


def test_checkpoints_keep_the_histograms_measured_so_far(splits, tmp_path):
    """With record.histograms, a checkpoint writes histograms.csv beside layers.csv (so a run
    killed outright keeps them up to its last checkpoint): whenever the progress callback runs
    at a recorded step s, it holds every step measured before s, as the final file does."""
    seen: dict[int, pd.DataFrame] = {}
    dirs = []

    def on_progress(step, steps, info):
        if step > 0:
            seen[step] = pd.read_csv(dirs[0] / "histograms.csv")

    config = make_config(tmp_path, record={"every": 3, "checkpoint_seconds": 0,
                                           "histograms": True})
    (outcome,) = run_group([config], splits, on_progress=on_progress, on_start=dirs.extend)
    final = pd.read_csv(outcome.run_dir / "histograms.csv")
    assert sorted(seen) == [3, 6, 9, 12]
    for step, histograms in seen.items():
        assert sorted(set(histograms.step)) == list(range(0, step, 3))
        earlier = final[final.step < step].reset_index(drop=True)
        pd.testing.assert_frame_equal(histograms, earlier, check_exact=True)


@pytest.mark.parametrize(("record", "evaluated"), [
    ({}, [10, 20, 25]),  # default: once an epoch (640 / 64 = 10 steps) and at the last step
    ({"eval_every": 4}, [4, 8, 12, 16, 20, 24, 25]),
])
def test_validation_runs_on_its_schedule(record, evaluated, splits):
    """Protects the evaluation schedule: validation rows at multiples of record.eval_every
    (default: each epoch), never at step 0, always at the last step. (What each evaluation
    measures is checked against an independent loop in test_training_reference.py.)"""
    config = make_config(train={"steps": 25}, record={"every": 1000, **record})
    (log,) = train([config], splits)
    rows = pd.DataFrame(log.metrics)
    with_val = rows[rows.val_loss.notna()] if "val_loss" in rows else rows.iloc[:0]
    assert list(with_val.step) == evaluated
    assert list(rows.step) == sorted({0, *evaluated})
    assert with_val.epoch.tolist() == [s // 10 for s in evaluated]
    assert all(0 < a < 1 for a in with_val.val_accuracy)

"""Members trained together as one stacked model record what each records alone, over the whole
run: every value of layers.csv and metrics.csv at every recorded step, for each optimizer.

A group mixes what members may differ in (training.SHARED_KEYS): scheme and its parameters,
seed (so the batches differ, and two members share one), weight decay and a scheme's L2. A
member that diverges beside the others changes nothing for them either.

Tolerance (reference_training.RTOL, 2e-4 relative): a stacked model multiplies with batched
matmuls, a single one with plain ones; the float32 sums differ in order, by rounding at step 0,
and the difference is trained on for 24 steps.
"""

from __future__ import annotations

import pandas as pd
import pytest
from reference_training import assert_frames_match

from winit_cli.config import Config, validate
from winit_cli.datasets import make_splits
from winit_cli.runner.group import run_group

pytestmark = pytest.mark.mnist

BASE = {"model": {"depth": 4, "widths": [40, 32, 24]},
        "train": {"steps": 24, "batch_size": 64},
        "data": {"subset": 640, "val_size": 300},
        "record": {"every": 4, "eval_every": 10, "checkpoint_seconds": 1e9}}
MEMBERS = [
    ({"scheme": "he_normal"}, {"seed": 0}),
    ({"scheme": "xavier_uniform"}, {"seed": 1, "weight_decay": 0.05}),
    ({"scheme": "normal_l2", "params": {"std": 0.1, "l2": 0.02}}, {"seed": 0}),
]
OPTIMIZERS = {"sgd": 0.05, "momentum": 0.02, "adam": 3e-3}


@pytest.fixture(scope="module")
def splits(mnist_raw):
    return make_splits(mnist_raw, BASE["data"]["val_size"], BASE["data"]["subset"], seed=0)


def member(tmp_path, init: dict, train: dict, **sections) -> Config:
    raw = {k: dict(v) for k, v in BASE.items()}
    raw["train"].update(train)
    for key, value in sections.items():
        raw[key].update(value)
    return validate({**raw, "init": init, "output_dir": str(tmp_path)})


def tables(outcome) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (pd.read_csv(outcome.run_dir / "layers.csv"),
            pd.read_csv(outcome.run_dir / "metrics.csv"))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_batched_members_record_what_they_record_alone(optimizer, splits, tmp_path):
    """Protects batching: per-member batches, draws, weight decay and L2, and an optimizer
    state that never mixes members. Every column of both tables (theory included) must match
    the same config trained alone, at every recorded and evaluated step."""
    train = {"optimizer": optimizer, "lr": OPTIMIZERS[optimizer]}
    configs = [member(tmp_path / "group", init, {**train, **own}) for init, own in MEMBERS]
    group = run_group(configs, splits)
    for config, batched in zip(configs, group, strict=True):
        alone = config.model_copy(update={"output_dir": tmp_path / "alone"})
        (single,) = run_group([alone], splits)
        (layers, metrics), (want_layers, want_metrics) = tables(batched), tables(single)
        assert list(layers.columns) == list(want_layers.columns)
        assert list(metrics.columns) == list(want_metrics.columns)
        assert_frames_match(layers, want_layers, f"{config.init.scheme} layers.csv")
        assert_frames_match(metrics, want_metrics, f"{config.init.scheme} metrics.csv")
        assert batched.record.final.test_accuracy == pytest.approx(
            single.record.final.test_accuracy, abs=1e-6)
    # Not vacuous: the members really differ from one another.
    first, second = tables(group[0])[0], tables(group[1])[0]
    assert (first.weight_norm - second.weight_norm).abs().max() > 1e-2


def test_a_diverging_member_changes_nothing_for_its_neighbours(splits, tmp_path):
    """mean-1 init diverges in a 20-layer net; He beside it records what it records alone,
    every value, and the diverged member reports no accuracy (its weights are NaN)."""
    deep = {"depth": 20, "width": 64, "widths": None}
    he = member(tmp_path / "group", {"scheme": "he_normal"}, {"lr": 0.05}, model=deep)
    mean1 = member(tmp_path / "group", {"scheme": "mean1_normal"}, {"lr": 0.05}, model=deep)
    beside, diverged = run_group([he, mean1], splits)
    (alone,) = run_group([he.model_copy(update={"output_dir": tmp_path / "alone"})], splits)
    assert diverged.record.status == "diverged" and diverged.record.final.test_accuracy is None
    assert beside.record.status == "complete"
    for got, want, name in zip(tables(beside), tables(alone), ("layers", "metrics"), strict=True):
        assert_frames_match(got, want, name)

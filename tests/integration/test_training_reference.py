"""Every number winit records for a short run, against an independent training loop.

`reference_training.reference_run` trains the same config with plain nn.Linear layers and
torch.optim and computes each statistic from its definition; winit's layers.csv and metrics.csv
(written by `run_group`, read back from disk) must match it at every recorded step, for each
optimizer, with non-uniform widths, without biases, with weight decay (per member, in a stacked
group too), and with an evaluation schedule that is not the recording one.

Tolerance (reference_training.RTOL, 2e-4 relative): both sides compute in float32 with
different kernels and reduction orders, so they agree to float32 rounding at step 0 and drift
apart slowly as the differences are trained on. Fractions (dead and saturated units,
accuracies) are counts, which winit divides in float32: they agree to 1e-6.
"""

from __future__ import annotations

import pandas as pd
import pytest
from reference_training import RTOL, assert_frames_match, reference_run

from winit_cli.config import Config, validate
from winit_cli.datasets import make_splits
from winit_cli.runner.group import run_group

pytestmark = pytest.mark.mnist

BASE = {"model": {"depth": 4, "widths": [48, 32, 24]},
        "train": {"steps": 24, "batch_size": 64, "lr": 0.05},
        "data": {"subset": 640, "val_size": 300},
        # every 5 steps records, every 7 evaluates: rows for one, the other and both
        "record": {"every": 5, "eval_every": 7, "checkpoint_seconds": 1e9}}


def make_config(tmp_path, **sections) -> Config:
    raw = {k: dict(v) for k, v in BASE.items()}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return validate({**raw, "output_dir": str(tmp_path)})


@pytest.fixture(scope="module")
def splits(mnist_raw):
    return make_splits(mnist_raw, BASE["data"]["val_size"], BASE["data"]["subset"], seed=0)


def recorded(run_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(run_dir / "layers.csv"), pd.read_csv(run_dir / "metrics.csv")


CASES = {
    "sgd-relu-weight-decay": dict(model={"activation": "relu"}, init={"scheme": "he_normal"},
                                  train={"optimizer": "sgd", "weight_decay": 0.05}),
    "momentum-tanh-no-bias": dict(model={"activation": "tanh", "bias": False},
                                  init={"scheme": "xavier_normal"},
                                  train={"optimizer": "momentum", "lr": 0.02}),
    "adam-sigmoid-l2": dict(model={"activation": "sigmoid"},
                            init={"scheme": "normal_l2", "params": {"std": 0.3, "l2": 0.02}},
                            train={"optimizer": "adam", "lr": 3e-3}),
    "adam-leaky-relu": dict(model={"activation": "leaky_relu"},
                            init={"scheme": "he_uniform", "params": {"bias_value": -0.3}},
                            train={"optimizer": "adam", "lr": 3e-3, "seed": 4}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_recorded_value_matches_an_independent_training_loop(case, splits, tmp_path):
    """Protects every number in layers.csv and metrics.csv of a run: step 0 measured before the
    first update, the update and its ratio for SGD, momentum and Adam, L2 applied (and only
    after recording), non-uniform widths, no bias, the train-metrics window reset at each row,
    validation on the evaluation schedule, the final test accuracy."""
    config = make_config(tmp_path, **CASES[case])
    (outcome,) = run_group([config], splits)
    layers, metrics = recorded(outcome.run_dir)
    ref_layers, ref_metrics, final = reference_run(config, splits)
    assert_frames_match(layers, ref_layers, "layers.csv")
    assert_frames_match(metrics, ref_metrics, "metrics.csv")
    assert outcome.record.final.test_accuracy == pytest.approx(final["test_accuracy"], abs=1e-6)
    assert outcome.record.final.test_loss == pytest.approx(final["test_loss"], rel=RTOL)
    # The comparison is not vacuous: the weights moved, and the quantities it names exist.
    assert layers.update_ratio.dropna().gt(1e-4).all()
    activation = config.model.activation
    if activation in ("relu", "leaky_relu"):
        assert layers.dead_fraction.dropna().gt(0).any(), "no dead unit to compare"
    if activation in ("tanh", "sigmoid"):
        assert layers.saturated_fraction.dropna().gt(0).any(), "no saturated unit to compare"
    if not config.model.bias:
        assert layers.bias_grad_norm.isna().all()

"""The verdict: synthetic layers tables with known answers, then the classic cases on real MNIST."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from winit_cli.config import load_config
from winit_cli.datasets import make_splits
from winit_cli.diagnosis.verdict import (
    Verdict,
    diagnose,
    log10_ratios,
    measured_first_to_last_hidden,
)
from winit_cli.runner.group import SPLIT_SEED, run_group
from winit_cli.runner.member import layers_frame, verdict_of
from winit_cli.training.loop import train

DEPTH = 8
STEPS = (0, 10, 20, 30)


def frame(grad) -> pd.DataFrame:
    """A layers table whose act_grad_norm at (step, layer) is grad(step, layer)."""
    rows = [{"step": s, "layer": l, "act_grad_norm": float(grad(s, l))}
            for s in STEPS for l in range(1, DEPTH + 1)]
    return pd.DataFrame(rows)


def test_healthy_flat():
    v = diagnose(frame(lambda s, l: 0.3 + 0.01 * l))
    assert v.verdict == "healthy"
    assert (v.layer, v.step, v.fraction_of_steps) == (None, None, 0.0)
    assert v.log10_ratio_init == pytest.approx(math.log10(0.31 / 0.38))
    assert v.describe().startswith("healthy")


def test_log10_ratios_are_against_the_output_layer():
    ratios = log10_ratios(frame(lambda s, l: 10.0 ** (l - DEPTH)))
    assert list(ratios.columns) == list(range(1, DEPTH))
    assert list(ratios.index) == list(STEPS)
    for l in range(1, DEPTH):
        assert ratios[l].tolist() == pytest.approx([l - DEPTH] * len(STEPS))


@pytest.mark.parametrize("k", [1, 3, DEPTH - 1])
def test_vanishing_from_layer_k(k: int):
    # Layers 1..k get 1e-5 of the output's gradient from step 10 on; the rest are flat.
    v = diagnose(frame(lambda s, l: 1e-5 if (l <= k and s >= 10) else 1.0))
    assert v.verdict == "vanishing"
    assert v.layer == k  # the layer nearest the output where it holds
    assert v.step == 10
    assert v.fraction_of_steps == pytest.approx(3 / 4)
    assert v.log10_ratio_init == pytest.approx(0.0)
    assert v.log10_ratio_end == pytest.approx(-5.0)
    assert v.describe() == f"vanishing from layer {k}, from step 10"


def test_gradual_vanishing_starts_where_threshold_is_crossed():
    # Each layer shrinks the gradient 3x: r_l = (l - L) log10 3; below -2 from layer L - 5 down.
    v = diagnose(frame(lambda s, l: 3.0 ** (l - DEPTH)))
    assert v.verdict == "vanishing"
    assert v.layer == max(l for l in range(1, DEPTH) if (l - DEPTH) * math.log10(3) < -2)
    assert v.step == 0 and v.fraction_of_steps == 1.0


def test_exploding():
    v = diagnose(frame(lambda s, l: 1e4 if (l <= 4 and s >= 20) else 1.0))
    assert (v.verdict, v.layer, v.step) == ("exploding", 4, 20)
    assert v.fraction_of_steps == pytest.approx(2 / 4)
    assert v.log10_ratio_end == pytest.approx(4.0)


def test_thresholds_are_configurable():
    table = frame(lambda s, l: 1e-3 if l == 1 else 1.0)
    assert diagnose(table).verdict == "vanishing"
    assert diagnose(table, vanish_decades=4).verdict == "healthy"
    table = frame(lambda s, l: 1e3 if l == 2 else 1.0)
    assert diagnose(table).verdict == "exploding"
    assert diagnose(table, explode_decades=3.5).verdict == "healthy"


def test_first_condition_in_step_order_wins():
    # Exploding at step 10, vanishing from step 20: the verdict is what came first.
    v = diagnose(frame(lambda s, l: (1e3 if s == 10 else 1e-3 if s >= 20 else 1.0)
                       if l == 2 else 1.0))
    assert (v.verdict, v.layer, v.step) == ("exploding", 2, 10)


def test_zero_gradients_count_as_vanishing():
    # Gradients flushed to exactly 0 (from subnormals) are the extreme of vanishing.
    v = diagnose(frame(lambda s, l: 0.0 if l <= 5 else 1.0))
    assert (v.verdict, v.layer, v.step) == ("vanishing", 5, 0)
    assert v.fraction_of_steps == 1.0
    # -inf is not a number anyone can cite: the summaries say nothing rather than -inf.
    assert v.log10_ratio_init is None or math.isfinite(v.log10_ratio_init)


def test_diverged_passthrough():
    v = diagnose(frame(lambda s, l: 1.0), diverged_step=20, diverged_layer=3)
    assert (v.verdict, v.layer, v.step) == ("diverged", 3, 20)
    assert v.describe() == "diverged at step 20: non-finite values from layer 3"
    # even if the recorded gradients looked unhealthy before
    v = diagnose(frame(lambda s, l: 1e-9 if l == 1 else 1.0), diverged_step=30,
                 diverged_layer=None)
    assert (v.verdict, v.step, v.layer) == ("diverged", 30, None)


def test_empty_table_is_not_a_crash():
    empty = pd.DataFrame(columns=["step", "layer", "act_grad_norm"])
    v = diagnose(empty)
    assert v.verdict == "healthy" and v.log10_ratio_init is None
    assert diagnose(empty, diverged_step=0, diverged_layer=None).verdict == "diverged"


@pytest.mark.parametrize("exact", [2.0, 3.5])
def test_the_thresholds_are_strict(exact: float):
    """Protects the rule's strict inequalities: a ratio of exactly 10^-vanish_decades (or
    10^+explode_decades) is within bounds; a little beyond is not."""
    at = frame(lambda s, l: 10.0 ** -exact if l == 1 else 1.0)
    assert log10_ratios(at)[1].tolist() == [-exact] * len(STEPS)  # premise: exactly on it
    assert diagnose(at, vanish_decades=exact).verdict == "healthy"
    assert diagnose(at, vanish_decades=exact - 0.01).verdict == "vanishing"
    up = frame(lambda s, l: 10.0 ** exact if l == 1 else 1.0)
    assert diagnose(up, explode_decades=exact).verdict == "healthy"
    assert diagnose(up, explode_decades=exact - 0.01).verdict == "exploding"


@pytest.mark.parametrize(("norms", "expected"), [
    ([1e-3, 1e-2, 1e-1, 1.0, 5.0], -3.0),  # log10 ||dz_1|| / ||dz_4||; the output's 5 is left out
    ([4.0, 0.5, 7.0], math.log10(8.0)),  # depth 3: first over second
    ([2.0, 9.0], 0.0),  # one hidden layer: nothing to compare
    ([3.0], 0.0),
])
def test_measured_first_to_last_hidden(norms, expected):
    """Protects summary.json's measured first-to-last-hidden ratio (the number set beside the
    theory's): log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| at step 0, in layer order however the rows
    come, 0 with fewer than two hidden layers."""
    step0 = pd.DataFrame({"layer": range(1, len(norms) + 1), "act_grad_norm": norms})
    shuffled = step0.sample(frac=1.0, random_state=0)
    assert measured_first_to_last_hidden(shuffled) == pytest.approx(expected, abs=1e-12)


def test_verdict_to_dict_round_trip():
    v = diagnose(frame(lambda s, l: 1e-5 if l <= 2 else 1.0))
    assert Verdict(**v.to_dict()) == v


# --- the classic cases, on real MNIST -----------------------------------------------------------

SHORT = ["train.steps=3", "data.subset=2000", "data.val_size=500", "record.every=1",
         "model.depth=20", "model.width=256", "train.optimizer=sgd", "train.lr=0.01"]


@pytest.fixture(scope="module")
def splits(mnist_raw):
    return make_splits(mnist_raw, 500, 2000, seed=SPLIT_SEED)


def run_short(splits, *overrides: str):
    config = load_config(None, [*SHORT, *overrides])
    (log,) = train([config], splits)
    layers = layers_frame(log)
    return log, layers, verdict_of(log, layers)


@pytest.mark.mnist
def test_small_normal_init_vanishes_in_deep_tanh_net(splits):
    """Glorot & Bengio's case: N(0, 0.01^2) in a 20-layer tanh net. chi = 256 * 1e-4 per layer."""
    log, layers, v = run_short(splits, "model.activation=tanh", "init.scheme=normal",
                               "init.params.std=0.01")
    assert log.status == "complete"
    assert v.verdict == "vanishing"
    assert v.step == 0  # at initialization already
    assert v.layer >= 15  # within a few layers of the output
    assert v.fraction_of_steps == 1.0
    assert v.log10_ratio_init < -10
    # The verdict agrees with the recorded numbers it was made from.
    init = layers[layers.step == 0].set_index("layer").act_grad_norm
    assert math.log10(init[v.layer] / init[20]) < -2
    assert math.log10(init[v.layer + 1] / init[20]) >= -2


@pytest.mark.mnist
def test_he_init_is_healthy_in_deep_relu_net(splits):
    log, layers, v = run_short(splits, "model.activation=relu", "init.scheme=he_normal")
    assert log.status == "complete"
    assert v.verdict == "healthy"
    assert abs(v.log10_ratio_init) < 1
    assert set(layers.step) == {0, 1, 2, 3}


@pytest.mark.mnist
def test_mean1_normal_explodes_or_diverges(splits, tmp_path: Path):
    config = load_config(None, [*SHORT, "model.activation=relu", "init.scheme=mean1_normal",
                                f"output_dir={tmp_path}"])
    (outcome,) = run_group([config], splits)
    v = outcome.record.verdict.model_dump()
    assert v["verdict"] in ("exploding", "diverged")
    assert v["step"] == 0
    if v["verdict"] == "diverged":
        assert outcome.record.status == "diverged"
        # The layer named is where the forward pass first overflowed, not merely the first layer
        # whose (backpropagated, hence all-NaN) gradients are non-finite.
        at_step = outcome.layers[outcome.layers.step == v["step"]].set_index("layer")
        overflowed = at_step.index[~np.isfinite(at_step.act_mean)]
        assert v["layer"] == overflowed.min()
        assert v["layer"] > 1
        assert np.isfinite(at_step.act_mean.loc[: v["layer"] - 1]).all()
    # layers.csv holds exactly what was measured, overflowed values included (round-trip floats)
    on_disk = pd.read_csv(outcome.run_dir / "layers.csv")
    pd.testing.assert_frame_equal(on_disk, outcome.layers, check_exact=True, check_dtype=False)

"""Flushing subnormal floats (train.flush_subnormals): what a run records with it on and off, and
that a run leaves the process as it found it.

The net: 30 tanh layers of 128 units with N(0, 0.005^2) weights, where the gradient shrinks by
~20x a layer on its way down, into float32's subnormal range (below 1.2e-38) in the lowest
layers. Flushed, those gradients are 0; not flushed, they are tiny and positive; above that
range the two runs compute the same numbers.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from winit_cli.config import validate
from winit_cli.datasets import make_splits
from winit_cli.runner.group import run_group

pytestmark = pytest.mark.mnist

SUBNORMAL = 1.1754943508222875e-38  # float32's smallest normal number
SUBNORMAL_NORM = SUBNORMAL * (64 * 128) ** 0.5  # a norm of 64 x 128 subnormal elements


@pytest.fixture(scope="module")
def splits(mnist_raw):
    return make_splits(mnist_raw, val_size=100, subset=640, seed=0)


@pytest.fixture(scope="module")
def runs(splits, tmp_path_factory) -> dict[bool, tuple[dict, pd.DataFrame]]:
    """One recorded step of the vanishing net, flushed and not: (summary.json, step-0 rows)."""
    out = tmp_path_factory.mktemp("subnormals")
    result = {}
    for flush in (True, False):
        config = validate({
            "model": {"depth": 30, "width": 128, "activation": "tanh"},
            "init": {"scheme": "normal", "params": {"std": 0.005}},
            "train": {"steps": 1, "batch_size": 64, "flush_subnormals": flush},
            "data": {"subset": 640, "val_size": 100}, "output_dir": str(out / str(flush))})
        (outcome,) = run_group([config], splits)
        layers = pd.read_csv(outcome.run_dir / "layers.csv")
        result[flush] = (json.loads((outcome.run_dir / "summary.json").read_text()),
                         layers[layers.step == 0].set_index("layer"))
    return result


def test_the_record_says_whether_subnormals_were_flushed(runs):
    """Protects the run record's environment.flush_subnormals: true by default on CPU, false
    when the config turns flushing off."""
    assert runs[True][0]["environment"]["flush_subnormals"] is True
    assert runs[False][0]["environment"]["flush_subnormals"] is False


def test_flushing_zeroes_subnormal_gradients_and_nothing_else(runs):
    """Protects what flushing does to the numbers: gradients whose elements are subnormal read
    0 when flushed (counted in verdict.zero_grad_layers_init) and stay positive when not; every
    gradient well above the subnormal range is the same either way."""
    flushed, kept = runs[True][1].act_grad_norm, runs[False][1].act_grad_norm
    tiny = kept < SUBNORMAL_NORM
    assert tiny.any() and (kept > 0).all(), "premise: some gradients are subnormal, none zero"
    assert (flushed == 0).any() and (flushed[~tiny] > 0).all()
    assert set(flushed[flushed == 0].index) <= set(kept[tiny].index)
    normal = kept > 1e6 * SUBNORMAL_NORM
    assert normal.sum() > 20
    assert ((flushed[normal] - kept[normal]).abs() <= 1e-5 * kept[normal]).all()
    zero_layers = runs[True][0]["verdict"]["zero_grad_layers_init"]
    assert zero_layers == int((flushed == 0).sum()) and zero_layers > 0
    assert runs[False][0]["verdict"]["zero_grad_layers_init"] == 0


def test_a_flushing_run_restores_subnormal_arithmetic(runs):
    """Protects the process after a run (a notebook, a sweep's next group that turned flushing
    off): subnormal arithmetic works again once a flushing run has finished."""
    assert runs[True][0]["environment"]["flush_subnormals"] is True  # a flushing run ran first
    tiny = torch.tensor([SUBNORMAL / 4], dtype=torch.float32)
    assert float(tiny * 2) == pytest.approx(SUBNORMAL / 2, rel=1e-6, abs=0)

"""A member of a stacked model records what the same config records alone, for every model
family: every value of layers.csv at every recorded step, and every metrics row.

Members of a stack run the same arithmetic on a leading member axis (batched matmuls, per-member
norm statistics, per-member dropout masks); batched and single matmuls sum in different orders,
so values agree to float32 rounding, compounded over the steps: rtol 1e-4 (measured: 5e-8 at
worst over 6 steps, among values above 1e-3 of their column's largest). A value that is rounding
noise around an exact zero (the bias gradient of a Linear layer followed by BatchNorm, which
removes the bias: ~1e-8) is held to 1e-5 of its column's largest value instead (a mean, to 1e-5
of its std's: its terms cancel).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from winit_cli.config import validate
from winit_cli.datasets import make_splits
from winit_cli.runner.member import layers_frame
from winit_cli.training.loop import train

pytestmark = pytest.mark.mnist

RTOL = 1e-4
ATOL = 1e-5  # of the column's largest value: for rounding noise around an exact 0
# A mean is a sum of terms of the size of the std, which cancel: its rounding is the std's.
SCALE = {"act_mean": "act_std", "norm_act_mean": "norm_act_std"}

FAMILIES = {
    "mlp-batchnorm-dropout": {"kind": "mlp", "depth": 5, "norm": "batch", "dropout": 0.2},
    "mlp-layernorm": {"kind": "mlp", "depth": 5, "norm": "layer", "activation": "tanh"},
    "resmlp": {"kind": "resmlp", "depth": 6, "learnable_scale": True},
    "resmlp-k1-batchnorm": {"kind": "resmlp", "depth": 5, "branch_layers": 1, "norm": "batch"},
    "resmlp-layernorm-dropout": {"kind": "resmlp", "depth": 6, "norm": "layer", "dropout": 0.1,
                                 "learnable_scale": True},
}
# per member: (init, seed); the residual schemes only where the kind has branches
# LSUV calibrates its member through a forward pass: in eval mode, so BatchNorm's running
# statistics of the members beside it (read by their evaluation) stay untouched.
MEMBERS = [({"scheme": "he_normal"}, 0), ({"scheme": "lsuv", "params": {"batch_size": 64}}, 1),
           ({"scheme": "normal", "params": {"std": 0.05}}, 0)]
RESIDUAL_MEMBERS = [({"scheme": "fixup"}, 2), ({"scheme": "skipinit"}, 1),
                    ({"scheme": "he_normal", "zero_last": True}, 0)]


@pytest.fixture(scope="module")
def splits(mnist_raw):
    s = make_splits(mnist_raw, val_size=200, subset=640, seed=0)
    return dataclasses.replace(s, x_test=s.x_test[:300], y_test=s.y_test[:300])


def configs(model: dict) -> list:
    members = MEMBERS + (RESIDUAL_MEMBERS if model.get("learnable_scale") else [])
    return [validate({"name": f"m{i}", "model": {"width": 32, **model}, "init": init,
                      "train": {"steps": 6, "batch_size": 32, "seed": seed,
                                "optimizer": "momentum", "lr": 0.05},
                      "record": {"every": 2, "eval_every": 4}})
            for i, (init, seed) in enumerate(members)]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_batched_member_records_what_it_records_alone(family, splits):
    group = configs(FAMILIES[family])
    together = train(group, splits)
    # The first member and the last (a residual scheme where the kind has branches) alone.
    for config, log in [(group[0], together[0]), (group[-1], together[-1])]:
        (alone,) = train([config], splits)
        a, b = layers_frame(alone), layers_frame(log)
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
        assert log.status == alone.status == "complete"
        for column in a.columns:
            expected = a[column].to_numpy(float)
            scale = a[SCALE.get(column, column)].to_numpy(float)
            floor = ATOL * np.max(np.abs(scale[np.isfinite(scale)]), initial=0.0)
            np.testing.assert_allclose(b[column].to_numpy(float), expected, rtol=RTOL, atol=floor,
                                       equal_nan=True, err_msg=f"{family} {config.name} {column}")
        assert [r["step"] for r in log.metrics] == [r["step"] for r in alone.metrics]
        for x, y in zip(log.metrics, alone.metrics, strict=True):
            assert x.keys() == y.keys()
            np.testing.assert_allclose(list(x.values()), list(y.values()), rtol=RTOL)
        assert log.final["test_accuracy"] == pytest.approx(alone.final["test_accuracy"],
                                                           abs=1 / 300)

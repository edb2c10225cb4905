"""`winit report` on runs that differ only in a config key beyond the usual columns (the README's
N(0, 0.01^2) vs N(0, 0.05^2) comparison): the key is a grid column, and configurations that
differ in it are aggregated and ranked apart."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from winit_cli.app.report import build_report
from winit_cli.config import validate
from winit_cli.datasets import make_splits
from winit_cli.runner.group import run_group

pytestmark = [pytest.mark.mnist, pytest.mark.slow]

STDS = (0.01, 0.05)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def results(mnist_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grid")
    splits = make_splits(mnist_raw, val_size=200, subset=640, seed=0)
    configs = [validate({
        "name": f"std{std}_s{seed}", "model": {"depth": 3, "width": 16},
        "init": {"scheme": "normal", "params": {"std": std}},
        "train": {"steps": 10, "batch_size": 64, "seed": seed, "lr": 0.1},
        "data": {"subset": 640, "val_size": 200}, "record": {"every": 5},
        "output_dir": str(out)}) for std in STDS for seed in SEEDS]
    run_group(configs, splits)
    return out


def test_configurations_that_differ_in_a_grid_key_are_aggregated_apart(results, tmp_path):
    """Protects aggregation by grid keys (records/rows.config_keys): two stds, two seeds each,
    give two configurations of two runs, each the mean of its own runs, not one of four."""
    report = build_report([results], out=tmp_path / "report")
    summary = pd.read_csv(report.out / "summary.csv")
    aggregate = pd.read_csv(report.out / "aggregate.csv")
    assert sorted(summary.init_params_std) == sorted(s for s in STDS for _ in SEEDS)
    assert sorted(aggregate.init_params_std) == list(STDS)
    assert list(aggregate.runs) == [2, 2]
    for _, row in aggregate.iterrows():
        runs = summary[summary.init_params_std == row.init_params_std]
        assert row.seeds == "0 1"
        assert row.test_accuracy_mean == pytest.approx(runs.test_accuracy.mean(), rel=1e-12)
        assert row.log10_ratio_init_mean == pytest.approx(runs.log10_ratio_init.mean(),
                                                          rel=1e-12)
    # Premise: the two stds really give different gradients, so merging them would show.
    by_std = aggregate.set_index("init_params_std").log10_ratio_init_mean
    assert abs(by_std[0.01] - by_std[0.05]) > 0.5

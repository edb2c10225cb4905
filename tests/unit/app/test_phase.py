"""`winit phase`: the sigma_w2 x depth grid on the sweep machinery (resume, batching), the
theory boundary's classification count, and the command end to end on a tiny grid."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from winit_cli.app.phase import PhaseOptions, agreement, phase_grid, plan_phase
from winit_cli.cli import app
from winit_cli.sweeps.plan import groups

TINY = ["--sigma-w2", "0.5,3", "--depths", "3,4", "--steps", "5", "--subset", "600",
        "--width", "16", "--sigma-b2", "0"]


def _synthetic_comparison(cells: dict[tuple[float, int], float]) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": f"r{i}", "init_params_sigma_w2": w, "model_depth": d,
                          "test_accuracy": acc, "train_accuracy": acc, "train_loss": 1.0}
                         for i, ((w, d), acc) in enumerate(cells.items())])


def test_boundary_classification_count_on_a_synthetic_grid():
    """tanh without bias in the ordered phase has q* = 0, chi_1 = sigma_w2 and so, in closed
    form, xi_c = -1 / ln sigma_w2: at sigma_w2 = 0.5, 6 xi_c = 8.66. A grid trained exactly up
    to depth 8 agrees everywhere; flipping two cells costs exactly two."""
    options = PhaseOptions(sigma_w2=[0.5], depths=[4, 8, 9, 16], sigma_b2=0.0, c=6.0,
                           threshold=0.2)
    truth = {(0.5, 4): 0.9, (0.5, 8): 0.5, (0.5, 9): 0.1, (0.5, 16): 0.1}
    grid = phase_grid(_synthetic_comparison(truth), options)
    assert grid.xi_c.iloc[0] == pytest.approx(-1 / math.log(0.5), rel=1e-6)
    assert grid.predicted_trainable.tolist() == [True, True, False, False]
    assert agreement(grid) == (4, 4)
    flipped = {**truth, (0.5, 4): 0.1, (0.5, 16): 0.95}
    assert agreement(phase_grid(_synthetic_comparison(flipped), options)) == (2, 4)
    # a missing accuracy (a failed run) is not counted
    missing = {**truth, (0.5, 9): float("nan")}
    assert agreement(phase_grid(_synthetic_comparison(missing), options)) == (3, 3)


def test_same_depth_cells_are_batched():
    """Cells of one depth share a shape: they train as one stacked model, one group per depth."""
    options = PhaseOptions(sigma_w2=[0.5, 1.0, 2.0], depths=[3, 5], steps=5, subset=600,
                           width=16, output_dir=Path("/nonexistent"))
    _, plan = plan_phase(options)
    batches = groups(plan.todo)
    assert sorted(len(g) for g in batches) == [3, 3]
    for g in batches:
        assert len({c.model.depth for c in g}) == 1
        assert sorted(c.init.params["sigma_w2"] for c in g) == [0.5, 1.0, 2.0]


@pytest.fixture(scope="module")
def tiny_phase(mnist_path: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("phase")
    env = {"COLUMNS": "200", "WINIT_DATA_DIR": str(mnist_path),
           "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache"))}
    args = ["phase", *TINY, "--set", f"output_dir={out}"]
    first = CliRunner().invoke(app, args, env=env)
    second = CliRunner().invoke(app, args, env=env)
    return out, first, second


@pytest.mark.mnist
def test_phase_command_end_to_end(tiny_phase):
    """A 2 x 2 grid: exit 0, phase.csv with one row per cell and its theory, the figure, and
    the agreement line, whose count is recomputed from the CSV."""
    out, first, _ = tiny_phase
    assert first.exit_code == 0, first.output + repr(first.exception)
    (sweep,) = (out / "sweeps").iterdir()
    grid = pd.read_csv(sweep / "phase.csv")
    assert len(grid) == 4 and grid.runs.eq(1).all()
    assert sorted(zip(grid.sigma_w2, grid.depth, strict=True)) == [
        (0.5, 3), (0.5, 4), (3.0, 3), (3.0, 4)]
    assert set(grid.phase) == {"ordered", "chaotic"}
    assert grid.test_accuracy.between(0, 1).all()
    assert (sweep / "phase.png").stat().st_size > 1000
    right = int((grid.trained == grid.predicted_trainable).sum())
    assert re.search(rf"classifies {right} of 4 cells", " ".join(first.output.split()))
    # the two cells of one depth trained together
    sizes = {json.loads(p.read_text())["final"]["group_size"]
             for p in sweep.glob("runs/*/summary.json")}
    assert sizes == {2}


@pytest.mark.mnist
def test_rerun_trains_nothing(tiny_phase):
    """Rerunning the same command resumes: no new run directories, same grid."""
    out, first, second = tiny_phase
    assert second.exit_code == 0, second.output
    (sweep,) = (out / "sweeps").iterdir()
    assert len([p for p in (sweep / "runs").iterdir() if p.is_dir()]) == 4
    assert "4 already done, 0 to run" in " ".join(second.output.split())


def test_best_c_is_the_gap_between_the_last_trained_and_first_untrained_depth():
    """At sigma_w2 = 0.5 without bias xi_c = 1 / ln 2, so depth / xi_c = depth ln 2. A grid
    trained up to depth 8 and not from depth 9 is classified perfectly exactly for c in
    [8 ln 2, 9 ln 2); one wrongly trained deep cell leaves that interval the best at 3 of 4."""
    from winit_cli.app.phase import best_c

    options = PhaseOptions(sigma_w2=[0.5], depths=[4, 8, 9, 16], sigma_b2=0.0)
    truth = {(0.5, 4): 0.9, (0.5, 8): 0.5, (0.5, 9): 0.1, (0.5, 16): 0.1}
    fit = best_c(phase_grid(_synthetic_comparison(truth), options))
    assert (fit.low, fit.high) == pytest.approx((8 * math.log(2), 9 * math.log(2)), rel=1e-6)
    assert (fit.right, fit.total) == (4, 4)
    noisy = best_c(phase_grid(_synthetic_comparison({**truth, (0.5, 16): 0.9}), options))
    # c >= 16 ln 2 also gets 3 of 4 (only depth 9 wrong) and is the widest such interval
    assert (noisy.right, noisy.total) == (3, 4)
    assert noisy.low == pytest.approx(16 * math.log(2), rel=1e-6) and math.isinf(noisy.high)


@pytest.mark.mnist
def test_json_gives_the_grid_agreement_and_fitted_c(tiny_phase, mnist_path: Path):
    """--json (on the resumed grid): one document whose counts match phase.csv recomputed."""
    out, _, _ = tiny_phase
    env = {"WINIT_DATA_DIR": str(mnist_path)}
    result = CliRunner().invoke(app, ["phase", *TINY, "--set", f"output_dir={out}", "--json"],
                                env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    grid = pd.read_csv(doc["grid_csv"])
    assert doc["total"] == 4 and len(doc["cells"]) == 4
    assert doc["right"] == int((grid.trained == grid.predicted_trainable).sum())
    assert doc["best_c"]["low"] >= 0 and doc["best_c"]["right"] >= doc["right"]


def test_trained_is_decided_by_test_accuracy_on_a_comparison_csv_whose_accuracies_disagree(
        tmp_path):
    """The docs (results.md) and the diagram's own line say a cell is trained when its test
    accuracy exceeds the threshold. In this hand-built comparison.csv the train accuracy says the
    opposite in every cell (a net that memorised; one that generalises better than it fits), so
    a grid deciding on train accuracy gets every cell wrong. Two seeds per cell: the mean
    decides (0.15 and 0.35 average to 0.25 > 0.2)."""
    rows = [  # sigma_w2, depth, seed, test accuracy, train accuracy
        (0.5, 4, 0, 0.90, 0.10), (0.5, 4, 1, 0.80, 0.10),
        (0.5, 16, 0, 0.10, 0.95), (0.5, 16, 1, 0.12, 0.99),
        (0.5, 9, 0, 0.15, 0.05), (0.5, 9, 1, 0.35, 0.05),
    ]
    csv = tmp_path / "comparison.csv"
    pd.DataFrame([{"run_id": f"r{i}", "init_params_sigma_w2": w, "model_depth": d, "seed": s,
                   "test_accuracy": test, "train_accuracy": train, "train_loss": 1.0}
                  for i, (w, d, s, test, train) in enumerate(rows)]).to_csv(csv, index=False)
    options = PhaseOptions(sigma_w2=[0.5], depths=[4, 9, 16], sigma_b2=0.0, c=6.0,
                           threshold=0.2)
    grid = phase_grid(pd.read_csv(csv), options).set_index("depth")
    assert grid.trained.to_dict() == {4: True, 9: True, 16: False}
    assert grid.test_accuracy.to_dict() == pytest.approx({4: 0.85, 9: 0.25, 16: 0.11})
    # 6 xi_c = 8.66 at sigma_w2 = 0.5 (tanh, no bias): depth 9 is predicted untrainable
    assert agreement(phase_grid(pd.read_csv(csv), options)) == (2, 3)

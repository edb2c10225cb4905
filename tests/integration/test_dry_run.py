"""`--dry-run`'s estimate (app/estimate.py): its counts are the schedule's, a member that diverges
on the timing data does not stop it, groups are labelled by what sets them apart, and the
extrapolation from 1 and 2 members stays within physical bounds. Its times are measured, so
they are checked for sense (positive, the parts adding up), not for value: the estimate-versus-
real figures are measured on a quiet machine and quoted in the commit messages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from winit_cli.app import estimate as est
from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.training.schedule import Schedule


@pytest.mark.parametrize(("steps", "every"), [(0, 10), (1, 10), (10, 10), (25, 10), (1290, 10),
                                              (7, 1), (430, 50), (99, 100)])
def test_counts_are_the_schedules(steps: int, every: int) -> None:
    plan = Schedule(steps, 10**9, every, every)
    assert est.recorded_steps(steps, every) == sum(plan.records(s) for s in range(steps + 1))
    assert est.evaluations(steps, every) == sum(plan.evaluates(s) for s in range(steps + 1))


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_counts_match_what_a_real_run_records_and_evaluates(tmp_path: Path) -> None:
    """A short real run: its recorded steps (layers.csv) and validation passes (metrics.csv)
    are what the estimate counted."""
    overrides = ["model.depth=3", "model.width=16", "train.steps=25", "record.every=10",
                 "record.eval_every=7", f"output_dir={tmp_path}"]
    config = load_config(None, overrides)
    (cost,) = est.estimate([[config]]).groups
    result = CliRunner().invoke(app, ["run", "--quiet", *sum((["--set", o] for o in overrides),
                                                             []), str(_yaml(tmp_path))])
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    layers = pd.read_csv(run_dir / "layers.csv")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert cost.recorded == layers.step.nunique() == 4  # 0, 10, 20, 25
    passes = int(metrics.val_loss.notna().sum())
    assert passes == 4  # 7, 14, 21, 25
    assert cost.evaluated == passes * config.data.val_size + 10_000


def _yaml(folder: Path) -> Path:
    path = folder / "base.yaml"
    path.write_text("name: tiny\n")
    return path


@pytest.mark.parametrize("schemes", ["mean1_normal,he_normal", "mean1_normal"])
def test_a_member_that_diverges_on_random_data_is_timed_on(tmp_path: Path, monkeypatch,
                                                           schemes: str) -> None:
    """mean1_normal at depth 60 overflows at step 0 on random data; the dry run still exits 0
    with an estimate (alone in its group it used to wait for a progress report that never
    came: KeyError: 20). No data on the machine here: timing runs on random data, and the
    download is said not counted."""
    monkeypatch.setenv("WINIT_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, [
        "compare", "schemes", "--schemes", schemes, "--depths", "60",
        "--set", "model.width=32", "--set", f"output_dir={tmp_path}", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["estimated_seconds"] > 0 and data["steps"] == 430
    assert data["estimate"]["data_not_on_machine"] == ["mnist"]
    (group,) = data["estimate"]["groups"]
    assert group["runs"] == len(schemes.split(",")) and group["step_seconds"] > 0
    parts = data["estimate"]["seconds_by_part"]
    assert sum(parts.values()) == pytest.approx(data["estimated_seconds"])
    assert not list(tmp_path.rglob("summary.json"))


def test_groups_are_labelled_by_what_sets_them_apart() -> None:
    configs = [load_config(None, [f"model.activation={a}", f"model.depth={d}"])
               for a in ("relu", "tanh") for d in (5, 10)]
    labels = est.group_labels([[c] for c in configs])
    assert labels == ["relu, depth 5, width 256", "relu, depth 10, width 256",
                      "tanh, depth 5, width 256", "tanh, depth 10, width 256"]
    lr = [load_config(None, [f"train.lr={lr}"]) for lr in (0.1, 0.01)]
    assert [label.rpartition(", ")[2] for label in est.group_labels([[c] for c in lr])] == \
        ["lr 0.1", "lr 0.01"]


def test_extrapolation_in_members_is_bounded() -> None:
    def timing(t: float) -> est.Timing:
        return est.Timing(t, t, t, t)

    # overhead 2, 3 a member: t(1) = 5, t(2) = 8, t(8) = 26
    assert est._extrapolate(timing(5), timing(8), 8).plain == pytest.approx(26)
    # noise making t(2) more than twice t(1): no more than proportional to the members
    assert est._extrapolate(timing(5), timing(14), 8).plain == pytest.approx(56)
    # noise making t(2) below t(1): never below the 2-member time
    assert est._extrapolate(timing(5), timing(4), 8).plain == pytest.approx(4)


def test_steps_are_scaled_to_the_fair_cpu_share(tmp_path: Path) -> None:
    """Two other runnable threads beside one of ours on 2 CPUs: a long run gets 2/3 of a CPU,
    so its steps and evaluations take 3/2 as long as a typical timed one; setup is not scaled.
    """
    c = est.Contention(others=2.0, threads=1, cpus=2)
    assert c.fair_share == pytest.approx(2 / 3)
    scaled = c.scale(est.Timing(setup=1.0, plain=0.01, recorded=0.02, eval_example=1e-5))
    assert (scaled.setup, scaled.plain, scaled.recorded, scaled.eval_example) == \
        pytest.approx((1.0, 0.015, 0.03, 1.5e-5))
    assert est.Contention(others=0.5, threads=1, cpus=2).fair_share == 1.0
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4\nprocs_running 3\nprocs_blocked 0\n")
    assert est._runnable(stat) == [3]
    assert est._runnable(tmp_path / "absent") == []

"""Thread counts: the CPUs free (from /proc/stat and cgroup texts), the tuner's decisions (fed
made-up step times, never timed here), `train.threads` and what the run record says."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from winit_cli.config import validate
from winit_cli.errors import ConfigError
from winit_cli.runner.group import load_splits, train_records
from winit_cli.training import threads as th

STAT_BEFORE = """cpu  300 0 100 600 0 0 0 0 0 0
cpu0 100 0 50 300 0 0 0 0 0 0
cpu1 200 0 50 300 0 0 0 0 0 0
intr 12345
procs_running 3
"""
# Over the window cpu0 was busy 100 of 100 ticks, cpu1 25 of 100 (10 of them stolen).
STAT_AFTER = """cpu  415 0 110 675 0 0 0 0 0 0
cpu0 190 0 60 300 0 0 0 0 0 0
cpu1 215 0 50 370 5 0 0 10 0 0
"""


def test_cpu_times_and_busy_cpus_from_proc_stat():
    """Per-CPU idle (idle + iowait) and total ticks; busy CPUs summed over the window; steal
    counts as busy; CPUs outside the affinity are left out."""
    before, after = th.cpu_times(STAT_BEFORE), th.cpu_times(STAT_AFTER)
    assert before == {0: (300, 450), 1: (300, 550)}
    assert after[1] == (375, 650)
    assert th.busy_cpus(before, after) == pytest.approx(1.0 + 0.25)
    only0 = th.cpu_times(STAT_AFTER, cpus={0})
    assert set(only0) == {0}
    assert th.busy_cpus(th.cpu_times(STAT_BEFORE, {0}), only0) == pytest.approx(1.0)
    assert th.busy_cpus(before, before) == 0.0  # no ticks: nothing measured, nothing busy


@pytest.mark.parametrize(("free", "limit", "threads"), [
    (2.0, 2, 2),  # quiet 2-core machine
    (1.0, 2, 1),  # one busy process beside us
    (0.1, 2, 1),  # two: still one thread
    (1.6, 2, 2),
    (1.4, 2, 1),
    (11.7, 8, 8),  # capped by the share or quota
    (math.inf, 4, 4),  # /proc/stat unreadable
])
def test_threads_for_free_cpus(free, limit, threads):
    assert th.threads_for(free, limit) == threads


def test_cgroup_quota_v2_and_v1(tmp_path: Path):
    """v2's cpu.max and v1's cfs quota/period, for the cgroup /proc/self/cgroup names."""
    assert th.parse_cpu_max("max 100000") is None
    assert th.parse_cpu_max("150000 100000") == 1.5
    assert th.parse_cpu_max(None) is None
    v2 = tmp_path / "v2" / "job"
    v2.mkdir(parents=True)
    (v2 / "cpu.max").write_text("200000 100000\n")
    assert th.cgroup_cpu_limit("0::/job\n", root=tmp_path / "v2") == 2.0
    v1 = tmp_path / "v1" / "cpu" / "box"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000")
    (v1 / "cpu.cfs_period_us").write_text("100000")
    text = "4:memory:/box\n3:cpu,cpuacct:/box\n"
    assert th.cgroup_cpu_limit(text, root=tmp_path / "v1") == 0.5
    (v1 / "cpu.cfs_quota_us").write_text("-1")
    assert th.cgroup_cpu_limit(text, root=tmp_path / "v1") is None
    assert th.cgroup_cpu_limit("0::/missing\n", root=tmp_path / "v2") is None


def feed(tuner: th.ThreadTuner, seconds_at: dict[int, float], steps: int) -> list[int]:
    """Run `steps` made-up steps, each lasting seconds_at[threads]; the counts used."""
    used = []
    for _ in range(steps):
        n = tuner.threads()
        used.append(n)
        tuner.observe(seconds_at[n])
    return used


def test_tuner_moves_to_fewer_threads_when_they_are_faster():
    """Beside a busy process 2 threads crawl: the first check tries 1 and keeps it."""
    tuner = th.ThreadTuner(2, limit=2, first_check=1.0, every=100.0, trial_steps=4)
    used = feed(tuner, {2: 0.05, 1: 0.01}, 60)
    assert used[:20] == [2] * 20  # 1 s of steps at 0.05 s before the first check
    assert 1 in used[20:40]
    assert tuner.current == 1 and used[-1] == 1


def test_tuner_keeps_its_count_unless_another_is_clearly_faster():
    quiet = th.ThreadTuner(2, limit=2, first_check=0.1, trial_steps=3)
    feed(quiet, {2: 0.01, 1: 0.018}, 100)
    assert quiet.current == 2
    close = th.ThreadTuner(2, limit=2, first_check=0.1, trial_steps=3, margin=0.1)
    feed(close, {2: 0.01, 1: 0.0095}, 100)  # 5% faster: within the margin
    assert close.current == 2


def test_tuner_checks_again_later_and_skips_evaluation_steps():
    tuner = th.ThreadTuner(1, limit=2, first_check=0.1, every=1.0, trial_steps=3)
    feed(tuner, {1: 0.01, 2: 0.02}, 40)  # first check: 2 threads slower, stay at 1
    assert tuner.current == 1
    feed(tuner, {1: 0.02, 2: 0.01}, 200)  # the load went away: the next check moves up
    assert tuner.current == 2
    during = th.ThreadTuner(2, limit=2, first_check=0.0, trial_steps=2)
    during.observe(0.01)  # starts the trial
    for _ in range(10):
        during.observe(99.0, ordinary=False)  # an evaluation step: not a timing
    feed(during, {2: 0.01, 1: 0.02}, 10)
    assert during.current == 2


def test_tuner_neighbours_stay_within_the_limit():
    assert th.ThreadTuner(1, limit=1).candidates() == [1]
    assert th.ThreadTuner(4, limit=8).candidates() == [4, 2, 8]
    assert th.ThreadTuner(8, limit=8).candidates() == [8, 4]
    single = th.ThreadTuner(1, limit=1, first_check=0.0)
    assert feed(single, {1: 0.01}, 20) == [1] * 20  # nothing to try


def test_fixed_threads_are_applied_and_restored():
    before = torch.get_num_threads()
    control = th.ThreadControl(1)
    control.start()
    for step in range(3):
        control.before_step(step)
        assert torch.get_num_threads() == 1
        control.after_step(0.01, True)
    control.restore()
    assert torch.get_num_threads() == before
    assert control.summary() == {"threads": 1, "threads_auto": False, "thread_changes": [[0, 1]]}


def test_a_share_set_mid_run_applies_from_the_next_step(monkeypatch):
    """--jobs N sets the share when it starts helpers during a group: an auto run drops to it at
    the next step and goes back up when it is lifted, each change recorded; a pinned count
    stays pinned. No training: the steps are fake."""
    monkeypatch.setattr(th, "usable_cpus", lambda: 4)
    monkeypatch.setattr(th.LoadMeter, "free", lambda self: 4.0)
    monkeypatch.setattr(th, "_share", None)
    before = torch.get_num_threads()
    control = th.ThreadControl("auto")
    control.start()
    seen = []
    for step, share in enumerate([None, None, 1, 1, None]):
        th.set_cpu_share(share)
        control.before_step(step)
        seen.append(torch.get_num_threads())
        control.after_step(0.01, True)
    control.restore()
    assert seen == [4, 4, 1, 1, 4]
    assert control.summary()["thread_changes"] == [[0, 4], [2, 1], [4, 4]]
    pinned = th.ThreadControl(2)
    pinned.start()
    th.set_cpu_share(1)
    pinned.before_step(0)
    assert torch.get_num_threads() == 2
    pinned.restore()
    th.set_cpu_share(None)
    assert torch.get_num_threads() == before


def test_train_threads_option():
    assert validate({}).train.threads == "auto"
    assert validate({"train": {"threads": 3}}).train.threads == 3
    for bad in (0, "many"):
        with pytest.raises(ConfigError, match="train.threads"):
            validate({"train": {"threads": bad}})
    # How fast, not what: the run's identity does not change with it.
    assert validate({"train": {"threads": 1}}).content_hash() == validate({}).content_hash()


SMALL = {"model": {"depth": 3, "width": 16}, "train": {"steps": 4, "batch_size": 32},
         "data": {"subset": 300, "val_size": 100}, "record": {"every": 2}}


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
@pytest.mark.parametrize("setting", [1, "auto"])
def test_the_run_record_says_which_threads_ran(setting):
    config = validate({**SMALL, "train": {**SMALL["train"], "threads": setting}})
    before = torch.get_num_threads()
    (result,) = train_records([config], load_splits(config))
    env = result.record.environment
    assert torch.get_num_threads() == before  # a library call leaves the process as it was
    assert env.threads_auto is (setting == "auto")
    assert env.thread_changes[0][0] == 0
    if setting == 1:
        assert env.threads == 1 and env.thread_changes == [[0, 1]]
    else:
        assert 1 <= env.threads <= th.usable_cpus()
        assert all(1 <= n <= th.usable_cpus() for _, n in env.thread_changes)

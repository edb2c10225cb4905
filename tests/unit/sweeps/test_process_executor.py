"""--jobs N: helper processes only where there is more than one group to share and the groups
not started are predicted to repay starting them; this process trains the first group at once,
as --jobs 1 does, and goes on training while helpers start (handing groups to them between its
own steps as they become ready), so that --jobs never waits on processes that do not pay."""

from __future__ import annotations

import pytest

from winit_cli.config import validate
from winit_cli.runner.group import RunOutcome
from winit_cli.sweeps import executors, pacing, processes
from winit_cli.training import threads as th
from winit_cli.training.threads import usable_cpus

SMALL = {"model": {"depth": 3, "width": 16}, "train": {"steps": 4, "batch_size": 32},
         "data": {"subset": 300, "val_size": 100}, "record": {"every": 2}}


def configs(tmp_path, schemes, depth=3):
    return [validate({**SMALL, "name": f"{s}-{depth}", "init": {"scheme": s},
                      "model": {**SMALL["model"], "depth": depth}, "output_dir": str(tmp_path)})
            for s in schemes]


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_one_group_starts_no_helper_process(tmp_path, monkeypatch):
    """A sweep of one shape is one stacked model: --jobs 2 trains it here, as --jobs 1 does."""
    def no_pool(*args, **kwargs):
        raise AssertionError("a helper process was started for a single group")

    monkeypatch.setattr(processes, "ProcessPoolExecutor", no_pool)
    group = configs(tmp_path, ["he_normal", "normal"])
    outcomes = list(processes.ProcessExecutor(jobs=2).run([group]))
    assert [o.record.scheme for o in outcomes] == ["he_normal", "normal"]
    assert all(isinstance(o, RunOutcome) and o.record.status == "complete" for o in outcomes)


def spy_on_this_process(monkeypatch) -> list[list[str]]:
    """The groups trained in this process (helpers are spawned: the patch is not theirs)."""
    trained_here: list[list[str]] = []
    run = executors.InProcessExecutor.run

    def spy(self, groups, on_progress=None):
        trained_here.extend([c.name for c in g] for g in groups)
        yield from run(self, groups, on_progress)

    monkeypatch.setattr(executors.InProcessExecutor, "run", spy)
    return trained_here


def three_groups(tmp_path):
    return [configs(tmp_path, ["he_normal", "normal", "xavier_normal"], depth=3),
            configs(tmp_path, ["he_normal", "normal"], depth=4),
            configs(tmp_path, ["he_normal"], depth=5)]


def no_pool(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a helper process was started")

    monkeypatch.setattr(processes, "ProcessPoolExecutor", refuse)


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_a_short_sweep_of_several_groups_starts_no_helper(tmp_path, monkeypatch):
    """Three groups of 4 steps are far too little work to repay a helper's start: every group
    trains here, each member once and complete, on all threads (no share set), and the user
    is told why in one line."""
    no_pool(monkeypatch)
    trained_here = spy_on_this_process(monkeypatch)
    shares: list = []
    notes: list[str] = []
    groups = three_groups(tmp_path)
    executor = processes.ProcessExecutor(jobs=2, on_note=notes.append)
    outcomes = list(executor.run(iter(groups), lambda *a: shares.append(th._share)))
    assert trained_here == [[c.name for c in g] for g in groups]
    assert sorted(o.record.name for o in outcomes) == sorted(c.name for g in groups for c in g)
    assert all(isinstance(o, RunOutcome) and o.record.status == "complete" for o in outcomes)
    assert shares and set(shares) == {None}
    assert len(notes) == 1 and "too little to repay" in notes[0]


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_helpers_start_once_the_work_left_repays_them(tmp_path, monkeypatch):
    """With the threshold at 0 any work left repays a helper: it is started (one, for
    --jobs 2) only after this process has begun the first group on all threads, and every
    member comes back once, whoever trained it; the share is lifted at the end."""
    monkeypatch.setattr(processes.ProcessExecutor, "REPAY_SECONDS", 0.0)
    pools: list[int] = []

    class SpiedPool(processes.ProcessPoolExecutor):
        def __init__(self, workers, **kwargs):
            pools.append(workers)
            super().__init__(workers, **kwargs)

    monkeypatch.setattr(processes, "ProcessPoolExecutor", SpiedPool)
    trained_here = spy_on_this_process(monkeypatch)
    first_share: list = []
    notes: list[str] = []
    groups = three_groups(tmp_path)
    executor = processes.ProcessExecutor(jobs=2, on_note=notes.append)
    outcomes = list(executor.run(groups, lambda *a: first_share.append((pools[:], th._share))))
    assert pools == [1]
    assert first_share[0] == ([], None)  # first report: no helper yet, no share
    assert trained_here[0] == [c.name for c in groups[0]]
    assert sorted(o.record.name for o in outcomes) == sorted(c.name for g in groups for c in g)
    assert all(o.record.status == "complete" for o in outcomes)
    assert len(notes) == 1 and "starting 1 helper" in notes[0]
    assert th._share is None


def test_later_seconds_scales_the_measured_step_by_work():
    """Each later group: its steps x the seconds per step measured now x its matmul work over
    the current group's (hand-computed: 200 x 0.01 x 50/100 + 100 x 0.01 x 300/100 = 4)."""
    assert pacing.later_seconds(0.01, 100, [(200, 50), (100, 300)]) == pytest.approx(4.0)
    assert pacing.later_seconds(0.01, 100, []) == 0.0


def test_predicted_seconds_of_config_groups_by_hand(tmp_path):
    """Work per step = members x batch x sum(fan_in * fan_out): depth 3, width 16 on MNIST is
    784*16 + 16*16 + 16*10 = 12960, depth 4 adds a 16*16 layer (13216); 4 planned steps."""
    current = configs(tmp_path, ["he_normal", "normal", "xavier_normal"], depth=3)
    later = [configs(tmp_path, ["he_normal", "normal"], depth=4), configs(tmp_path, ["normal"])]
    assert pacing.matmul_work(current) == 3 * 32 * 12960
    assert pacing.matmul_work(later[0]) == 2 * 32 * 13216
    expected = 4 * 0.01 * (2 * 13216 + 1 * 12960) / (3 * 12960)
    assert pacing.predict_later(0.01, current, later) == pytest.approx(expected)
    wide_batch = [validate({**SMALL, "train": {**SMALL["train"], "batch_size": 64}})]
    assert pacing.matmul_work(wide_batch) == 64 * 12960


def test_step_timer_measures_after_the_first_report():
    """Timing starts at the first report (its step pays the warm-up) and ends at the first
    report WINDOW_STEPS steps or WINDOW_SECONDS later, or at the last step; once a group."""
    now = [0.0]
    timer = pacing.StepTimer(clock=lambda: now[0])
    for step, t in [(0, 5.0), (10, 5.1)]:
        now[0] = t
        assert timer.observe(step, 200) is None
    now[0] = 5.2
    assert timer.observe(20, 200) == pytest.approx(0.01)
    now[0] = 9.0
    assert timer.observe(40, 200) is None  # measured already
    slow = pacing.StepTimer(clock=lambda: now[0])
    slow.observe(0, 200)
    now[0] = 9.6
    assert slow.observe(2, 200) == pytest.approx(0.3)  # half a second passed
    short = pacing.StepTimer(clock=lambda: now[0])
    short.observe(0, 4)
    now[0] = 9.64
    assert short.observe(4, 4) == pytest.approx(0.01)  # the group ended
    retried = pacing.StepTimer(clock=lambda: now[0])
    retried.observe(3, 200)
    now[0] = 10.0
    assert retried.observe(0, 200) is None  # a member's retry starts over: timing restarts
    now[0] = 10.2
    assert retried.observe(20, 200) == pytest.approx(0.01)


def test_lookahead_sees_the_groups_not_drawn():
    """A list's rest is visible; a source with ahead() is asked; a bare iterator shows none."""
    todo, ahead = pacing.lookahead([["a"], ["b"], ["c"]])
    assert next(todo) == ["a"] and ahead() == [["b"], ["c"]]

    class Source:
        def __iter__(self):
            return iter([["x"]])

        def ahead(self):
            return [["y"]]

    assert pacing.lookahead(Source())[1]() == [["y"]]
    todo, ahead = pacing.lookahead(iter([["a"], ["b"]]))
    assert next(todo) == ["a"] and ahead() == []


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_helpers_train_and_report_what_they_trained(tmp_path, monkeypatch):
    """With train_here=False every group goes to a helper process, which gives back the same
    records a run here would: the helpers' path, tested without racing them."""
    trained_here = spy_on_this_process(monkeypatch)
    groups = three_groups(tmp_path)
    progress: list[tuple] = []
    executor = processes.ProcessExecutor(jobs=2, train_here=False)
    outcomes = list(executor.run(groups, lambda *a: progress.append(a)))
    assert trained_here == []
    assert sorted(o.record.name for o in outcomes) == sorted(c.name for g in groups for c in g)
    assert all(isinstance(o, RunOutcome) and o.record.status == "complete" for o in outcomes)
    assert all((o.run_dir / "layers.csv").is_file() for o in outcomes)
    share = max(1, usable_cpus() // 2)  # two helpers share the CPUs
    assert all(o.record.environment.threads <= share for o in outcomes)
    assert any(step == total == 4 for step, total, _ in progress)  # helpers' steps got here

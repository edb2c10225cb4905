"""--jobs N: helper processes only where there is more than one group to share, and this process
training groups itself while helpers start (handing groups to them between its own steps as they
become ready), so that --jobs never waits on processes that do not pay for themselves."""

from __future__ import annotations

import pytest

from winit_cli.app.experiment import RunOutcome
from winit_cli.config import validate
from winit_cli.sweeps import executors
from winit_cli.training.threads import usable_cpus

SMALL = {"model": {"depth": 3, "width": 16}, "train": {"steps": 4, "batch_size": 32},
         "data": {"subset": 300, "val_size": 100}, "record": {"every": 2}}


def configs(tmp_path, schemes, depth=3):
    return [validate({**SMALL, "name": f"{s}-{depth}", "init": {"scheme": s},
                      "model": {**SMALL["model"], "depth": depth}, "output_dir": str(tmp_path)})
            for s in schemes]


@pytest.mark.usefixtures("winit_data_dir")
def test_one_group_starts_no_helper_process(tmp_path, monkeypatch):
    """A sweep of one shape is one stacked model: --jobs 2 trains it here, as --jobs 1 does."""
    def no_pool(*args, **kwargs):
        raise AssertionError("a helper process was started for a single group")

    monkeypatch.setattr(executors, "ProcessPoolExecutor", no_pool)
    group = configs(tmp_path, ["he_normal", "normal"])
    outcomes = list(executors.ProcessExecutor(jobs=2).run([group]))
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


@pytest.mark.usefixtures("winit_data_dir")
def test_this_process_trains_while_helpers_start(tmp_path, monkeypatch):
    """A helper cannot have started by the first look: this process takes the first group at
    once (groups are drawn in order, each claimed as it starts), and every member comes back
    once, whoever trained it."""
    trained_here = spy_on_this_process(monkeypatch)
    groups = three_groups(tmp_path)
    outcomes = list(executors.ProcessExecutor(jobs=2).run(iter(groups)))
    assert sorted(o.record.name for o in outcomes) == sorted(c.name for g in groups for c in g)
    assert all(o.record.status == "complete" for o in outcomes)
    assert trained_here[0] == [c.name for c in groups[0]]


@pytest.mark.usefixtures("winit_data_dir")
def test_helpers_train_and_report_what_they_trained(tmp_path, monkeypatch):
    """With train_here=False every group goes to a helper process, which gives back the same
    records a run here would: the helpers' path, tested without racing them."""
    trained_here = spy_on_this_process(monkeypatch)
    groups = three_groups(tmp_path)
    progress: list[tuple] = []
    executor = executors.ProcessExecutor(jobs=2, train_here=False)
    outcomes = list(executor.run(groups, lambda *a: progress.append(a)))
    assert trained_here == []
    assert sorted(o.record.name for o in outcomes) == sorted(c.name for g in groups for c in g)
    assert all(isinstance(o, RunOutcome) and o.record.status == "complete" for o in outcomes)
    assert all((o.run_dir / "layers.csv").is_file() for o in outcomes)
    share = max(1, usable_cpus() // 2)  # two helpers share the CPUs
    assert all(o.record.environment.threads <= share for o in outcomes)
    assert any(step == total == 4 for step, total, _ in progress)  # helpers' steps got here

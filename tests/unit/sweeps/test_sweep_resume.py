"""Resuming a sweep: which members count as done. Finished runs (complete or diverged) are kept;
running (killed), interrupted and failed ones are removed and redone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from winit_cli.records.writer import RunWriter
from winit_cli.runner.group import group_environment, load_splits
from winit_cli.status import Status
from winit_cli.sweeps import comparison, executors
from winit_cli.sweeps import plan as planning
from winit_cli.sweeps import spec as specs

BASE = {"model": {"depth": 4, "width": 32}, "train": {"steps": 12, "batch_size": 64},
        "data": {"subset": 640, "val_size": 100}, "record": {"every": 1000}}
# What a rerun does with a member whose run directory says this.
KEPT = {Status.COMPLETE: True, Status.DIVERGED: True, Status.RUNNING: False,
        Status.INTERRUPTED: False, Status.FAILED: False}


def spec(tmp_path: Path, grid: dict) -> specs.SweepSpec:
    return specs.SweepSpec("resume", {**json.loads(json.dumps(BASE)),
                                      "output_dir": str(tmp_path)}, grid, [0])


@pytest.mark.parametrize("status", list(Status))
def test_which_statuses_count_as_done(status, tmp_path):
    """Protects resume's rule (RunRecord.status.finished): complete and diverged members are
    done, the others are stale and redone. Without it, diverged members rerun forever (or
    interrupted ones are never finished)."""
    s = spec(tmp_path, {"init.scheme": ["he_normal", "normal"]})
    first = planning.plan(s)
    config = first.members[0]
    writer = RunWriter.for_config(config, group_environment([config]), None)
    if status is not Status.RUNNING:
        writer.finish(writer.record.model_copy(update={"status": status}), pd.DataFrame(),
                      pd.DataFrame())
    again = planning.plan(s)
    if KEPT[status]:
        assert again.done == {config.content_hash(): writer.dir}
        assert again.stale == [] and again.todo == first.members[1:]
    else:
        assert again.done == {} and again.stale == [writer.dir]
        assert again.todo == first.members
    assert set(KEPT) == set(Status)  # every status has a rule here


def test_a_member_whose_summary_is_damaged_is_found_by_its_config_and_redone(tmp_path):
    """Protects planning past a damaged summary.json: the folder is attributed to its member by
    config.yaml's hash, listed as stale ("damaged") and redone, never counted as done nor
    skipped over (which would leave two folders for the member)."""
    s = spec(tmp_path, {"init.scheme": ["he_normal", "normal"]})
    config = planning.plan(s).members[1]
    writer = RunWriter.for_config(config, group_environment([config]), None)
    writer.finish(writer.record, pd.DataFrame(), pd.DataFrame())
    (writer.dir / "summary.json").write_text('{"status": "compl')  # cut off mid-write
    again = planning.plan(s)
    assert again.done == {} and again.stale == [writer.dir]
    assert again.unfinished == {config.content_hash(): "damaged"}


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_a_diverged_member_is_not_rerun(tmp_path):
    """The real case: a sweep with a member that diverges (lr 20), rerun, trains nothing and
    keeps every run directory."""
    s = spec(tmp_path, {"train.lr": [0.05, 20.0]})
    run = comparison.run_sweep(planning.plan(s), s, executors.InProcessExecutor(load_splits))
    assert sorted(run.status) == ["complete", "diverged"]
    runs = sorted((planning.plan(s).directory / "runs").iterdir())
    again = planning.plan(s)
    assert again.todo == [] and again.stale == [] and len(again.done) == 2

    class NoTraining(executors.InProcessExecutor):
        def run(self, groups, on_progress=None):
            assert groups == [], "a finished member was trained again"
            return iter(())

    rerun = comparison.run_sweep(again, s, NoTraining(load_splits))
    assert list(rerun.status) == list(run.status)
    assert sorted((again.directory / "runs").iterdir()) == runs

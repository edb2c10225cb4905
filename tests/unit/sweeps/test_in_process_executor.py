"""The in-process executor's bookkeeping with training replaced by a stand-in that records what
it was asked and fails on demand: one outcome per member in order, a failing group retried one
member at a time (its folders removed first), a failing single member reported, Ctrl-C passed
on, and data splits loaded once per distinct need."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from winit_cli.config import validate
from winit_cli.runner import group as runner_group
from winit_cli.sweeps import executors
from winit_cli.sweeps.executors import ExecutorOptions, InProcessExecutor, MemberFailure


def config(name: str, **data):
    return validate({"name": name, "data": {"val_size": 100, **data}})


class Training:
    """Stands in for run_group: one outcome per member, named after it; fails for any group
    that contains a member named in `fails` (as a stacked model fails for all its members)."""

    def __init__(self, fails: set[str] = frozenset(), unsaved: set[str] = frozenset(),
                 error: BaseException | None = None):
        self.fails, self.unsaved, self.error = fails, unsaved, error
        self.calls: list[tuple[list[str], object]] = []

    def __call__(self, group, splits, *, on_progress=None, on_start=None):
        names = [c.name for c in group]
        self.calls.append((names, splits))
        on_start([Path(f"/runs/{n}-{len(self.calls)}") for n in names])
        if self.error is not None:
            raise self.error
        if self.fails & set(names):
            raise ValueError(f"diverged in {'+'.join(names)}")
        return [SimpleNamespace(name=n, unsaved=f"kept in /tmp/{n}" if n in self.unsaved else None)
                for n in names]


@pytest.fixture()
def removed(monkeypatch: pytest.MonkeyPatch) -> list[list[Path]]:
    calls: list[list[Path]] = []
    monkeypatch.setattr(executors, "remove_runs", lambda paths: calls.append(list(paths)))
    return calls


def run(monkeypatch, training: Training, groups) -> list:
    monkeypatch.setattr(runner_group, "run_group", training)
    executor = InProcessExecutor(lambda c: f"splits for {c.name}")
    return list(executor.run(iter(groups)))


def test_every_member_of_every_group_gets_its_outcome_in_order(monkeypatch, removed) -> None:
    """Each group is trained once, with the splits its first member asks for."""
    training = Training()
    out = run(monkeypatch, training, [[config("a"), config("b")], [config("c")]])
    assert [o.name for o in out] == ["a", "b", "c"]
    assert training.calls == [(["a", "b"], "splits for a"), (["c"], "splits for c")]
    assert removed == []


def test_a_failing_group_is_retried_member_by_member(monkeypatch, removed) -> None:
    """The batched attempt's folders are removed; the failing member becomes a MemberFailure
    saying its error; the others train alone and succeed."""
    training = Training(fails={"b"})
    out = run(monkeypatch, training, [[config("a"), config("b"), config("c")]])
    assert [c[0] for c in training.calls] == [["a", "b", "c"], ["a"], ["b"], ["c"]]
    assert removed == [[Path("/runs/a-1"), Path("/runs/b-1"), Path("/runs/c-1")]]
    assert out[0].name == "a" and out[2].name == "c"
    assert isinstance(out[1], MemberFailure)
    assert out[1].config.name == "b" and out[1].error == "ValueError: diverged in b"


def test_a_failing_single_member_is_reported_not_retried(monkeypatch, removed) -> None:
    training = Training(fails={"a"})
    (failure,) = run(monkeypatch, training, [[config("a")]])
    assert failure == MemberFailure(config("a"), "ValueError: diverged in a")
    assert len(training.calls) == 1 and removed == []


def test_an_interruption_is_passed_on_not_retried(monkeypatch, removed) -> None:
    training = Training(error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run(monkeypatch, training, [[config("a"), config("b")]])
    assert len(training.calls) == 1 and removed == []


def test_a_member_whose_files_were_not_saved_is_a_failure(monkeypatch, removed) -> None:
    out = run(monkeypatch, Training(unsaved={"b"}), [[config("a"), config("b")]])
    assert out[0].name == "a" and out[0].unsaved is None
    assert out[1] == MemberFailure(config("b"), "kept in /tmp/b")


def test_splits_are_loaded_once_per_distinct_data_section(monkeypatch) -> None:
    loads: list[tuple] = []

    def load_splits(c, data_dir=None, on_download=None):
        loads.append((c.data.val_size, c.data.subset, data_dir))
        return f"splits {len(loads)}"

    monkeypatch.setattr(runner_group, "load_splits", load_splits)
    splits_for = executors.cached_splits(Path("/data"))
    got = [splits_for(c) for c in [config("a"), config("b"), config("c", subset=50),
                                   config("d", subset=50)]]
    assert got == ["splits 1", "splits 1", "splits 2", "splits 2"]
    assert loads == [(100, None, Path("/data")), (100, 50, Path("/data"))]


def test_options_default_to_training_in_this_process() -> None:
    """`winit compare` without --jobs, and app.compare without options, use one job; the CLI
    passes the options positionally in this order."""
    assert ExecutorOptions().jobs == 1
    options = ExecutorOptions(3, Path("/data"), None, "ray://head:10001")
    assert (options.jobs, options.data_dir, options.address) == (3, Path("/data"),
                                                                 "ray://head:10001")

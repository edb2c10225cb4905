"""The Ray executor's driver lets go of each task's result once its members are written, so its
memory stays flat however many tasks a sweep has (a 1,000-cell phase diagram is 125 tasks).

Ray keeps a task's returned object alive for as long as the driver holds its object ref; here
a stand-in `ray` module hands out refs the test can watch with weak references (no cluster)."""

from __future__ import annotations

import gc
import sys
import types
import weakref

from winit_cli.config import validate
from winit_cli.sweeps.executors import MemberFailure
from winit_cli.sweeps.ray_executor import RayExecutor


class Ref:
    """An object ref: the task's result, as ray.get returns it."""

    def __init__(self, result: list):
        self.result = result


def stand_in_ray(refs: list[weakref.ref]) -> types.ModuleType:
    """Enough of Ray for RayExecutor.run: tasks 'run' at submission; each ready one at a time."""
    ray = types.ModuleType("ray")

    class Task:
        def options(self, **_):
            return self

        def remote(self, group, splits, threads, steps):
            ref = Ref([f"failed in the stand-in: {c.name}" for c in group])
            refs.append(weakref.ref(ref))
            return ref

    def wait(pending, num_returns=1, timeout=None):
        return pending[:num_returns], pending[num_returns:]

    ray.remote = lambda function: Task()
    ray.wait = wait
    ray.get = lambda ref: ref.result
    ray.put = lambda value: object()
    ray.nodes = lambda: [{"Alive": True, "Resources": {"CPU": 1}}]
    ray.is_initialized = lambda: True  # the caller's connection: run() neither makes nor ends it
    ray.cancel = lambda ref, force=False: None
    ray.exceptions = types.SimpleNamespace(RayError=RuntimeError)
    return ray


def test_each_tasks_result_is_let_go_once_its_members_are_out(monkeypatch, tmp_path):
    refs: list[weakref.ref] = []
    monkeypatch.setitem(sys.modules, "ray", stand_in_ray(refs))
    groups = [[validate({"name": f"g{g}m{m}", "output_dir": str(tmp_path)}) for m in range(2)]
              for g in range(5)]
    outcomes = RayExecutor(lambda config: None).run(groups)
    seen = []
    for outcome in outcomes:
        assert isinstance(outcome, MemberFailure)
        seen.append(outcome.config.name)
        if len(seen) % 2 == 0:  # a whole group is out: the next task's turn
            done = len(seen) // 2
            gc.collect()
            alive = [r() is not None for r in refs]
            # the group just yielded may still be referenced by the suspended generator frame;
            # every group before it must be gone
            assert alive[:done - 1] == [False] * (done - 1), alive
    assert seen == [c.name for g in groups for c in g]
    del outcomes
    gc.collect()
    assert not any(r() is not None for r in refs)

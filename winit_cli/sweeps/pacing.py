"""Whether --jobs N should start its helper processes: only when the work left repays it.

Starting a helper (spawn, import torch and winit, load the data) costs seconds of a core, and
while it starts this process trains on its share of the CPUs. So this process starts the first
group alone, on every thread, times its own steps for a moment (`StepTimer`), predicts from
them the seconds of the groups not started yet (`later_seconds`), and the executor starts
helpers only if that beats its threshold.

The groups not started are read without drawing them (`lookahead`): a sweep's groups are
claimed as they are drawn, and a preview must not claim what another process may train.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache

from winit_cli.config import Config
from winit_cli.training.schedule import CLASSES, INPUT_SIZE, planned_steps


def lookahead(groups: Iterable[list[Config]]
              ) -> tuple[Iterator[list[Config]], Callable[[], list[list[Config]]]]:
    """An iterator over `groups`, and a function giving the groups not drawn from it yet: the
    source's own `ahead()` where it has one (a sweep's claimed groups: a preview that claims
    nothing), the rest of a list, else none (an iterator that cannot be looked into)."""
    if hasattr(groups, "ahead"):
        return iter(groups), groups.ahead
    if not isinstance(groups, Sequence):
        return iter(groups), list
    planned, drawn = list(groups), [0]

    def each() -> Iterator[list[Config]]:
        for group in planned:
            drawn[0] += 1
            yield group

    return each(), lambda: planned[drawn[0]:]


@lru_cache(maxsize=256)
def _layer_work(model_json: str) -> int:
    """sum(fan_in * fan_out) over a model's Linear layers, read from the model itself (so every
    kind counts its own layers), built on the meta device: shapes without memory."""
    import torch

    from winit_cli.config import ModelConfig
    from winit_cli.models import build_model

    with torch.device("meta"):
        model = build_model(ModelConfig.model_validate_json(model_json), INPUT_SIZE, CLASSES)
    return sum(fan_in * fan_out for fan_in, fan_out in model.layer_shapes())


def matmul_work(group: list[Config]) -> int:
    """A group's multiply-adds per optimizer step, up to a constant factor (forward and backward
    passes scale alike): members x batch size x sum(fan_in * fan_out) of its Linear layers."""
    config = group[0]
    return len(group) * config.train.batch_size * _layer_work(config.model.model_dump_json())


def later_seconds(seconds_per_step: float, current_work: int,
                  later: Iterable[tuple[int, int]]) -> float:
    """Predicted seconds of the groups not started: each one's (optimizer steps, matmul work per
    step) at the current group's measured seconds per step, scaled by their work ratio."""
    per_work = seconds_per_step / current_work
    return sum(steps * work * per_work for steps, work in later)


def predict_later(seconds_per_step: float, current: list[Config],
                  later: list[list[Config]]) -> float:
    """`later_seconds` for groups of configs."""
    return later_seconds(seconds_per_step, matmul_work(current),
                         [(planned_steps(g[0]), matmul_work(g)) for g in later])


class StepTimer:
    """Seconds per step of the group training here, from its progress reports.

    Timing starts at the first report (step 0: its step pays the warm-up, allocating and
    starting the thread pool) and ends at the first report WINDOW_STEPS steps or WINDOW_SECONDS
    later, or at the group's last step. 20 steps: the loop reports at least every 20 steps, and
    20 steps hold recording steps in proportion for any recording interval dividing 20. Half a
    second: with slow steps, waiting for 20 would delay the decision while a helper could
    already be starting; the timer's and scheduler's noise is milliseconds, small beside it."""

    WINDOW_STEPS = 20
    WINDOW_SECONDS = 0.5

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.start: tuple[int, float] | None = None
        self.measured = False

    def observe(self, step: int, total: int) -> float | None:
        """Seconds per step once the window is measured (once), else None."""
        if self.measured:
            return None
        now = self.clock()
        if self.start is None or step <= self.start[0]:  # first report, or a retry began again
            self.start = (step, now)
            return None
        steps, seconds = step - self.start[0], now - self.start[1]
        if steps >= self.WINDOW_STEPS or seconds >= self.WINDOW_SECONDS or step >= total:
            self.measured = True
            return seconds / steps
        return None

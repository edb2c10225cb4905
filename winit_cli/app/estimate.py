"""What a run or sweep will cost, before it runs (`--dry-run`): its optimizer steps, and minutes
from a per-step time measured here, now, by training each group's actual stacked model for a
few steps on random data of the real shape. Machines are shared and their speed drifts, so the
estimate is measured rather than looked up, and is a guide rather than a promise.

The time covers training and recording at the configured interval; validation passes are not
included (a few percent at the default of one per epoch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from winit_cli.config import Config
from winit_cli.training.schedule import CLASSES, INPUT_SIZE, planned_steps


@dataclass(frozen=True)
class GroupCost:
    members: int
    steps: int  # optimizer steps of the group (its members train together)
    seconds_per_step: float  # measured: the whole group's step


@dataclass(frozen=True)
class Estimate:
    groups: list[GroupCost]

    @property
    def steps(self) -> int:
        """Optimizer steps summed over groups (members of a group step together)."""
        return sum(g.steps for g in self.groups)

    @property
    def seconds(self) -> float:
        return sum(g.steps * g.seconds_per_step for g in self.groups)


def _random_splits(config: Config):
    """Random inputs and labels with the real shapes: time does not depend on the values
    (subnormals aside, which training flushes by default)."""
    from winit_cli.datasets import Splits

    g = torch.Generator().manual_seed(0)
    n = 4 * config.train.batch_size
    empty = torch.zeros(0, dtype=torch.long)
    return Splits(x_train=torch.randn(n, INPUT_SIZE, generator=g),
                  y_train=torch.randint(0, CLASSES, (n,), generator=g),
                  x_val=torch.zeros(0, INPUT_SIZE), y_val=empty,
                  x_test=torch.randn(64, INPUT_SIZE, generator=g),
                  y_test=torch.randint(0, CLASSES, (64,), generator=g),
                  train_idx=torch.arange(n), val_idx=empty)


def time_per_step(configs: list[Config]) -> float:
    """Seconds per step of these configs trained as one group, timed between two progress
    reports after the first steps (so building the model, the first step's warm-up and the final
    evaluation are left out). The window spans whole recording intervals where it can, so
    recording costs what it will in the real run."""
    from winit_cli.training.loop import train

    every = configs[0].record.every
    first = min(every, 20)  # progress is reported at every record and every 20 steps
    span = every * math.ceil(10 / every) if every < 10 else first
    timed = []
    for c in configs:
        c = c.model_copy(deep=True)
        c.train.steps = first + span
        timed.append(c)
    seen: dict[int, float] = {}
    train(timed, _random_splits(configs[0]),
          on_progress=lambda step, total, info: seen.setdefault(step, time.perf_counter()))
    return (seen[first + span] - seen[first]) / span


def estimate(groups: list[list[Config]]) -> Estimate:
    """The cost of training `groups` (lists of configs that train together) one after another;
    groups of the same shape and size are timed once."""
    timed: dict[str, float] = {}
    costs = []
    for group in groups:
        c = group[0]
        shape = f"{c.model.model_dump_json()}|{c.train.batch_size}|{c.train.optimizer}|" \
                f"{c.record.every}|{c.train.device}|{len(group)}"
        if shape not in timed:
            timed[shape] = time_per_step(group)
        costs.append(GroupCost(len(group), planned_steps(c), timed[shape]))
    return Estimate(costs)

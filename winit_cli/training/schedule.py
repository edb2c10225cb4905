"""When things happen in a training run (`Schedule`), and which examples each step sees
(`Batches`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from winit_cli.config import Config


@dataclass
class Schedule:
    steps: int
    steps_per_epoch: int
    record_every: int
    eval_every: int

    def epoch(self, step: int) -> int:
        return step // self.steps_per_epoch

    def records(self, step: int) -> bool:
        return step % self.record_every == 0 or step == self.steps

    def evaluates(self, step: int) -> bool:
        return (step > 0 and step % self.eval_every == 0) or step == self.steps


# The shape of the registered datasets (MNIST and Fashion-MNIST), for planning before any is
# loaded (`winit run --dry-run`, `--jobs` pacing): 60,000 training images of 784 values, 10
# classes.
TRAIN_EXAMPLES = 60_000
INPUT_SIZE, CLASSES = 784, 10


def planned_steps(config: Config) -> int:
    """The optimizer steps a run of `config` takes: train.steps, else epochs of batches."""
    if config.train.steps:
        return config.train.steps
    n_train = config.data.subset or TRAIN_EXAMPLES - config.data.val_size
    return config.train.epochs * math.ceil(min(n_train, TRAIN_EXAMPLES) / config.train.batch_size)


def samples_in(steps: int, n_train: int, batch_size: int) -> int:
    """The training examples the first `steps` batches hold: an epoch is ceil(n / batch_size)
    batches, the last one short, and a batch larger than the data holds all of it, not
    batch_size examples."""
    per_epoch = math.ceil(n_train / batch_size)
    epochs, batches = divmod(steps, per_epoch)
    return epochs * n_train + min(batches * batch_size, n_train)


def schedule(config: Config, n_train: int) -> Schedule:
    per_epoch = math.ceil(n_train / config.train.batch_size)
    steps = config.train.steps or config.train.epochs * per_epoch
    return Schedule(steps, per_epoch, config.record.every, config.record.eval_every or per_epoch)


class Batches:
    """Each member's own shuffled order (seeded by its seed), by index slicing of in-memory data.

    An epoch is ceil(n / batch_size) batches, the last one possibly short.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seeds: list[int], batch_size: int):
        self.x, self.y, self.batch_size, self.seeds = x, y, batch_size, seeds
        self.per_epoch = math.ceil(len(x) / batch_size)
        # Members with equal seeds share one order, so one gather serves all of them.
        self.generators = {s: torch.Generator().manual_seed(s + 1_000_003) for s in set(seeds)}
        self.orders: dict[int, torch.Tensor] = {}
        self.epoch = -1

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` for every member: x [K, B, input_size], y [K, B]."""
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            self.orders = {s: torch.randperm(len(self.x), generator=g).to(self.x.device)
                           for s, g in self.generators.items()}
            self.epoch = epoch
        start = index * self.batch_size
        picked = {s: o[start:start + self.batch_size] for s, o in self.orders.items()}
        if len(picked) == 1:
            i = next(iter(picked.values()))
            k = len(self.seeds)
            return self.x[i].expand(k, -1, -1), self.y[i].expand(k, -1)
        return (torch.stack([self.x[picked[s]] for s in self.seeds]),
                torch.stack([self.y[picked[s]] for s in self.seeds]))

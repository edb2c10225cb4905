"""When a run records and evaluates (`Schedule`), and which examples each step trains on
(`Batches`): every example once an epoch, in an order set by the member's seed alone."""

from __future__ import annotations

import math

import pytest
import torch

from winit_cli.config import validate
from winit_cli.training.schedule import Batches, Schedule, schedule


def test_schedule_from_a_config():
    """Protects the step count (train.steps, else epochs x ceil(n / batch)) and the default
    evaluation interval (an epoch)."""
    by_epochs = schedule(validate({"train": {"epochs": 3, "batch_size": 64}}), 1000)
    assert (by_epochs.steps, by_epochs.steps_per_epoch, by_epochs.eval_every) == (48, 16, 16)
    by_steps = schedule(validate({"train": {"epochs": 3, "steps": 7},
                                  "record": {"every": 2, "eval_every": 3}}), 1000)
    assert (by_steps.steps, by_steps.record_every, by_steps.eval_every) == (7, 2, 3)


def test_records_and_evaluates_on_their_own_intervals():
    """Protects which steps are recorded (0, multiples of `every`, the last) and evaluated
    (multiples of eval_every after 0, the last), and the epoch of a step."""
    plan = Schedule(steps=23, steps_per_epoch=10, record_every=5, eval_every=7)
    assert [s for s in range(24) if plan.records(s)] == [0, 5, 10, 15, 20, 23]
    assert [s for s in range(24) if plan.evaluates(s)] == [7, 14, 21, 23]
    assert [plan.epoch(s) for s in (0, 9, 10, 23)] == [0, 0, 1, 2]


def epoch_of(batches: Batches, epoch: int, member: int) -> list[torch.Tensor]:
    return [batches.get(epoch * batches.per_epoch + i)[1][member]
            for i in range(batches.per_epoch)]


@pytest.fixture
def data():
    n = 203  # not a multiple of the batch size: the last batch of an epoch is short
    return torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3), torch.arange(n)


def test_every_example_once_an_epoch_in_a_new_order(data):
    """Protects epochs: each is a permutation of the training set (last batch short), and the
    next epoch reshuffles."""
    x, y = data
    batches = Batches(x, y, seeds=[5], batch_size=50)
    assert batches.per_epoch == math.ceil(203 / 50)
    first, second = epoch_of(batches, 0, 0), epoch_of(batches, 1, 0)
    assert [len(b) for b in first] == [50, 50, 50, 50, 3]
    assert sorted(torch.cat(first).tolist()) == list(range(203))
    assert sorted(torch.cat(second).tolist()) == list(range(203))
    assert not torch.equal(torch.cat(first), torch.cat(second))
    xb, yb = batches.get(2)
    assert torch.equal(xb[0][:, 0].long(), yb[0])  # inputs and labels stay paired
    # Past CPython's cached small ints (<= 256) an epoch is still one permutation: the epoch
    # is compared by value, not identity.
    assert sorted(torch.cat(epoch_of(batches, 300, 0)).tolist()) == list(range(203))


def test_a_members_batches_depend_on_its_seed_alone(data):
    """Protects per-member batches in a group: member k sees what it would see alone; members
    with the same seed see the same examples, with another seed other ones."""
    x, y = data
    group = Batches(x, y, seeds=[1, 2, 1], batch_size=50)
    alone = {s: Batches(x, y, seeds=[s], batch_size=50) for s in (1, 2)}
    for step in (0, 3, 4, 5, 11):
        _, labels = group.get(step)
        assert torch.equal(labels[0], alone[1].get(step)[1][0])
        assert torch.equal(labels[1], alone[2].get(step)[1][0])
        assert torch.equal(labels[2], labels[0])
        assert not torch.equal(labels[0], labels[1])

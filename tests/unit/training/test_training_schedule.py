"""When a run records and evaluates (`Schedule`), and which examples each step trains on
(`Batches`): every example once an epoch, in an order set by the member's seed alone."""

from __future__ import annotations

import math

import pytest
import torch

from winit_cli.config import validate
from winit_cli.training.schedule import Batches, Schedule, planned_steps, samples_in, schedule


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


def test_the_last_step_is_compared_by_value():
    """Past CPython's cached small ints (<= 256) the last step is another int object than the
    plan's: it is still recorded and evaluated."""
    steps = int("1003")
    plan = Schedule(steps=steps, steps_per_epoch=500, record_every=400, eval_every=700)
    assert [s for s in range(995, 1004) if plan.evaluates(s)] == [1003]
    assert [s for s in range(995, 1004) if plan.records(s)] == [1003]


@pytest.mark.parametrize(("train", "data", "steps"), [
    ({"epochs": 3, "batch_size": 64}, {"subset": 1000}, 3 * 16),  # ceil(1000 / 64) = 16
    ({"epochs": 2, "batch_size": 128}, {}, 2 * 430),  # 60000 - 5000 held out: 429.7 batches
    ({"epochs": 1, "batch_size": 128}, {"subset": 70_000}, 469),  # no more than 60000 images
    ({"epochs": 5, "steps": 7}, {}, 7),
])
def test_planned_steps_by_hand(train, data, steps):
    """Protects the step count planned before any dataset is loaded (dry run, pacing): epochs x
    ceil(n / batch_size), n the subset (at most the 60000 training images) or what the
    validation split leaves, unless train.steps says."""
    assert planned_steps(validate({"train": train, "data": data})) == steps


@pytest.mark.parametrize(("steps", "n_train", "batch_size", "samples"), [
    (7, 203, 50, 203 + 2 * 50),  # an epoch of 5 batches (the last of 3), then 2 batches
    (5, 203, 50, 203),  # exactly one epoch: the short batch counts 3, not 50
    (3, 30, 50, 3 * 30),  # a batch larger than the data holds all 30, each step
])
def test_samples_in_by_hand(steps, n_train, batch_size, samples):
    assert samples_in(steps, n_train, batch_size) == samples


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


def test_one_seed_gathers_once_for_every_member(data):
    """Members that share one seed share one gather: the batch is a view repeated over the
    members (stride 0), not K copies, equal to a lone member's batch."""
    x, y = data
    xb, yb = Batches(x, y, seeds=[4, 4, 4], batch_size=50).get(1)
    alone_x, alone_y = Batches(x, y, seeds=[4], batch_size=50).get(1)
    assert xb.shape == (3, 50, 3) and xb.stride(0) == 0 and yb.stride(0) == 0
    assert torch.equal(xb[2], alone_x[0]) and torch.equal(yb[2], alone_y[0])


def test_the_batch_order_is_the_seeds_own_permutation(data):
    """Pins the order a seed gives (torch.randperm under seed + 1_000_003, a stream apart from
    the init's, seeded with the seed itself): a run's numbers depend on it, and a resumed sweep
    keeps the runs it finished, so a changed order would mix two orders' results under one
    sweep."""
    x, y = data
    batches = Batches(x, y, seeds=[7], batch_size=50)
    order = torch.randperm(203, generator=torch.Generator().manual_seed(7 + 1_000_003))
    assert torch.equal(torch.cat(epoch_of(batches, 0, 0)), order)

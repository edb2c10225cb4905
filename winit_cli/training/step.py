"""One group of members in training: the stacked model with what drives it (`setup`), and one
step of it (`run_step`): evaluate if due, forward, backward, measure if due, update.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from winit_cli.config import Config
from winit_cli.datasets import Splits
from winit_cli.diagnosis.verdict import LOSS_BLOWUP
from winit_cli.inits import calibrate_member, initialize, weight_decay
from winit_cli.measure.histograms import layer_histograms
from winit_cli.measure.probes import Probe
from winit_cli.models import StackedModel, build_model
from winit_cli.training.parametrization import multiplier, param_groups, rescale_init
from winit_cli.training.schedule import Batches, Schedule, schedule


@dataclass
class Group:
    """What trains a group of members: the stacked model and everything that drives it."""

    model: StackedModel
    optimizer: torch.optim.Optimizer
    probe: Probe
    batches: Batches
    plan: Schedule
    decay: torch.Tensor | None  # [K, 1, 1] L2 coefficients; None when every member's is 0
    x_val: torch.Tensor
    y_val: torch.Tensor
    sentinel: torch.Tensor  # whose gradient tells if a member's are finite (`step_scalars`)
    histograms: bool = False  # record.histograms: count weights and gradients at recorded steps
    first_losses: list[float] | None = None  # each member's training loss at step 0


def setup(configs: list[Config], splits: Splits, device: torch.device) -> Group:
    """Build the stacked model, initialize (and calibrate) each member, make the optimizer."""
    base = configs[0]
    x_train, y_train = splits.x_train.to(device), splits.y_train.to(device)
    torch.manual_seed(base.train.seed)
    model = build_model(base.model, splits.input_size, splits.classes, len(configs))
    model.output_multiplier = multiplier(model, base.model)
    for i, c in enumerate(configs):
        initialize(model, i, c.init.scheme, c.init.params,
                   torch.Generator().manual_seed(c.train.seed), zero_last=c.init.zero_last)
        # Data-dependent schemes (LSUV) then calibrate member i on the first examples of
        # x_train, a fixed random sample of the dataset; the others do nothing here.
        calibrate_member(model, i, c.init.scheme, c.init.params, splits.x_train)
        # model.parametrization's init factors, on what the scheme drew and calibrated
        rescale_init(model, i, c)
    model.to(device)
    model.seed_members([c.train.seed for c in configs])  # dropout: each member's own masks
    decay = torch.tensor([c.train.weight_decay + weight_decay(c.init.scheme, c.init.params)
                          for c in configs], device=device).view(-1, 1, 1)
    optimizer = make_optimizer(base, param_groups(model, base) or model.parameters())
    seeds = [c.train.seed for c in configs]
    return Group(model, optimizer, Probe(model, optimizer, coord=base.record.coord),
                 Batches(x_train, y_train, seeds, base.train.batch_size),
                 schedule(base, len(x_train)), decay if bool((decay != 0).any()) else None,
                 splits.x_val.to(device), splits.y_val.to(device), sentinel(model),
                 base.record.histograms)


@dataclass
class StepResult:
    losses: list[float]  # [K], of the batch at the step's parameters
    accuracies: list[float]  # [K]
    finite: list[bool]  # [K]: loss and gradients finite, the loss not blown up (`blown_up`)
    values: torch.Tensor | None  # [K, L, len(probe.columns)] when the step was measured
    recorded: bool  # on the recording schedule
    evaluation: tuple[list[float], list[float]] | None  # validation (losses, accuracies)
    histograms: torch.Tensor | None = None  # [K, L, 2, bins] with record.histograms, when measured


def run_step(group: Group, step: int, alive: list[bool]) -> StepResult:
    """Evaluate if due, forward and backward batch `step`, measure if due (or if a member has
    just diverged), then update unless this is the last step."""
    model, optimizer, plan = group.model, group.optimizer, group.plan
    recorded = plan.records(step)
    evaluation = evaluate(model, group.x_val, group.y_val) \
        if plan.evaluates(step) and len(group.x_val) else None
    xb, yb = group.batches.get(step)
    model.begin_step(step)  # noise (dropout) is drawn from (seed, step): a redo draws the same
    trace = group.probe.trace() if recorded else None
    losses, accs = _forward_backward(model, optimizer, xb, yb, trace)
    losses, accs, finite = step_scalars(group.sentinel, losses, accs)
    if group.first_losses is None:
        group.first_losses = list(losses)
    finite = [f and not blown_up(loss, first)
              for f, loss, first in zip(finite, losses, group.first_losses, strict=True)]
    if trace is None and any(a and not f for a, f in zip(alive, finite, strict=True)):
        # Redo this step with a trace, to find the first layer affected.
        trace = group.probe.trace()
        _forward_backward(model, optimizer, xb, yb, trace)
    will_update = step < plan.steps
    values = group.probe.before_step(trace, will_update) if trace is not None else None
    counts = layer_histograms(model) if values is not None and group.histograms else None
    if will_update:
        if group.decay is not None:
            with torch.no_grad():  # L2 after recording: the record is the data loss's gradient
                for layer in model.linears():
                    layer.weight.grad.add_(layer.weight * group.decay)
        optimizer.step()
        if values is not None:
            group.probe.after_step(values)
    return StepResult(losses, accs, finite, values, recorded, evaluation, counts)


def make_optimizer(config: Config, params) -> torch.optim.Optimizer:
    """The configured optimizer, over `params` or parameter groups with their own learning
    rates (model.parametrization, training/parametrization.py). Adam fused (one kernel per
    tensor for its four elementwise updates: 0.9 ms less a step at depth 10, width 256 on the
    CPU, equal to rounding); SGD
    with foreach (three calls over all tensors instead of three per tensor, the same bits as
    the per-tensor loop), where fused was measured no faster on the CPU and rounds differently.
    """
    t = config.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, fused=True)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum if t.optimizer == "momentum" else 0,
                           foreach=True)


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-mean cross-entropy and accuracy per member: logits [K, B, C], y [K, B] -> [K], [K]."""
    k, b, c = logits.shape
    losses = F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="none")
    return losses.view(k, b).mean(1), _accuracies(logits, y)


def _accuracies(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).float().mean(1)


@functools.lru_cache(maxsize=8)
def _mean_gradient(examples: int, batch: int, dtype: torch.dtype, device: torch.device
                   ) -> torch.Tensor:
    """What d(sum over members of each member's batch mean)/d(each example's loss) is: 1 / B,
    computed as autograd's MeanBackward computes it (ones divided by B), so the same bits."""
    return torch.ones(examples, dtype=dtype, device=device).div_(batch)


@torch.no_grad()
def evaluate(model: StackedModel, x: torch.Tensor, y: torch.Tensor, chunk: int = 2500):
    """Loss and accuracy of every member on a whole split: ([K], [K]).

    In eval mode, so that kinds with dropout or batch statistics evaluate as they should.
    """
    k = model.members
    loss_sum = torch.zeros(k, dtype=torch.float64)
    correct = torch.zeros(k, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), chunk):
            xb, yb = x[i:i + chunk], y[i:i + chunk]
            logits = model(xb.expand(k, *xb.shape))
            losses, acc = member_losses(logits, yb.expand(k, *yb.shape))
            loss_sum += losses.double().cpu() * len(xb)
            correct += acc.double().cpu() * len(xb)
    finally:
        model.train(was_training)
    return (loss_sum / len(x)).tolist(), (correct / len(x)).tolist()


def _forward_backward(model, optimizer, xb, yb, trace):
    """Forward and backward of the sum over members of each one's batch-mean cross-entropy;
    returns each member's loss and accuracy ([K], [K], no graph)."""
    optimizer.zero_grad(set_to_none=True)
    logits = model(xb, trace)
    k, b, c = logits.shape
    per_example = F.cross_entropy(logits.reshape(k * b, c), yb.reshape(k * b), reduction="none")
    # Backward from the examples' losses with the gradient the members' means and their sum
    # would pass down: the same gradients, without three autograd nodes at every step.
    per_example.backward(_mean_gradient(k * b, b, per_example.dtype, per_example.device))
    with torch.no_grad():
        return per_example.view(k, b).mean(1), _accuracies(logits, yb)


def sentinel(model: StackedModel) -> torch.Tensor:
    """The input layer's bias (its weight without one). A non-finite gradient anywhere reaches
    the input layer's (backpropagation multiplies it on down), so checking that one is enough,
    and the bias gradient is small; a weight gradient that overflows alone (dz finite, h huge)
    makes the weights non-finite, which the next step's loss shows."""
    first = model.linears()[0]
    return first.weight if first.bias is None else first.bias


def blown_up(loss: float, first: float) -> bool:
    """A finite loss past LOSS_BLOWUP times the first: the run has diverged as surely as if it
    were non-finite, and is stopped and measured at this step as one."""
    return math.isfinite(first) and first > 0 and loss > LOSS_BLOWUP * first


def step_scalars(sentinel: torch.Tensor, losses: torch.Tensor, accuracies: torch.Tensor
                 ) -> tuple[list[float], list[float], list[bool]]:
    """Each member's loss and accuracy as Python floats, and whether its loss and gradients are
    finite (see `sentinel`): one transfer off the device per step."""
    k = len(losses)
    grad = sentinel.grad.detach().reshape(k, -1)
    # NaN and inf propagate through both; amin and amax apart, not aminmax(dim=1), which was
    # measured 20-30x slower on the CPU for a weight gradient (the sentinel with bias: false).
    low, high = grad.amin(1), grad.amax(1)
    scalars = torch.cat([losses.detach(), accuracies, low, high]).tolist()
    loss, accuracy = scalars[:k], scalars[k:2 * k]
    finite = [all(map(math.isfinite, scalars[i::k])) for i in range(k)]
    return loss, accuracy, finite

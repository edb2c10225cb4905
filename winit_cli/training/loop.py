"""The training loop with probes, for K same-shape members at once (K = 1 for `winit run`).

Step s means the parameters after s updates. At a recorded step the probe measures the gradient
of batch s at those parameters, before update s; step 0 is the network at initialization. The
last step S has no update: it is recorded (and evaluated) as the trained network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from winit_cli.config import Config
from winit_cli.datasets import Splits
from winit_cli.errors import ConfigError
from winit_cli.inits import calibrate_member, weight_decay
from winit_cli.measure.probes import COLUMNS, Probe
from winit_cli.models.mlp import StackedMLP, Trace, build_mlp, initialize

# What members of one batched group must share; everything else (scheme, seed, L2) may differ.
SHARED_KEYS = ("model", "train.epochs", "train.steps", "train.batch_size", "train.optimizer",
               "train.lr", "train.momentum", "train.device", "train.flush_subnormals", "data",
               "record")


@dataclass
class MemberLog:
    """Everything measured for one member; `results` writes it, nothing here draws."""

    config: Config
    layer_steps: list[tuple[int, int]] = field(default_factory=list)  # (step, epoch)
    layer_values: list[torch.Tensor] = field(default_factory=list)  # [L, Q] float64 each
    metrics: list[dict] = field(default_factory=list)
    status: str = "running"  # running | complete | diverged | interrupted
    diverged_step: int | None = None
    diverged_layer: int | None = None
    final: dict = field(default_factory=dict)  # final train/val/test loss and accuracy


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


def schedule(config: Config, n_train: int) -> Schedule:
    per_epoch = math.ceil(n_train / config.train.batch_size)
    steps = config.train.steps or config.train.epochs * per_epoch
    return Schedule(steps, per_epoch, config.record.every, config.record.eval_every or per_epoch)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    return torch.device(name)


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
        """Batch `step` for every member: x [K, B, 784], y [K, B]."""
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


def make_optimizer(config: Config, params) -> torch.optim.Optimizer:
    t = config.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum if t.optimizer == "momentum" else 0)


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-mean cross-entropy and accuracy per member: logits [K, B, C], y [K, B] -> [K], [K]."""
    k, b, c = logits.shape
    losses = F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="none")
    correct = (logits.argmax(-1) == y).float()
    return losses.view(k, b).mean(1), correct.mean(1)


@torch.no_grad()
def evaluate(model: StackedMLP, x: torch.Tensor, y: torch.Tensor, chunk: int = 2500):
    """Loss and accuracy of every member on a whole split: ([K], [K])."""
    k = model.members
    loss_sum = torch.zeros(k, dtype=torch.float64)
    correct = torch.zeros(k, dtype=torch.float64)
    for i in range(0, len(x), chunk):
        xb, yb = x[i:i + chunk], y[i:i + chunk]
        logits = model(xb.expand(k, *xb.shape))
        losses, acc = member_losses(logits, yb.expand(k, *yb.shape))
        loss_sum += losses.double().cpu() * len(xb)
        correct += acc.double().cpu() * len(xb)
    return (loss_sum / len(x)).tolist(), (correct / len(x)).tolist()


ProgressFn = Callable[[int, int, dict], None]


def flushes_subnormals(config: Config) -> bool:
    """Whether a run of `config` flushes subnormals (only CPUs have the 10x penalty)."""
    return config.train.flush_subnormals and resolve_device(config.train.device).type == "cpu"


def train(configs: list[Config], splits: Splits, *, on_progress: ProgressFn | None = None,
          on_checkpoint: Callable[[list[MemberLog]], None] | None = None,
          checkpoint_seconds: float = 30.0, logs: list[MemberLog] | None = None
          ) -> list[MemberLog]:
    """Train every config as one member of a stacked model; they must agree on SHARED_KEYS.

    `logs` (one per config) may be passed in so the caller keeps what was measured if training
    is interrupted.
    """
    device = resolve_device(configs[0].train.device)
    flush = flushes_subnormals(configs[0])
    if flush:
        # set_flush_denormal returns only whether the CPU supports it, so restore to False.
        torch.set_flush_denormal(True)
    logs = logs if logs is not None else [MemberLog(c) for c in configs]
    try:
        _train(logs, splits, device, on_progress, on_checkpoint, checkpoint_seconds)
    except KeyboardInterrupt:
        for log in logs:
            if log.status == "running":
                log.status = "interrupted"
        raise
    finally:
        if flush:
            torch.set_flush_denormal(False)
    return logs


def _train(logs, splits, device, on_progress, on_checkpoint, checkpoint_seconds):
    base = logs[0].config
    k = len(logs)
    x_train, y_train = splits.x_train.to(device), splits.y_train.to(device)
    plan = schedule(base, len(x_train))
    torch.manual_seed(base.train.seed)
    model = build_mlp(base.model.hidden_widths(), base.model.activation, base.model.bias, k)
    for i, log in enumerate(logs):
        c = log.config
        initialize(model, i, c.init.scheme, c.init.params,
                   torch.Generator().manual_seed(c.train.seed))
        # Data-dependent schemes (LSUV) then calibrate member i on the first examples of
        # x_train, a fixed random sample of MNIST; the others do nothing here.
        calibrate_member(model, i, c.init.scheme, c.init.params, splits.x_train)
    model.to(device)
    decay = torch.tensor([c.train.weight_decay + weight_decay(c.init.scheme, c.init.params)
                          for c in (log.config for log in logs)], device=device).view(k, 1, 1)
    optimizer = make_optimizer(base, model.parameters())
    probe = Probe(model, optimizer)
    batches = Batches(x_train, y_train, [log.config.train.seed for log in logs],
                      base.train.batch_size)
    alive = torch.ones(k, dtype=torch.bool)
    has_decay = bool((decay != 0).any())
    window_loss = torch.zeros(k, dtype=torch.float64)
    window_acc = torch.zeros(k, dtype=torch.float64)
    window_n = 0
    last_checkpoint = time.perf_counter()
    started = time.perf_counter()

    for step in range(plan.steps + 1):
        on_schedule = plan.records(step)
        evaluation = evaluate(model, splits.x_val.to(device), splits.y_val.to(device)) \
            if plan.evaluates(step) and len(splits.x_val) else None
        xb, yb = batches.get(step)
        trace = Trace() if on_schedule else None
        losses, accs = _forward_backward(model, optimizer, xb, yb, trace)
        finite = _finite_values(losses) & finite_gradients(model)
        newly_diverged = alive & ~finite
        if newly_diverged.any() and trace is None:
            # Redo this step with a trace, to find the first layer affected.
            trace = Trace()
            losses, accs = _forward_backward(model, optimizer, xb, yb, trace)
        will_update = step < plan.steps
        values = probe.before_step(trace, will_update) if trace is not None else None
        if will_update:
            if has_decay:
                with torch.no_grad():  # L2 after recording: the record is the data loss's gradient
                    for w in model.weights:
                        w.grad.add_(w * decay)
            optimizer.step()
            if values is not None:
                probe.after_step(values)
        window_loss += losses.detach().cpu()  # a diverged member's NaN is never read
        window_acc += accs.detach().cpu()
        window_n += 1

        for i, log in enumerate(logs):
            if not alive[i]:
                continue
            # A member's rows do not depend on its neighbours: a redo for another member's
            # divergence adds no row here.
            if on_schedule or newly_diverged[i]:
                log.layer_steps.append((step, plan.epoch(step)))
                log.layer_values.append(values[i].cpu())
            if newly_diverged[i]:
                log.status, log.diverged_step = "diverged", step
                log.diverged_layer = first_nonfinite_layer(values[i])
            if on_schedule or evaluation or newly_diverged[i]:
                row = {"step": step, "epoch": plan.epoch(step),
                       "train_loss": float(window_loss[i]) / window_n,
                       "train_accuracy": float(window_acc[i]) / window_n}
                if evaluation:
                    row["val_loss"], row["val_accuracy"] = evaluation[0][i], evaluation[1][i]
                log.metrics.append(row)
        if on_schedule or evaluation:
            window_loss.zero_()
            window_acc.zero_()
            window_n = 0
        alive &= finite
        if on_progress is not None and (step % 20 == 0 or on_schedule or step == plan.steps):
            on_progress(step, plan.steps, {"loss": _mean_alive(losses, alive),
                                           "elapsed": time.perf_counter() - started})
        if not alive.any():
            break
        if on_checkpoint and time.perf_counter() - last_checkpoint > checkpoint_seconds:
            on_checkpoint(logs)
            last_checkpoint = time.perf_counter()

    elapsed = time.perf_counter() - started
    test = evaluate(model, splits.x_test.to(device), splits.y_test.to(device))
    for i, log in enumerate(logs):
        last = log.metrics[-1] if log.metrics else {}
        steps = last.get("step", 0)
        # A diverged member's weights are non-finite: it has no accuracy to report.
        measured = log.status != "diverged"
        log.final = {
            "train_loss": last.get("train_loss") if measured else None,
            "train_accuracy": last.get("train_accuracy") if measured else None,
            "train_window_steps": plan.record_every,
            "val_loss": last.get("val_loss") if measured else None,
            "val_accuracy": last.get("val_accuracy") if measured else None,
            "test_loss": test[0][i] if measured else None,
            "test_accuracy": test[1][i] if measured else None,
            "steps": steps, "group_size": k, "group_seconds": elapsed,
            # Members of a group train together: each is charged an equal share of the time.
            "train_seconds": elapsed / k,
            "samples_per_second": steps * base.train.batch_size * k / elapsed,
        }
        if log.status == "running":
            log.status = "complete"
    return logs


def _forward_backward(model, optimizer, xb, yb, trace):
    optimizer.zero_grad(set_to_none=True)
    logits = model(xb, trace)
    losses, accs = member_losses(logits, yb)
    losses.sum().backward()
    return losses, accs


def finite_gradients(model: StackedMLP) -> torch.Tensor:
    """Per member ([K], CPU): are the gradients finite? A non-finite gradient anywhere reaches
    the input layer's (backpropagation multiplies it on down), so checking that one is enough,
    and its bias gradient is tiny; a weight gradient that overflows alone (dz finite, h huge)
    makes the weights non-finite, which the next step's loss shows."""
    g = model.biases[0].grad if model.biases is not None else model.weights[0].grad
    return _finite_values(g.detach().flatten(1).abs().amax(dim=1))  # amax propagates NaN


def _finite_values(values: torch.Tensor) -> torch.Tensor:
    """[K] bool on the CPU; for a handful of values, Python's isfinite is cheaper than torch's."""
    return torch.tensor([math.isfinite(v) for v in values.detach().tolist()], dtype=torch.bool)


def first_nonfinite_layer(values: torch.Tensor) -> int | None:
    """1-based index of the first layer affected by non-finite values, in the order they arise.

    The forward pass comes first: the lowest layer with non-finite weights or activations. If
    the forward pass is finite, the overflow happened in the backward pass, which runs from the
    output down and grows towards the input: the highest layer with a non-finite gradient (every
    layer below it inherits the NaN).
    """
    forward = ("weight_norm", "act_mean", "act_std")
    bad = ~torch.isfinite(values[:, [COLUMNS.index(c) for c in forward]]).all(dim=1)
    if bad.any():
        return int(bad.nonzero()[0]) + 1
    backward = ("weight_grad_norm", "act_grad_norm")
    bad = ~torch.isfinite(values[:, [COLUMNS.index(c) for c in backward]]).all(dim=1)
    return int(bad.nonzero()[-1]) + 1 if bad.any() else None


def _mean_alive(losses: torch.Tensor, alive: torch.Tensor) -> float:
    live = losses.detach().cpu()[alive]
    return float(live.mean()) if len(live) else float("nan")

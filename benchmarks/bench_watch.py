"""Overhead of `winit.watch` on a user's own training loop, against the same loop without it and
against the tools a user would pick instead: Cockpit and Lightning's `grad_norm`.

    .venv/bin/python benchmarks/bench_watch.py [--steps 200] [--repeats 5] [--device cpu|cuda]
                                     [--models mlp,cnn] [--data-dir DIR] [--threads N] [--no-others]
                                     [--docs]

One loop (forward, cross-entropy, backward, optimizer step; no .item(), so nothing waits for a
GPU), several ways: plain, with `winit.watch` recording every 10 steps and every step, and (on
the MLP; `bash scripts/setup.sh --bench`) Cockpit's "economy" configuration at the same intervals
(Cockpit 1.0 through BackPACK: per-example gradients for its batch-size tests), Cockpit
restricted to the per-parameter quantities winit also records (GradNorm, UpdateSize, Distance),
every step, and Lightning's `grad_norm` utility every step. Models: the MLP of bench_train.py
(10 Linear layers of width 256, ReLU, batch 128) and the small CNN of examples/cnn_mnist.py (two
conv-BatchNorm-ReLU-pool blocks and two Linear layers, batch 64), both on MNIST with SGD and
momentum. Only the steps are timed: `watch()` and `close()` (which writes the run folder once)
are not.

Trials alternate between the contenders in one process, in an order that rotates each trial,
and the medians are compared: ratio = time with the tool / time without (1.00 is free), and
its inverse, the throughput as a fraction of the plain loop's. Machines are shared and noisy;
only ratios within one run mean something. `--docs` rewrites the docs' table for this device
(between `<!-- bench_watch:DEVICE:start -->` and `<!-- bench_watch:DEVICE:end -->`, in
docs/your-own-loop.md), so the figures there come from this script.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import winit_cli as winit
from winit_cli.datasets import load_dataset, make_splits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from docblocks import rewrite_block  # noqa: E402  scripts/docblocks.py: the docs' blocks

Step = Callable[[torch.Tensor, torch.Tensor, int], None]


@dataclass(frozen=True)
class Contender:
    """One way to run the loop. `make(model, optimizer, out)` -> (step(x, y, i), close)."""

    label: str
    records: str  # what it records per layer, in words
    make: Callable[[nn.Module, torch.optim.Optimizer, Path], tuple[Step, Callable[[], None]]]
    needs: str | None = None  # the module it needs; skipped without it
    mlp_only: bool = False  # BackPACK's per-example gradients: Linear/ReLU nets only here
    # Timed on the first this-many steps only (a whole number of its recording intervals):
    # Cockpit's economy takes about 15 s a step here, so the full run would take an hour.
    max_steps: int | None = None


def _plain_step(model, optimizer, after_backward=None) -> Step:
    def step(x, y, i):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if after_backward is not None:
            after_backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def plain(model, optimizer, out):
    return _plain_step(model, optimizer), lambda: None


def watched(every: int):
    def make(model, optimizer, out):
        probe = winit.watch(model, optimizer, every=every, out=out)
        return _plain_step(model, optimizer, probe.step), probe.close
    return make


def lightning_grad_norm(model, optimizer, out):
    from lightning.pytorch.utilities import grad_norm

    kept = []  # the dict of tensors a LightningModule would log
    return _plain_step(model, optimizer, lambda loss: kept.append(grad_norm(model, 2))), \
        kept.clear


def cockpit(quantities: str, every: int):
    """Cockpit's quantities (`economy`, or the three winit also records) every `every` steps,
    driven as its documentation's example loop drives them."""
    def make(model, optimizer, out):
        from backpack import extend
        from cockpit import Cockpit
        from cockpit import quantities as q
        from cockpit.utils import configuration, schedules

        schedule = schedules.linear(interval=every)
        chosen = configuration.configuration("economy", track_schedule=schedule) \
            if quantities == "economy" else \
            [cls(track_schedule=schedule) for cls in (q.GradNorm, q.UpdateSize, q.Distance)]
        model = extend(model)
        loss_fn = extend(nn.CrossEntropyLoss())
        individual = nn.CrossEntropyLoss(reduction="none")
        tracker = Cockpit(model.parameters(), quantities=chosen)

        def step(x, y, i):
            logits = model(x)
            loss = loss_fn(logits, y)
            info = {"batch_size": len(x), "individual_losses": individual(logits, y),
                    "loss": loss, "optimizer": optimizer}
            with tracker(i, info=info):
                loss.backward(create_graph=tracker.create_graph(i))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step, lambda: None
    return make


WINIT_RECORDS = ("11 per layer: ||dL/dW||, ||dL/db||, ||dL/dz||, ||W||, mean and std of h, dead "
                 "and saturated fractions, mean and max |dL/dW|, ||dW|| / ||W||")
COCKPIT_ECONOMY = ("3 per parameter (||g||, ||update||, ||theta - theta_0||); network-wide: "
                   "loss, alpha, a gradient histogram, norm, inner-product and orthogonality "
                   "tests (per-example gradients)")
CONTENDERS = [
    Contender("plain loop", "nothing", plain),
    Contender("winit.watch, every 10 steps", WINIT_RECORDS, watched(10)),
    Contender("winit.watch, every step", WINIT_RECORDS, watched(1)),
    Contender("Cockpit economy, every 10 steps", COCKPIT_ECONOMY, cockpit("economy", 10),
              "cockpit", mlp_only=True, max_steps=20),
    Contender("Cockpit economy, every step", COCKPIT_ECONOMY, cockpit("economy", 1),
              "cockpit", mlp_only=True, max_steps=4),
    Contender("Cockpit GradNorm + UpdateSize + Distance, every step",
              "3 per parameter: ||g||, ||update||, ||theta - theta_0||",
              cockpit("winit's", 1), "cockpit", mlp_only=True),
    Contender("Lightning grad_norm, every step", "1 per parameter: ||g|| (and the total)",
              lightning_grad_norm, "lightning"),
]


def mlp() -> nn.Module:
    sizes = [784] + [256] * 9 + [10]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def cnn() -> nn.Module:
    """The network of examples/cnn_mnist.py."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {"mlp": (mlp, 128), "cnn": (cnn, 64)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def trial(start: nn.Module, x: torch.Tensor, y: torch.Tensor, batches: list[torch.Tensor],
          contender: Contender, out: Path) -> float:
    """Seconds per step of one contender, from the same initial weights as the others."""
    batches = batches[:contender.max_steps]
    model = copy.deepcopy(start)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step, close = contender.make(model, optimizer, out)
    sync(x.device)
    began = time.perf_counter()
    for i, idx in enumerate(batches):
        step(x[idx], y[idx], i)
    sync(x.device)
    elapsed = time.perf_counter() - began
    close()
    return elapsed / len(batches)


def available(name: str, others: bool) -> list[Contender]:
    chosen = [c for c in CONTENDERS if c.needs is None]
    if not others:
        return chosen
    for c in CONTENDERS:
        if c.needs is None or (c.mlp_only and name != "mlp"):
            continue
        if importlib.util.find_spec(c.needs) is None:
            print(f"  {c.label}: skipped ({c.needs} is not installed: bash scripts/setup.sh "
                  "--bench)", flush=True)
            continue
        chosen.append(c)
    return chosen


def bench(name: str, x: torch.Tensor, y: torch.Tensor, steps: int, repeats: int,
          out: Path, others: bool) -> dict[str, list[float]]:
    build, batch = MODELS[name]
    torch.manual_seed(0)
    start = build().to(x.device)
    if name == "mlp":
        x = x.flatten(1)
    order = torch.randperm(len(x), device=x.device)
    batches = [order[(i * batch) % (len(x) - batch):][:batch] for i in range(steps)]
    contenders = available(name, others)
    times: dict[str, list[float]] = {c.label: [] for c in contenders}
    for c in contenders:  # warm-up: allocator, kernels, caches, each tool's imports
        trial(start, x, y, batches[:10], c, out)
    n = len(contenders)
    for r in range(repeats):
        for c in contenders[r % n:] + contenders[:r % n]:
            times[c.label].append(trial(start, x, y, batches, c, out))
        print(f"  [{name} {r + 1}/{repeats}] " + ", ".join(
            f"{label} {1e3 * t[-1]:.1f} ms/step" for label, t in times.items()), flush=True)
    return times


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads != 1 else ''}"


def table(results: dict[str, dict[str, list[float]]], device: torch.device, steps: int,
          repeats: int, load_at_start: float) -> str:
    """The docs' table: medians, with the range of the per-trial ratios in brackets."""
    lines = [f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_watch.py` on "
             f"{describe(device)} (load average {load_at_start:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end), medians of {repeats} "
             f"alternating trials of {steps} steps (Cockpit economy: of its first 20 steps "
             "every 10, 4 every step), per-trial ratios in brackets; throughput is the plain "
             "loop's time per step over the contender's:", ""]
    records = {c.label: c.records for c in CONTENDERS}
    for name, times in results.items():
        base = statistics.median(times["plain loop"])
        lines += [f"{MODEL_NAMES[name]}, plain loop {1e3 * base:.2f} ms/step:", "",
                  "| contender | time / plain loop | throughput | records |", "|---|---|---|---|"]
        for label, t in times.items():
            if label == "plain loop":
                continue
            ratios = sorted(a / b for a, b in zip(t, times["plain loop"], strict=True))
            median = statistics.median(t) / base
            lines.append(f"| {label} | {median:.2f}x ({ratios[0]:.2f} - {ratios[-1]:.2f}) | "
                         f"{1 / median:.3f} | {records[label]} |")
        lines.append("")
    return "\n".join(lines).rstrip()


MODEL_NAMES = {"mlp": "MLP, 10 Linear layers of 256, batch 128",
               "cnn": "small CNN of the example, batch 64"}


def write_docs(device: torch.device, text: str) -> Path:
    """The docs' table for this device rewritten, in the page that holds its markers."""
    start, end = (f"<!-- bench_watch:{device.type}:{m} -->" for m in ("start", "end"))
    return rewrite_block(start, end, text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's own; on a busy machine 1, since "
                   "threads waiting for each other measure the neighbours, not the tools)")
    p.add_argument("--no-others", action="store_true",
                   help="winit.watch against the plain loop only (no Cockpit, no Lightning)")
    p.add_argument("--docs", action="store_true",
                   help="rewrite the docs' table for the device (docs/your-own-loop.md)")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = make_splits(load_dataset("mnist", args.data_dir), val_size=0, subset=20_000)
    x = splits.x_train.view(-1, 1, 28, 28).to(device)
    y = splits.y_train.to(device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps x {args.repeats} trials per contender", flush=True)
    results, load_at_start = {}, os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out:
        for name in args.models.split(","):
            print(f"{name} ...", flush=True)
            results[name] = bench(name, x, y, args.steps, args.repeats, Path(out),
                                  not args.no_others)
    text = table(results, device, args.steps, args.repeats, load_at_start)
    print("\n" + text)
    if args.docs:
        print(f"\nrewrote the {device.type} table of {write_docs(device, text)}")


if __name__ == "__main__":
    main()

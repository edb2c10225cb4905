"""Overhead of `winit.watch` on a user's own training loop, against the same loop without it.

    .venv/bin/python benchmarks/bench_watch.py [--steps 200] [--repeats 5] [--device cpu|cuda]
                                     [--models mlp,cnn] [--data-dir DIR] [--docs]

One loop (forward, cross-entropy, backward, optimizer step; no .item(), so nothing waits for a
GPU), three ways: plain, with the probe recording every 10 steps, and every step. Models: the
MLP of bench_train.py (10 Linear layers of width 256, ReLU, batch 128) and the small CNN of
examples/cnn_mnist.py (two conv-BatchNorm-ReLU-pool blocks and two Linear layers, batch 64),
both on MNIST with SGD and momentum. Only the steps are timed: `watch()` and `close()` (which
writes the run folder once) are not.

Trials alternate between the three contenders in one process, in an order that rotates each
trial, and the medians are compared: ratio = time with the probe / time without (1.00 is free).
Machines are shared and noisy; only ratios within one run mean something. `--docs` rewrites
the docs' table for this device (between `<!-- bench_watch:DEVICE:start -->` and
`<!-- bench_watch:DEVICE:end -->`, in docs/your-own-loop.md), so the figures there come from
this script.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import winit_cli as winit
from winit_cli.datasets import load_dataset, make_splits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from docblocks import rewrite_block  # noqa: E402  scripts/docblocks.py: the docs' blocks

CONTENDERS = {"plain": None, "every 10": 10, "every 1": 1}


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
          every: int | None, out: Path) -> float:
    """Seconds for the steps of one contender, from the same initial weights as the others."""
    model = copy.deepcopy(start)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    probe = winit.watch(model, optimizer, every=every, out=out) if every else None
    sync(x.device)
    began = time.perf_counter()
    for idx in batches:
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        if probe is not None:
            probe.step(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(x.device)
    elapsed = time.perf_counter() - began
    if probe is not None:
        probe.close()
    return elapsed


def bench(name: str, x: torch.Tensor, y: torch.Tensor, steps: int, repeats: int,
          out: Path) -> dict[str, list[float]]:
    build, batch = MODELS[name]
    torch.manual_seed(0)
    start = build().to(x.device)
    if name == "mlp":
        x = x.flatten(1)
    order = torch.randperm(len(x), device=x.device)
    batches = [order[(i * batch) % (len(x) - batch):][:batch] for i in range(steps)]
    times: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    names = list(CONTENDERS)
    trial(start, x, y, batches[:10], None, out)  # warm-up: allocator, kernels, caches
    for r in range(repeats):
        for c in names[r % 3:] + names[:r % 3]:
            times[c].append(trial(start, x, y, batches, CONTENDERS[c], out))
    return times


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def table(results: dict[str, dict[str, list[float]]], device: torch.device, steps: int,
          repeats: int) -> str:
    """The README's table: medians, with the range of the per-trial ratios in brackets."""
    lines = [f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_watch.py` on "
             f"{describe(device)} (load average {os.getloadavg()[0]:.1f}), medians of {repeats} "
             f"trials of {steps} steps, per-trial ratios in brackets:", "",
             "| model | device | plain loop | every 10 steps | every step |",
             "|---|---|---|---|---|"]
    for name, times in results.items():
        base = statistics.median(times["plain"])
        cells = []
        for c in list(CONTENDERS)[1:]:
            ratios = sorted(t / b for t, b in zip(times[c], times["plain"], strict=True))
            cells.append(f"{statistics.median(times[c]) / base:.2f}x "
                         f"({ratios[0]:.2f} - {ratios[-1]:.2f})")
        lines.append(f"| {MODEL_NAMES[name]} | {describe(device)} | "
                     f"{1e3 * base / steps:.2f} ms/step | {' | '.join(cells)} |")
    return "\n".join(lines)


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
    p.add_argument("--docs", action="store_true",
                   help="rewrite the docs' table for the device (docs/your-own-loop.md)")
    args = p.parse_args()
    device = torch.device(args.device)
    splits = make_splits(load_dataset("mnist", args.data_dir), val_size=0, subset=20_000)
    x = splits.x_train.view(-1, 1, 28, 28).to(device)
    y = splits.y_train.to(device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps x {args.repeats} trials per contender", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for name in args.models.split(","):
            print(f"{name} ...", flush=True)
            results[name] = bench(name, x, y, args.steps, args.repeats, Path(out))
    text = table(results, device, args.steps, args.repeats)
    print("\n" + text)
    if args.docs:
        print(f"\nrewrote the {device.type} table of {write_docs(device, text)}")


if __name__ == "__main__":
    main()

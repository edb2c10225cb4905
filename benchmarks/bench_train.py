"""Throughput of winit's training against a plain PyTorch loop, measured in the same run.

    python benchmarks/bench_train.py [--steps 300] [--repeats 3]

1. One MLP (depth 10, width 256, batch 128, SGD with momentum) trained by a hand-written loop
   (nn.Sequential, in-memory tensors sliced by index) and by winit's loop with the probes
   recording every 10 steps and every step. Targets: >= 0.90 and >= 0.75 of the plain loop.
2. Six init schemes on that network: winit's batched training of the six as one stacked model
   against six sequential single runs. Target: >= 1.5x.

Machines are shared and noisy: trials alternate between the contenders and the medians are
compared, and only ratios are meaningful.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.app.experiment import load_splits
from winit_cli.config import validate
from winit_cli.training.loop import train

DEPTH, WIDTH, BATCH = 10, 256, 128
SCHEMES = ("normal", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "torch_default")


def config(steps: int, every: int, scheme: str = "he_normal"):
    return validate({
        "model": {"depth": DEPTH, "width": WIDTH, "activation": "relu"},
        "init": {"scheme": scheme},
        "train": {"steps": steps, "batch_size": BATCH, "optimizer": "momentum", "lr": 0.01},
        "record": {"every": every},
    })


def plain_loop(splits, steps: int) -> float:
    """The baseline: what a user would write by hand, with the same final evaluations."""
    torch.manual_seed(0)
    sizes = [784] + [WIDTH] * (DEPTH - 1) + [10]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < DEPTH - 1:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = splits.x_train, splits.y_train
    per_epoch = (len(x) + BATCH - 1) // BATCH
    start = time.perf_counter()
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(x))
        idx = order[(step % per_epoch) * BATCH:(step % per_epoch + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        loss.item()
    with torch.no_grad():
        for xs, ys in ((splits.x_val, splits.y_val), (splits.x_test, splits.y_test)):
            (model(xs).argmax(1) == ys).float().mean().item()
    return time.perf_counter() - start


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    splits = load_splits(config(1, 1))
    torch.set_flush_denormal(True)  # winit flushes by default; give the baseline the same
    s = args.steps
    contenders = {
        "plain loop": lambda: plain_loop(splits, s),
        "winit, record every 10": lambda: timed(lambda: train([config(s, 10)], splits)),
        "winit, record every step": lambda: timed(lambda: train([config(s, 1)], splits)),
        "6 schemes, sequential": lambda: timed(
            lambda: [train([config(s, 10, k)], splits) for k in SCHEMES]),
        "6 schemes, batched": lambda: timed(
            lambda: train([config(s, 10, k) for k in SCHEMES], splits)),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    plain_loop(splits, 20)  # warm-up
    for _ in range(args.repeats):
        for name, run in contenders.items():
            times[name].append(run())
    t = {name: statistics.median(v) for name, v in times.items()}
    print(f"{args.steps} steps, depth {DEPTH}, width {WIDTH}, batch {BATCH}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for name, seconds in t.items():
        print(f"  {name:28s} {seconds:7.2f} s")
    print(f"winit every 10 / plain:   {t['plain loop'] / t['winit, record every 10']:.2f}x "
          "throughput (target >= 0.90)")
    print(f"winit every step / plain: {t['plain loop'] / t['winit, record every step']:.2f}x "
          "throughput (target >= 0.75)")
    print(f"batched / sequential:     "
          f"{t['6 schemes, sequential'] / t['6 schemes, batched']:.2f}x (target >= 1.5)")


if __name__ == "__main__":
    main()

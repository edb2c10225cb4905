"""A small CNN trained on MNIST in a plain PyTorch loop, with winit's probe watching it.

    python examples/cnn_mnist.py                       # 300 steps, into results/
    python examples/cnn_mnist.py --steps 100 --tensorboard --out /tmp/results

Then `winit report results/` reads the run like any CLI run, and with --tensorboard,
`tensorboard --logdir results` shows the per-layer curves (also while it trains).

The loop is an ordinary one; the probe adds three lines: `winit.watch(...)` before it,
`probe.step(loss)` between backward and the optimizer's step, `probe.close()` after it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import winit_cli as winit
from winit_cli.datasets import load_dataset, make_splits


class SmallCNN(nn.Module):
    """Two conv blocks (conv, BatchNorm, ReLU, max-pool), then a two-layer classifier."""

    def __init__(self, channels: int = 16, hidden: int = 64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels),
            nn.ReLU(), nn.MaxPool2d(2),  # 14 -> 7
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * channels * 7 * 7, hidden), nn.ReLU(),
            nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 1, 28, 28]
        return self.classifier(self.features(x))


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--every", type=int, default=10, help="record every N steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding MNIST's four files (else winit's usual places)")
    parser.add_argument("--test-examples", type=int, default=10_000,
                        help="test examples to evaluate at the end")
    parser.add_argument("--tensorboard", action="store_true", help="also write event files")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Test loss and accuracy, in eval mode (BatchNorm's running statistics); under no_grad,
    so the probe records none of it."""
    model.eval()
    loss = correct = 0.0
    for i in range(0, len(x), 1000):
        logits = model(x[i:i + 1000])
        loss += float(F.cross_entropy(logits, y[i:i + 1000], reduction="sum"))
        correct += float((logits.argmax(1) == y[i:i + 1000]).sum())
    model.train()
    return loss / len(x), correct / len(x)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    torch.manual_seed(args.seed)
    splits = make_splits(load_dataset("mnist", args.data_dir), val_size=0)
    device = torch.device(args.device)
    x = splits.x_train.view(-1, 1, 28, 28).to(device)
    y = splits.y_train.to(device)
    model = SmallCNN().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    probe = winit.watch(model, optimizer, every=args.every, out=args.out, name="cnn_mnist",
                        dataset="mnist", seed=args.seed, tensorboard=args.tensorboard)
    order = torch.randperm(len(x), device=device)
    for step in range(args.steps):
        start = step * args.batch_size % (len(x) - args.batch_size)
        batch = order[start:start + args.batch_size]
        loss = F.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        probe.step(loss)  # after the backward pass, before the optimizer's step
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    n = args.test_examples
    test_x = splits.x_test[:n].view(-1, 1, 28, 28).to(device)
    test_loss, test_accuracy = evaluate(model, test_x, splits.y_test[:n].to(device))
    run = probe.close(test_loss=test_loss, test_accuracy=test_accuracy)
    print(f"verdict: {run.verdict_text}")
    print(f"test accuracy: {test_accuracy:.4f} ({len(test_x)} examples)")
    print(f"run folder: {run.dir}")


if __name__ == "__main__":
    main()

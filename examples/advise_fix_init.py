"""A 40-layer ReLU MLP at PyTorch's default init: winit.advise says its gradients vanish,
winit.fix_init rescales it (LSUV-style) until they don't, and it then trains on MNIST where the
same net left at the default init does not.

    python examples/advise_fix_init.py                     # 1 epoch each, SGD lr 0.01 m 0.9
    python examples/advise_fix_init.py --epochs 1 --depth 40 --width 256 --data-dir DIR

Both nets start from the same seed; fix_init sees one batch of 512 training images. Prints
both advice tables and the test accuracy of each net after training.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

import winit_cli as winit
from winit_cli.datasets import load_dataset, make_splits


def relu_mlp(depth: int, width: int, seed: int) -> nn.Sequential:
    """`depth` Linear layers with ReLU between them, at torch's default init (seeded)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(784, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def train(model: nn.Module, splits, epochs: int, lr: float, batch: int, seed: int) -> float:
    """Plain SGD with momentum; the test accuracy after `epochs`."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(splits.x_train), generator=generator)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(splits.x_train[idx]), splits.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(splits.x_test[i:i + 2048]).argmax(1)
                               for i in range(0, len(splits.x_test), 2048)])
    return float((predicted == splits.y_test).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=40)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=None, help="training examples (all)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # the default-init net's signals are subnormal: keep it fast
    splits = make_splits(load_dataset("mnist", args.data_dir), subset=args.subset)
    batch = splits.x_train[:512]

    default = relu_mlp(args.depth, args.width, args.seed)
    print(winit.advise(default, batch))
    fixed = relu_mlp(args.depth, args.width, args.seed)
    print(winit.fix_init(fixed, batch))

    results = {}
    for name, model in (("torch default init", default), ("after winit.fix_init", fixed)):
        start = time.perf_counter()
        results[name] = train(model, splits, args.epochs, args.lr, args.batch, args.seed)
        print(f"{name}: test accuracy {results[name]:.2%} after {args.epochs} epoch(s) of SGD "
              f"(lr {args.lr}, momentum 0.9, batch {args.batch}; "
              f"{time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

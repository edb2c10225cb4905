"""The plain PyTorch script that `bench_cli.py` times as a whole process against `winit run`:
the same steps as configs/quickstart.yaml with train.steps set, written as a user would.

    python benchmarks/plain_mnist.py DATA_DIR [--steps 400] [--threads N]

MNIST's four official .gz files from DATA_DIR (or DATA_DIR/mnist), scaled to [0, 1] and
standardized with the training images' mean and std, 5,000 training images held out for
validation; 10 Linear layers of width 256 with ReLU between, He normal weights and zero biases,
SGD with momentum 0.9 and lr 0.01, batch 128, reshuffled every epoch; then the accuracy on the
validation and test sets. torch's default thread count unless --threads; nothing written.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DEPTH, WIDTH, BATCH, VAL = 10, 256, 128, 5000


def read_idx(path: Path) -> torch.Tensor:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def load(folder: Path) -> tuple[torch.Tensor, ...]:
    if (folder / "mnist").is_dir():
        folder = folder / "mnist"
    train_x = read_idx(folder / "train-images-idx3-ubyte.gz").reshape(-1, 784).float() / 255
    train_y = read_idx(folder / "train-labels-idx1-ubyte.gz").long()
    test_x = read_idx(folder / "t10k-images-idx3-ubyte.gz").reshape(-1, 784).float() / 255
    test_y = read_idx(folder / "t10k-labels-idx1-ubyte.gz").long()
    mean, std = train_x.mean(), train_x.std()
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))
    val, train = order[:VAL], order[VAL:]
    return train_x[train], train_y[train], train_x[val], train_y[val], test_x, test_y


def model() -> nn.Module:
    sizes = [784] + [WIDTH] * (DEPTH - 1) + [10]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < DEPTH - 1 else [])
    net = nn.Sequential(*layers)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y, x_val, y_val, x_test, y_test = load(args.data_dir)
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    per_epoch = (len(x) + BATCH - 1) // BATCH
    for step in range(args.steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(x))
        idx = order[(step % per_epoch) * BATCH:(step % per_epoch + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
        loss.item()
    with torch.no_grad():
        val = (net(x_val).argmax(1) == y_val).float().mean().item()
        test = (net(x_test).argmax(1) == y_test).float().mean().item()
    print(f"val {val:.4f} test {test:.4f}")


if __name__ == "__main__":
    main()

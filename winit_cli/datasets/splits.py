"""Training, validation and test splits of a dataset: float32 inputs normalized with the
dataset's own mean and std, int64 labels, and the indices that make the split checkable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from winit_cli.datasets.raw import RawDataset
from winit_cli.errors import DataError


@dataclass(frozen=True)
class Splits:
    """Float32 inputs normalized with the dataset's training mean/std; int64 labels.

    `train_idx` / `val_idx` index `RawDataset.train_images`: they make the split reproducible and
    checkable (disjoint by construction, recorded with a run if wanted).
    """

    x_train: torch.Tensor  # [n_train, input_size] float32
    y_train: torch.Tensor  # [n_train] int64
    x_val: torch.Tensor  # [val_size, input_size] float32
    y_val: torch.Tensor  # [val_size] int64
    x_test: torch.Tensor  # [n_test, input_size] float32
    y_test: torch.Tensor  # [n_test] int64
    train_idx: torch.Tensor  # [n_train] int64
    val_idx: torch.Tensor  # [val_size] int64
    dataset: str = "mnist"  # the registry name
    classes: int = 10
    source: Path | None = None  # the folder the files were read from

    @property
    def input_size(self) -> int:
        return self.x_train.shape[1]


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(x / 255 - mean) / std, computed in place: the training set is 190 MB as float32."""
    return images.float().div_(255.0).sub_(mean).div_(std)


def make_splits(raw: RawDataset, val_size: int = 5000, subset: int | None = None,
                seed: int = 0) -> Splits:
    """Split off `val_size` validation examples from the training set; test is the official set.

    The split is a seeded random permutation (its own `torch.Generator`, so it does not disturb
    or depend on the global RNG). `subset`, if given, caps the number of training examples left
    after the validation split, for quick runs; it never touches validation or test.
    """
    n = raw.train_images.shape[0]
    if val_size < 0:
        raise DataError(f"Validation size must be 0 or more, got {val_size}.")
    if subset is not None and subset < 1:
        raise DataError(f"Training subset must be at least 1 example, got {subset}.")
    if val_size + (subset or 1) > n:
        raise DataError(f"Validation size {val_size} plus training subset {subset or 1} exceeds "
                        f"the {n} training examples; lower one of them.")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    val_idx, train_idx = order[:val_size], order[val_size:]
    if subset is not None:
        train_idx = train_idx[:subset]
    spec = raw.spec
    return Splits(
        x_train=normalize(raw.train_images[train_idx], spec.mean, spec.std),
        y_train=raw.train_labels[train_idx],
        x_val=normalize(raw.train_images[val_idx], spec.mean, spec.std),
        y_val=raw.train_labels[val_idx],
        x_test=normalize(raw.test_images, spec.mean, spec.std),
        y_test=raw.test_labels,
        train_idx=train_idx,
        val_idx=val_idx,
        dataset=spec.name,
        classes=spec.classes,
        source=raw.source,
    )

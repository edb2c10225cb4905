"""Train/validation/test splits on small synthetic datasets, checked against index sets built
by hand and against torch's own seeded `randperm`: which examples a run trains on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from winit_cli.config import DataConfig
from winit_cli.datasets import get_dataset
from winit_cli.datasets.raw import RawDataset
from winit_cli.datasets.splits import Splits, make_splits
from winit_cli.errors import DataError

# Rows and columns differ so that a split counting columns instead of examples shows.
COLUMNS = 3


def synthetic_raw(n_train: int, n_test: int = 4) -> RawDataset:
    """Training row i holds pixels (i, i+1, i+2) mod 256 and label i mod 10: a row's content
    says which training example it is. Normalization: mean 0.25, std 0.5."""
    spec = dataclasses.replace(get_dataset("mnist"), name="synthetic", classes=7, mean=0.25,
                               std=0.5)
    rows = torch.arange(n_train).unsqueeze(1) + torch.arange(COLUMNS)
    test_rows = 200 + torch.arange(n_test).unsqueeze(1) + torch.arange(COLUMNS)
    return RawDataset(spec=spec, train_images=(rows % 256).to(torch.uint8),
                      train_labels=torch.arange(n_train) % 10,
                      test_images=test_rows.to(torch.uint8), test_labels=torch.arange(n_test) % 10,
                      source=Path("/nowhere/synthetic"))


def by_hand(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (images.double() / 255.0 - mean) / std


def test_split_is_torchs_seeded_permutation_cut_at_val_size() -> None:
    """Validation is the first val_size entries of randperm(n) under Generator().manual_seed(seed),
    training the rest; rows, labels and normalization follow those indices."""
    raw = synthetic_raw(12)
    s = make_splits(raw, val_size=4, seed=3)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s.val_idx, order[:4]) and torch.equal(s.train_idx, order[4:])
    expected_train = by_hand((s.train_idx.unsqueeze(1) + torch.arange(COLUMNS)) % 256, 0.25, 0.5)
    assert s.x_train.dtype == torch.float32 and s.x_train.shape == (8, COLUMNS)
    assert torch.allclose(s.x_train.double(), expected_train, atol=1e-6)
    assert torch.equal(s.y_train, s.train_idx % 10) and torch.equal(s.y_val, s.val_idx % 10)
    assert sorted(torch.cat([s.train_idx, s.val_idx]).tolist()) == list(range(12))
    assert s.input_size == COLUMNS


def test_test_set_is_the_official_one_untouched_by_the_split() -> None:
    """Test is the whole official test set, in order, normalized with the training mean/std."""
    raw = synthetic_raw(12, n_test=5)
    s = make_splits(raw, val_size=2, seed=0)
    expected = by_hand(200 + torch.arange(5).unsqueeze(1) + torch.arange(COLUMNS), 0.25, 0.5)
    assert torch.allclose(s.x_test.double(), expected, atol=1e-6)
    assert torch.equal(s.y_test, torch.arange(5) % 10)
    assert (s.dataset, s.classes, s.source) == ("synthetic", 7, Path("/nowhere/synthetic"))


def test_normalization_maps_the_pixel_range_exactly() -> None:
    """(x / 255 - mean) / std: pixel 0 -> -mean/std, pixel 255 -> (1 - mean)/std."""
    raw = dataclasses.replace(synthetic_raw(2), train_images=torch.tensor(
        [[0, 255, 51], [255, 0, 102]], dtype=torch.uint8))
    s = make_splits(raw, val_size=0, seed=0)
    rows = s.x_train[torch.argsort(s.train_idx)].double()
    expected = torch.tensor([[-0.5, 1.5, -0.1], [1.5, -0.5, 0.3]], dtype=torch.float64)
    assert torch.allclose(rows, expected, atol=1e-6)


def test_defaults_hold_out_5000_with_seed_0_like_the_config() -> None:
    """Called without val_size or seed, the split holds out the config's default 5000 examples
    (docs/getting-started.md) and uses seed 0."""
    n = 5010
    assert DataConfig().val_size == 5000
    s = make_splits(synthetic_raw(n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.val_idx, order[:5000]) and torch.equal(s.train_idx, order[5000:])


def test_split_depends_on_its_seed_only() -> None:
    """Same seed, same split whatever the global RNG did; another seed, another split; the
    global RNG is left where it was."""
    raw = synthetic_raw(40)
    torch.manual_seed(1)
    a = make_splits(raw, val_size=10, seed=5)
    after = torch.rand(3)
    torch.manual_seed(2)
    b = make_splits(raw, val_size=10, seed=5)
    torch.manual_seed(1)
    make_splits(raw, val_size=10, seed=5)
    assert torch.equal(torch.rand(3), after)
    assert torch.equal(a.val_idx, b.val_idx) and torch.equal(a.train_idx, b.train_idx)
    assert not torch.equal(make_splits(raw, val_size=10, seed=6).val_idx, a.val_idx)


@pytest.mark.parametrize("val_size, subset, n_train", [
    (0, None, 12),  # no validation at all
    (5, None, 7),
    (11, None, 1),  # one training example left
    (4, 8, 8),  # validation plus subset use every example
    (4, 1, 1),
    (4, 2, 2),
    (0, 12, 12),
])
def test_sizes_at_and_inside_the_edges(val_size: int, subset: int | None, n_train: int) -> None:
    """Every split that leaves at least one training example is allowed; subset caps training
    at its first `subset` shuffled examples and leaves validation as without it."""
    raw = synthetic_raw(12)
    s = make_splits(raw, val_size=val_size, subset=subset, seed=1)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s.val_idx, order[:val_size])
    assert torch.equal(s.train_idx, order[val_size:val_size + n_train])
    assert len(s.x_train) == len(s.y_train) == n_train and len(s.x_val) == val_size


@pytest.mark.parametrize("val_size, subset, message", [
    (-1, None, "Validation size must be 0 or more, got -1."),
    (-2, None, "Validation size must be 0 or more, got -2."),
    (0, 0, "Training subset must be at least 1 example, got 0."),
    (0, -1, "Training subset must be at least 1 example, got -1."),
    (12, None, "Validation size 12 plus training subset 1 exceeds the 12 training examples; "
               "lower one of them."),
    (5, 8, "Validation size 5 plus training subset 8 exceeds the 12 training examples; "
           "lower one of them."),
    (0, 13, "Validation size 0 plus training subset 13 exceeds the 12 training examples; "
            "lower one of them."),
])
def test_impossible_sizes_are_one_line_data_errors(val_size: int, subset: int | None,
                                                   message: str) -> None:
    with pytest.raises(DataError) as caught:
        make_splits(synthetic_raw(12), val_size=val_size, subset=subset)
    assert str(caught.value) == message


def test_splits_cannot_be_reassigned() -> None:
    """A Splits is frozen: its indices stay the record of the tensors it was built with."""
    s = make_splits(synthetic_raw(6), val_size=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.train_idx = torch.arange(4)  # type: ignore[misc]


def test_a_splits_built_directly_describes_mnist_by_default() -> None:
    """`winit run --estimate` builds a Splits without naming classes: the default is MNIST's."""
    x = torch.zeros(2, COLUMNS)
    y = torch.zeros(2, dtype=torch.int64)
    s = Splits(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y,
               train_idx=torch.arange(2), val_idx=torch.arange(2))
    assert (s.dataset, s.classes) == ("mnist", get_dataset("mnist").classes)

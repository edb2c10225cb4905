"""MNIST: the spec against the real files, decoding, and the normalized splits every run uses."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from winit_cli.datasets import RawDataset, get_dataset, load_dataset, make_splits
from winit_cli.errors import DataError

pytestmark = pytest.mark.mnist

MNIST = get_dataset("mnist")


def _md5sums(folder: Path) -> dict[str, str]:
    lines = (folder / "MD5SUMS").read_text().splitlines()
    return {name.strip(): md5 for md5, name in (line.split(maxsplit=1) for line in lines)}


def test_spec_checksums_match_the_real_files(mnist_path: Path) -> None:
    """The payload md5s are those of the decompressed official files, the archive md5s those
    published beside them (MD5SUMS), and the declared shapes what the headers say."""
    published = _md5sums(mnist_path)
    for file in MNIST.files:
        stored = (mnist_path / file.name).read_bytes()
        payload = gzip.decompress(stored)
        assert hashlib.md5(payload).hexdigest() == file.payload_md5, file.name
        assert published[file.name] == file.archive_md5 == hashlib.md5(stored).hexdigest()
        assert len(payload) == file.payload_bytes, file.name


def test_real_files_decode_to_known_mnist(mnist_raw: RawDataset, mnist_path: Path) -> None:
    """Shapes, dtypes, the first labels, per-digit test counts and pixel statistics of MNIST."""
    raw = mnist_raw
    assert raw.source == mnist_path and raw.spec is MNIST
    assert raw.train_images.shape == (60000, 784) and raw.train_images.dtype == torch.uint8
    assert raw.test_images.shape == (10000, 784) and raw.test_images.dtype == torch.uint8
    assert raw.train_labels.shape == (60000,) and raw.train_labels.dtype == torch.int64
    assert raw.test_labels.shape == (10000,) and raw.test_labels.dtype == torch.int64
    assert raw.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert raw.test_labels[:5].tolist() == [7, 2, 1, 0, 4]
    # Published per-digit counts of the test set.
    assert torch.bincount(raw.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert int(raw.train_labels.min()) == 0 and int(raw.train_labels.max()) == 9
    assert int(raw.train_images.max()) == 255 and int(raw.train_images.min()) == 0
    # The normalization constants are the training set's own pixel mean and std.
    pixels = raw.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(MNIST.mean, abs=1e-4)
    assert pixels.std().item() == pytest.approx(MNIST.std, abs=1e-4)


def test_uncompressed_files_load_identically(mnist_raw: RawDataset, mnist_path: Path,
                                             tmp_path: Path) -> None:
    """Plain (gunzipped) copies load, verified by their payload md5, to the same tensors."""
    for file in MNIST.files:
        with gzip.open(mnist_path / file.name) as src, open(tmp_path / file.plain_name,
                                                            "wb") as dst:
            shutil.copyfileobj(src, dst)
    plain = load_dataset("mnist", tmp_path, download=False)
    assert plain.source == tmp_path
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(plain, field), getattr(mnist_raw, field)), field


# --- splits ---------------------------------------------------------------------------------


def test_splits_sizes_disjoint_and_faithful(mnist_raw: RawDataset, mnist_path: Path) -> None:
    """Train and validation partition the training set; rows are the raw rows, normalized with
    MNIST's mean and std; the split says which dataset it holds and where it came from."""
    raw = mnist_raw
    s = make_splits(raw, val_size=5000, seed=0)
    assert s.x_train.shape == (55000, 784) and s.x_train.dtype == torch.float32
    assert s.x_val.shape == (5000, 784) and s.y_val.shape == (5000,)
    assert s.x_test.shape == (10000, 784) and s.y_test.dtype == torch.int64
    assert (s.dataset, s.classes, s.input_size, s.source) == ("mnist", 10, 784, mnist_path)
    both = torch.cat([s.train_idx, s.val_idx])
    assert torch.equal(both.sort().values, torch.arange(60000))
    rows = torch.tensor([0, 123, 54999])
    expected = (raw.train_images[s.train_idx[rows]].double() / 255 - 0.1307) / 0.3081
    assert torch.allclose(s.x_train[rows].double(), expected, atol=1e-5)
    assert torch.equal(s.y_train, raw.train_labels[s.train_idx])
    assert torch.equal(s.y_val, raw.train_labels[s.val_idx])
    assert torch.equal(s.y_test, raw.test_labels)


def test_splits_are_normalized(mnist_raw: RawDataset) -> None:
    """The whole training set has mean ~0 and std ~1 after normalization."""
    s = make_splits(mnist_raw, val_size=0)
    assert s.x_train.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert s.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    assert s.x_val.shape == (0, 784)


def test_splits_are_deterministic_per_seed(mnist_raw: RawDataset) -> None:
    """The split depends on its seed only, not on the global RNG."""
    a = make_splits(mnist_raw, 1000, 2000, seed=7)
    b = make_splits(mnist_raw, 1000, 2000, seed=7)
    c = make_splits(mnist_raw, 1000, 2000, seed=8)
    assert torch.equal(a.val_idx, b.val_idx) and torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.val_idx, c.val_idx)
    torch.manual_seed(123)
    assert torch.equal(make_splits(mnist_raw, 1000, 2000, seed=7).train_idx, a.train_idx)


def test_subset_caps_training_only(mnist_raw: RawDataset) -> None:
    """data.subset shortens the training split and leaves validation and test alone."""
    s = make_splits(mnist_raw, val_size=1000, subset=500)
    assert len(s.x_train) == 500 and len(s.x_val) == 1000 and len(s.x_test) == 10000
    assert torch.equal(s.val_idx, make_splits(mnist_raw, val_size=1000).val_idx)


@pytest.mark.parametrize("val_size, subset, why", [
    (-1, None, "0 or more"),
    (0, 0, "at least 1"),
    (60000, None, "exceeds"),
    (50000, 10001, "exceeds"),
])
def test_bad_split_sizes(mnist_raw: RawDataset, val_size: int, subset: int | None,
                         why: str) -> None:
    """Impossible split sizes are DataErrors that say what is wrong."""
    with pytest.raises(DataError, match=why):
        make_splits(mnist_raw, val_size=val_size, subset=subset)

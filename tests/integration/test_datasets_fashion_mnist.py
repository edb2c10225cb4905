"""Fashion-MNIST, the second dataset: its spec against the shared (recompressed) copy, loading,
normalization, corruption, and `winit run --set data.dataset=fashion_mnist` end to end."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.datasets import RawDataset, get_dataset, load_dataset, make_splits
from winit_cli.errors import DataError
from winit_cli.runner.group import SPLIT_SEED

pytestmark = pytest.mark.mnist

FASHION = get_dataset("fashion_mnist")
QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def test_spec_payload_checksums_match_the_shared_copy(fashion_path: Path) -> None:
    """The payload md5s are those of the shared copy's decompressed files, whose gzip bytes
    (MD5SUMS) are not upstream's: only payload verification can accept them."""
    sums = dict(reversed(line.split()) for line in
                (fashion_path / "MD5SUMS").read_text().splitlines())
    for file in FASHION.files:
        stored = (fashion_path / file.name).read_bytes()
        payload = gzip.decompress(stored)
        assert hashlib.md5(payload).hexdigest() == file.payload_md5, file.name
        assert sums[file.name] == hashlib.md5(stored).hexdigest() != file.archive_md5
        assert len(payload) == file.payload_bytes, file.name


def test_loads_from_the_shared_copy(fashion_raw: RawDataset, fashion_path: Path) -> None:
    """Shapes, dtypes, ten balanced classes, and the published pixel mean and std."""
    raw = fashion_raw
    assert raw.source == fashion_path and raw.spec is FASHION
    assert raw.train_images.shape == (60000, 784) and raw.train_images.dtype == torch.uint8
    assert raw.test_images.shape == (10000, 784) and raw.test_images.dtype == torch.uint8
    assert raw.train_labels.dtype == raw.test_labels.dtype == torch.int64
    assert torch.bincount(raw.train_labels).tolist() == [6000] * 10
    assert torch.bincount(raw.test_labels).tolist() == [1000] * 10
    pixels = raw.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(FASHION.mean, abs=1e-4)
    assert pixels.std().item() == pytest.approx(FASHION.std, abs=1e-4)


def test_splits_use_fashions_own_normalization(fashion_raw: RawDataset,
                                              fashion_path: Path) -> None:
    """Splits say they hold fashion_mnist, and its training inputs have mean ~0 and std ~1
    (MNIST's constants would leave them far off: mean ~0.5)."""
    s = make_splits(fashion_raw, val_size=5000, seed=SPLIT_SEED)
    assert (s.dataset, s.classes, s.input_size, s.source) == (
        "fashion_mnist", 10, 784, fashion_path)
    assert s.x_train.shape == (55000, 784) and s.x_test.shape == (10000, 784)
    assert s.x_train.mean().item() == pytest.approx(0.0, abs=0.01)
    assert s.x_train.std().item() == pytest.approx(1.0, abs=0.01)
    rows = torch.tensor([0, 4321])
    expected = (fashion_raw.train_images[s.train_idx[rows]].double() / 255 - 0.2860) / 0.3530
    assert torch.allclose(s.x_train[rows].double(), expected, atol=1e-5)


@pytest.fixture
def fashion_copy(fashion_path: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "fashion"
    shutil.copytree(fashion_path, copy)
    for path in copy.iterdir():
        path.chmod(0o644)  # the shared copy is read-only
    return copy


def test_truncated_fashion_file_is_named_in_one_line(fashion_copy: Path) -> None:
    """A truncated gzip'd Fashion-MNIST file is named in a one-line error."""
    victim = fashion_copy / "train-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-5000])
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", fashion_copy, download=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{victim} is corrupted or truncated (bad gzip data")


def test_altered_fashion_payload_is_named_in_one_line(fashion_copy: Path) -> None:
    """A valid gzip around a payload with one changed pixel fails the payload md5, by name."""
    victim = fashion_copy / "t10k-images-idx3-ubyte.gz"
    payload = bytearray(gzip.decompress(victim.read_bytes()))
    payload[10_000] ^= 0x01
    victim.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", fashion_copy, download=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{victim} is corrupted or truncated (md5 mismatch")
    assert FASHION.test_images.payload_md5 in message


def test_cli_run_on_fashion_mnist(fashion_path: Path, mnist_path: Path, tmp_path: Path) -> None:
    """`winit run configs/quickstart.yaml --set data.dataset=fashion_mnist` works end to end with
    WINIT_DATA_DIR at the folder holding both datasets, and trains on Fashion-MNIST normalized
    with its own constants: the run's recorded input second moment matches one computed here
    from the raw files."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "mnist").symlink_to(mnist_path)  # both present: the right one must be chosen
    (root / "fashion-mnist").symlink_to(fashion_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "run", str(QUICKSTART), "--set", "data.dataset=fashion_mnist", "--set", "train.steps=30",
        "--set", "data.subset=2000", "--set", f"output_dir={out}",
    ], env={"COLUMNS": "200", "WINIT_DATA_DIR": str(root),
            "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output + repr(result.exception)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["dataset"] == \
        "fashion_mnist"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["dataset"] == "fashion_mnist"
    assert summary["data_source"] == str(root / "fashion-mnist")

    # Independently: the 2000 training rows the fixed split picks, normalized in float64.
    images = np.frombuffer(gzip.decompress(
        (fashion_path / "train-images-idx3-ubyte.gz").read_bytes())[16:], dtype=np.uint8)
    order = torch.randperm(60000, generator=torch.Generator().manual_seed(SPLIT_SEED)).numpy()
    rows = images.reshape(60000, 784)[order[5000:7000]] / 255.0
    expected = float(np.mean(((rows - 0.2860) / 0.3530) ** 2))
    assert summary["theory"]["input_second_moment"] == pytest.approx(expected, rel=1e-5)

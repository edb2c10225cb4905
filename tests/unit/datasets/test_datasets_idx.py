"""IDX decoding and verification: malformed files, corrupted copies and files of the wrong shape
or dataset are each named in a one-line error."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest
import torch

from winit_cli.datasets import get_dataset, read_idx
from winit_cli.datasets.idx import read_checked
from winit_cli.errors import DataError

MNIST = get_dataset("mnist")
FASHION = get_dataset("fashion_mnist")
SMALL = "train-labels-idx1-ubyte.gz"


def _idx(magic: int, dims: list[int], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def official(mnist_path: Path) -> dict[str, bytes]:
    return {file.name: (mnist_path / file.name).read_bytes() for file in MNIST.files}


def test_read_idx_synthetic_gzip_and_plain(tmp_path: Path) -> None:
    """Plain and gzip'd IDX decode to the same tensor; gzip is told by its magic, not its name."""
    blob = _idx(0x803, [2, 3, 4], bytes(range(24)))
    (tmp_path / "a.idx").write_bytes(blob)
    (tmp_path / "b.bin").write_bytes(gzip.compress(blob))
    expected = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
    assert torch.equal(read_idx(tmp_path / "a.idx"), expected)
    assert torch.equal(read_idx(tmp_path / "b.bin"), expected)


@pytest.mark.parametrize("blob, why", [
    (_idx(0x802, [3], b"abc"), "magic number"),
    (_idx(0x801, [3], b"abcd"), "expected 11"),
    (_idx(0x801, [3], b"ab"), "expected 11"),
    (_idx(0x803, [1, 1, 2], b"ab")[:10], "header cut short"),
    (b"", "magic number"),
    # dims whose product wraps to 0 in int64 (2^64), so the bare header looked complete
    (_idx(0x803, [2**31, 2**31, 4], b""), f"16 bytes, expected {16 + 2**64} for dims"),
    (_idx(0x803, [2**32 - 1] * 3, b""), re.escape("for dims [4294967295, 4294967295, 4294967295]")),
])
def test_read_idx_rejects_malformed(tmp_path: Path, blob: bytes, why: str) -> None:
    """Malformed headers and lengths give the one-line corrupted-file error, never a crash."""
    path = tmp_path / "broken-idx"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=why) as err:
        read_idx(path)
    message = _one_line(err)
    assert str(path) in message and "corrupted" in message


@pytest.mark.mnist
def test_truncated_gzip_is_reported(official: dict[str, bytes], tmp_path: Path) -> None:
    """A gzip stream cut in half is named as bad gzip data, with what to do about it."""
    path = tmp_path / "labels.gz"
    path.write_bytes(official[SMALL][: len(official[SMALL]) // 2])
    with pytest.raises(DataError, match="bad gzip data") as err:
        read_idx(path)
    assert str(path) in _one_line(err) and "Delete it" in str(err.value)


@pytest.mark.mnist
def test_truncated_official_file_is_named(official: dict[str, bytes], tmp_path: Path) -> None:
    """A published file missing its last bytes fails verification, naming the file."""
    path = tmp_path / SMALL
    path.write_bytes(official[SMALL][:-100])
    with pytest.raises(DataError, match="corrupted or truncated") as err:
        read_checked(path, MNIST, MNIST.train_labels)
    assert str(path) in _one_line(err)


@pytest.mark.mnist
def test_recompressed_copy_is_accepted(official: dict[str, bytes], tmp_path: Path) -> None:
    """Other gzip bytes around the same payload verify: the payload md5 is what counts."""
    path = tmp_path / SMALL
    path.write_bytes(gzip.compress(gzip.decompress(official[SMALL]), compresslevel=1, mtime=0))
    assert hashlib.md5(path.read_bytes()).hexdigest() != MNIST.train_labels.archive_md5
    labels = read_checked(path, MNIST, MNIST.train_labels)
    expected = torch.frombuffer(bytearray(gzip.decompress(official[SMALL])[8:]), dtype=torch.uint8)
    assert torch.equal(labels, expected)


@pytest.mark.mnist
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_altered_payload_fails_md5(official: dict[str, bytes], tmp_path: Path,
                                   compress: bool) -> None:
    """A well-formed file (valid gzip or plain IDX, right shape, labels in range) whose payload
    differs in one label fails the payload md5; plain copies are verified too."""
    payload = bytearray(gzip.decompress(official[SMALL]))
    payload[100] = (payload[100] + 1) % 10
    path = tmp_path / (SMALL if compress else SMALL.removesuffix(".gz"))
    path.write_bytes(gzip.compress(bytes(payload)) if compress else bytes(payload))
    actual = hashlib.md5(payload).hexdigest()
    with pytest.raises(DataError) as err:
        read_checked(path, MNIST, MNIST.train_labels)
    message = _one_line(err)
    assert str(path) in message
    assert f"md5 mismatch: its contents hash to {actual}, expected " \
           f"{MNIST.train_labels.payload_md5}" in message


@pytest.mark.mnist
def test_another_datasets_file_is_called_so(fashion_path: Path) -> None:
    """Fashion-MNIST's labels read as MNIST's are refused, and the error says whose they are."""
    path = fashion_path / SMALL
    with pytest.raises(DataError) as err:
        read_checked(path, MNIST, MNIST.train_labels)
    assert _one_line(err).startswith(f"{path} is Fashion-MNIST's {SMALL}, not MNIST's")


def test_wrong_shape_for_an_official_file(tmp_path: Path) -> None:
    """A valid IDX file of the wrong length is described by its shape, not its checksum."""
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(_idx(0x801, [10], bytes(10)))
    with pytest.raises(DataError, match=r"shape \(10,\), expected \(10000,\)") as err:
        read_checked(path, MNIST, MNIST.test_labels)
    assert str(path) in _one_line(err)


def test_label_out_of_range(tmp_path: Path) -> None:
    """A label outside the dataset's classes is named before any checksum."""
    labels = bytearray(10000)
    labels[7] = 10
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(_idx(0x801, [10000], bytes(labels)))
    with pytest.raises(DataError, match="label 10 outside 0-9") as err:
        read_checked(path, FASHION, FASHION.test_labels)
    assert str(path) in _one_line(err)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    """An absent file is a one-line DataError, not an OSError traceback."""
    with pytest.raises(DataError, match="Cannot read") as err:
        read_idx(tmp_path / "absent.idx")
    _one_line(err)

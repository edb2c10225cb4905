"""MNIST: find the four official IDX files, download them if asked, decode them, split them.

The flow is `load_mnist` (find or download, then decode) -> `MnistRaw` (uint8, as published)
-> `make_splits` (float32, normalized, with a held-out validation set carved from training).

Files are looked up, in order, in `--data-dir`, the config's `data.dir`, `$WINIT_DATA_DIR` and
the user cache (`default_cache_dir()`). Each file may be gzip'd (`name.gz`, as published) or
uncompressed (`name`). The gzip'd files are checked against their published md5 every time they
are loaded (about 20 ms): every number this tool prints rests on these bytes, so a silently
corrupted copy is worse than a loud failure. Uncompressed files have no published checksum and
get structural checks only (magic number, dimensions, exact payload length, label range).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from winit_cli import __version__
from winit_cli.errors import DataError

# The same sums torchvision and TensorFlow check; see /work/shared/data/mnist/README.md.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# Tried in order. yann.lecun.com is the original but often refuses automated downloads.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# (file name, bytes done, total bytes or None when the server does not say)
ProgressFn = Callable[[str, int, int | None], None]

# The shape each official file must decode to, keyed by its .gz name.
_SHAPES: dict[str, tuple[int, ...]] = {
    "train-images-idx3-ubyte.gz": (60000, 28, 28),
    "train-labels-idx1-ubyte.gz": (60000,),
    "t10k-images-idx3-ubyte.gz": (10000, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (10000,),
}

# Mean and std of the training pixels scaled to [0, 1]: the usual MNIST normalization.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

_IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # magic number -> number of dimensions (uint8 data)
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/winit/mnist`, or `~/.cache/winit/mnist`."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "winit" / "mnist"


def _locate(directory: Path) -> dict[str, Path]:
    """The MNIST files present in `directory`, keyed by official .gz name.

    A gzip'd copy is preferred over an uncompressed one: only it can be checked against the md5.
    """
    found = {}
    for name in MNIST_FILES:
        for candidate in (directory / name, directory / name.removesuffix(".gz")):
            if candidate.is_file():
                found[name] = candidate
                break
    return found


def _env_data_dir() -> Path | None:
    value = os.environ.get("WINIT_DATA_DIR", "")
    return Path(value).expanduser() if value else None


def _candidates(data_dir: Path | None, config_dir: Path | None) -> list[tuple[str, Path]]:
    """Where to look, in order, each with the label used in error messages."""
    places = [
        ("--data-dir", data_dir),
        ("the config's data.dir", config_dir),
        ("$WINIT_DATA_DIR", _env_data_dir()),
        ("the cache", default_cache_dir()),
    ]
    return [(label, Path(path).expanduser()) for label, path in places if path is not None]


def find_mnist_dir(data_dir: Path | None = None, config_dir: Path | None = None) -> Path | None:
    """The first directory that holds all four MNIST files, or None.

    Lookup order: `data_dir` (--data-dir), `config_dir` (the config's data.dir),
    `$WINIT_DATA_DIR`, `default_cache_dir()`. A directory that lacks some files is skipped
    (`load_mnist` names it in its error message if nothing is found), so a config written on
    another machine still runs here when the files are in the cache.
    """
    for _, directory in _candidates(data_dir, config_dir):
        if len(_locate(directory)) == len(MNIST_FILES):
            return directory
    return None


def _describe(directory: Path) -> str:
    """Why `directory` did not qualify, for error messages."""
    if not directory.is_dir():
        return "does not exist"
    missing = [name for name in MNIST_FILES if name not in _locate(directory)]
    return "lacks " + ", ".join(missing)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _range_start(content_range: str | None) -> int | None:
    """The first byte of a `Content-Range: bytes START-END/TOTAL` header, or None."""
    try:
        unit, _, rest = (content_range or "").partition(" ")
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _fetch(url: str, part: Path, name: str, on_progress: ProgressFn | None, timeout: float) -> bool:
    """Download `url` into `part`, continuing what `part` already holds. True if it resumed.

    Raises OSError / HTTPException on any network failure; `part` keeps what arrived, so the
    next mirror (or the next run) resumes from there.
    """
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"winit/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and have:  # the .part is as long as the file or longer: start over
            part.unlink()
            return _fetch(url, part, name, on_progress, timeout)
        raise
    with response:
        # Append only if the server sent exactly the bytes we asked for; otherwise it ignored
        # the Range header (200) and is sending the whole file, so start over.
        resumed = have > 0 and response.status == 206 and (
            _range_start(response.headers.get("Content-Range")) == have)
        done = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        with open(part, "ab" if resumed else "wb") as f:
            if on_progress:
                on_progress(name, done, total)
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                done += len(chunk)
                if on_progress:
                    on_progress(name, done, total)
    # http.client returns a short body without complaint when the connection drops.
    if total is not None and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")
    return resumed


def _reason(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def download_mnist(dest: Path, mirrors: Sequence[str] = MIRRORS,
                   on_progress: ProgressFn | None = None, timeout: float = 30) -> Path:
    """Download the MNIST files missing from `dest` (gzip'd, as published); return `dest`.

    Each file goes to `name.part` first, is checked against its md5, then renamed into place,
    so a file under its final name has always been verified. A `.part` left by an interrupted
    download is resumed with an HTTP Range request when the server honours it. Mirrors are tried
    in order; one that fails or serves bytes with the wrong md5 is skipped.
    """
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"Cannot create the MNIST directory {dest}: {err.strerror}. "
                        "Choose a writable place with WINIT_DATA_DIR or --data-dir.") from err
    present = _locate(dest)
    for name, md5 in MNIST_FILES.items():
        if name in present:
            continue
        final, part = dest / name, dest / (name + ".part")
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            # A resumed download that fails the md5 may owe the fault to the old .part, not to
            # this mirror: give the mirror one more chance from scratch.
            for _ in range(2):
                try:
                    resumed = _fetch(url, part, name, on_progress, timeout)
                except (OSError, http.client.HTTPException, ValueError) as err:
                    failures.append(f"{url}: {_reason(err)}")
                    break
                if _md5(part) == md5:
                    os.replace(part, final)
                    break
                part.unlink()
                failures.append(f"{url}: md5 mismatch (corrupted download)")
                if not resumed:
                    break
            if final.is_file():
                break
        if not final.is_file():
            tried = "; ".join(failures) or "no mirrors given"
            raise DataError(f"Could not download {name} into {dest} ({tried}).")
    return dest


@dataclass(frozen=True)
class MnistRaw:
    """The four files as published, decoded. Images are flattened row-major (28 x 28 -> 784)."""

    train_images: torch.Tensor  # [60000, 784] uint8
    train_labels: torch.Tensor  # [60000] int64
    test_images: torch.Tensor  # [10000, 784] uint8
    test_labels: torch.Tensor  # [10000] int64
    source: Path  # directory the files came from


def _corrupt(path: Path, why: str) -> DataError:
    return DataError(f"{path} is corrupted or truncated ({why}). Delete it and run again to "
                     "download a fresh copy, or replace it with the official file.")


def read_idx(path: Path) -> torch.Tensor:
    """Decode one IDX file (gzip'd or not, told apart by its first bytes) into a uint8 tensor.

    IDX: a 4-byte big-endian magic (0x00000801 for a 1-d label file, 0x00000803 for 3-d images),
    one big-endian uint32 per dimension, then exactly prod(dims) bytes. A file named like one of
    the official .gz files must also match its published md5.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise DataError(f"Cannot read {path}: {err.strerror}.") from err
    expected_md5 = MNIST_FILES.get(path.name)
    if expected_md5 is not None:
        actual = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        if actual != expected_md5:
            raise _corrupt(path, f"md5 {actual}, expected {expected_md5}")
    if blob[:2] == _GZIP_MAGIC:
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error) as err:
            raise _corrupt(path, f"bad gzip data: {err}") from err

    magic = int.from_bytes(blob[:4], "big")
    ndim = _IDX_MAGIC.get(magic)
    if ndim is None:
        raise _corrupt(path, f"magic number 0x{magic:08x}, expected 0x00000801 or 0x00000803")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise _corrupt(path, "header cut short")
    dims = [int.from_bytes(blob[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected_len = header + torch.Size(dims).numel()
    if len(blob) != expected_len:
        raise _corrupt(path, f"{len(blob)} bytes, expected {expected_len} for dims {dims}")
    # bytearray: torch.frombuffer wants a writable buffer; this is the only copy of the payload.
    payload = bytearray(memoryview(blob)[header:])
    return torch.frombuffer(payload, dtype=torch.uint8).reshape(dims)


def _not_found(places: list[tuple[str, Path]], target: Path, extra: str) -> DataError:
    looked = "; ".join(f"{label} {path} {_describe(path)}" for label, path in places)
    files = ", ".join(MNIST_FILES)
    return DataError(f"MNIST not found ({looked}). {extra}To provide it, copy the four files "
                     f"({files}) into {target}, set WINIT_DATA_DIR to a directory that holds "
                     "them, or pass --data-dir.")


def load_mnist(data_dir: Path | None = None, config_dir: Path | None = None, *,
               download: bool = True, mirrors: Sequence[str] = MIRRORS,
               on_progress: ProgressFn | None = None) -> MnistRaw:
    """Find MNIST (see `find_mnist_dir`), downloading it if absent and allowed, and decode it.

    Downloads go to `$WINIT_DATA_DIR` if set, else `default_cache_dir()`; never into a
    --data-dir or config directory, which may be read-only or shared.
    """
    places = _candidates(data_dir, config_dir)
    source = find_mnist_dir(data_dir, config_dir)
    if source is None:
        target = _env_data_dir() or default_cache_dir()
        if not download:
            raise _not_found(places, target, "Downloading was not allowed. ")
        try:
            source = download_mnist(target, mirrors, on_progress)
        except DataError as err:
            raise _not_found(places, target, f"{err} ") from err

    files = _locate(source)
    tensors = {}
    for name, shape in _SHAPES.items():
        tensor = read_idx(files[name])
        if tuple(tensor.shape) != shape:
            raise DataError(f"{files[name]} holds an array of shape {tuple(tensor.shape)}, "
                            f"expected {shape} for MNIST's {name}. Replace it with the "
                            "official file.")
        if len(shape) == 1 and int(tensor.max()) > 9:
            raise _corrupt(files[name], f"label {int(tensor.max())} outside 0-9")
        tensors[name] = tensor
    return MnistRaw(
        train_images=tensors["train-images-idx3-ubyte.gz"].reshape(-1, 784),
        train_labels=tensors["train-labels-idx1-ubyte.gz"].long(),
        test_images=tensors["t10k-images-idx3-ubyte.gz"].reshape(-1, 784),
        test_labels=tensors["t10k-labels-idx1-ubyte.gz"].long(),
        source=source,
    )


@dataclass(frozen=True)
class Splits:
    """Float32 inputs normalized with MNIST's training mean/std; int64 labels.

    `train_idx` / `val_idx` index `MnistRaw.train_images`: they make the split reproducible and
    checkable (disjoint by construction, recorded with a run if wanted).
    """

    x_train: torch.Tensor  # [n_train, 784] float32
    y_train: torch.Tensor  # [n_train] int64
    x_val: torch.Tensor  # [val_size, 784] float32
    y_val: torch.Tensor  # [val_size] int64
    x_test: torch.Tensor  # [10000, 784] float32
    y_test: torch.Tensor  # [10000] int64
    train_idx: torch.Tensor  # [n_train] int64
    val_idx: torch.Tensor  # [val_size] int64
    dataset: str = "mnist"  # the registry name
    classes: int = 10
    source: Path | None = None  # the folder the files were read from

    @property
    def input_size(self) -> int:
        return self.x_train.shape[1]


def _normalize(images: torch.Tensor) -> torch.Tensor:
    """(x / 255 - mean) / std, computed in place: the training set is 190 MB as float32."""
    return images.float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)


def make_splits(raw: MnistRaw, val_size: int = 5000, subset: int | None = None,
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
    return Splits(
        x_train=_normalize(raw.train_images[train_idx]),
        y_train=raw.train_labels[train_idx],
        x_val=_normalize(raw.train_images[val_idx]),
        y_val=raw.train_labels[val_idx],
        x_test=_normalize(raw.test_images),
        y_test=raw.test_labels,
        train_idx=train_idx,
        val_idx=val_idx,
        source=raw.source,
    )

"""IDX files: decode one (gzip'd or not) and check it against its dataset's spec.

IDX: a 4-byte big-endian magic (0x00000801 for a 1-d label file, 0x00000803 for 3-d images),
one big-endian uint32 per dimension, then exactly prod(dims) bytes. gzip'd and plain files are
told apart by their first bytes, not their names.

`read_checked` is what loading uses: structure, shape, label range, then the md5 of the payload
(see `registry.IdxFile`). Every failure is one line naming the file, because every number winit
prints rests on these bytes and a silently corrupted copy is worse than a loud failure.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from winit_cli.bounded import Unreadable, read_bytes
from winit_cli.datasets.registry import DatasetSpec, IdxFile, owner_of
from winit_cli.errors import DataError

if TYPE_CHECKING:
    import torch

_IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # magic number -> number of dimensions (uint8 data)
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # decompressed bytes at a time: what a refused bomb costs beyond its cap


class BadFile(DataError):
    """A file that is not what its name promises; `why` is the short reason (for download logs)."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


def corrupt(path: Path, why: str) -> BadFile:
    return BadFile(f"{path} is corrupted or truncated ({why}). Delete it and run again to "
                   "download a fresh copy, or replace it with the official file.", why)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# What a file whose dataset is not known may decompress to (the largest known, Fashion-MNIST's
# training images, is 47 MB).
MAX_PAYLOAD_BYTES = 1 << 30


def payload_size(expected: IdxFile) -> int:
    """The bytes of `expected`'s IDX payload: magic, one uint32 per dimension, then the values."""
    return 4 + 4 * len(expected.shape) + math.prod(expected.shape)


def read_stored(path: Path, payload_limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The file's bytes as stored (gzip'd or not): a regular file, no larger than a payload of
    `payload_limit` bytes can be stored in (gzip adds at most a few bytes per 16 kB)."""
    try:
        return read_bytes(Path(path), payload_limit + payload_limit // 256 + 4096)
    except Unreadable as err:
        if err.size is not None:
            raise corrupt(path, f"{err.why}: larger than its dataset's file") from None
        raise DataError(f"Cannot read {path}: {err.why}.") from None


def is_gzip(stored: bytes) -> bool:
    return stored[:2] == _GZIP_MAGIC


def payload_of(stored: bytes, path: Path, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The IDX bytes: `stored` decompressed if it is gzip'd, else `stored` itself. Decompressed
    as a stream that stops past `limit` bytes (the dataset's payload size): a gzip bomb (14 MB
    that inflate to 3 GB) is refused having used `limit` bytes, not 3 GB."""
    if not is_gzip(stored):
        return stored
    out, data = bytearray(), stored
    try:
        while data:  # one gzip member after another, as gzip.decompress reads them
            stream = zlib.decompressobj(wbits=31)
            while data and not stream.eof:
                out += stream.decompress(data, min(_CHUNK, limit + 1 - len(out)))
                data = stream.unconsumed_tail
                if len(out) > limit:
                    raise corrupt(path, f"it decompresses to more than {limit:,} bytes, the "
                                        "size of its dataset's file")
            if not stream.eof:
                raise corrupt(path, "bad gzip data: it ends before the end-of-stream marker")
            data = stream.unused_data
    except zlib.error as err:
        raise corrupt(path, f"bad gzip data: {err}") from err
    return bytes(out)


def decode(payload: bytes, path: Path) -> torch.Tensor:
    """IDX bytes -> a uint8 tensor of the declared dimensions; `path` names the file in errors."""
    magic = int.from_bytes(payload[:4], "big")
    ndim = _IDX_MAGIC.get(magic)
    if ndim is None:
        raise corrupt(path, f"magic number 0x{magic:08x}, expected 0x00000801 or 0x00000803")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise corrupt(path, "header cut short")
    dims = [int.from_bytes(payload[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    # Python integers: a crafted header (dims [2^31, 2^31, 4]) cannot overflow the product.
    expected_len = header + math.prod(dims)
    if len(payload) != expected_len:
        raise corrupt(path, f"{len(payload)} bytes, expected {expected_len} for dims {dims}")
    # bytearray: torch.frombuffer wants a writable buffer; this is the only copy of the payload.
    values = bytearray(memoryview(payload)[header:])
    import torch  # here, not at the top: the registry and the store are read without torch

    return torch.frombuffer(values, dtype=torch.uint8).reshape(dims)


def read_idx(path: Path) -> torch.Tensor:
    """Decode one IDX file, gzip'd or not, with structural checks only (no checksum)."""
    path = Path(path)
    return decode(payload_of(read_stored(path), path), path)


def read_checked(path: Path, spec: DatasetSpec, expected: IdxFile) -> torch.Tensor:
    """Decode `path` as `spec`'s file `expected` and verify it: shape, labels, payload md5.

    The md5 comes last so that a file of the wrong shape or with impossible labels is described
    as such. A gzip'd file whose bytes match the published archive md5 skips hashing its payload
    (gzip's own CRC has checked the decompression).
    """
    path = Path(path)
    size = payload_size(expected)
    stored = read_stored(path, size)
    payload = payload_of(stored, path, size)
    tensor = decode(payload, path)
    if tuple(tensor.shape) != expected.shape:
        why = f"shape {tuple(tensor.shape)}, expected {expected.shape}"
        raise BadFile(f"{path} holds an array of {why} for {spec.title}'s {expected.name}. "
                      "Replace it with the official file.", why)
    if tensor.dim() == 1 and tensor.numel() and int(tensor.max()) >= spec.classes:
        raise corrupt(path, f"label {int(tensor.max())} outside 0-{spec.classes - 1}")
    if expected.archive_md5 and is_gzip(stored) and md5_hex(stored) == expected.archive_md5:
        return tensor
    actual = md5_hex(payload)
    if actual != expected.payload_md5:
        raise wrong_payload(path, spec, expected, actual)
    return tensor


def wrong_payload(path: Path, spec: DatasetSpec, expected: IdxFile, actual: str) -> BadFile:
    """The error for a well-formed file whose payload is not `spec`'s: another dataset's, or
    altered."""
    owner = owner_of(actual)
    if owner is not None and owner[0].name != spec.name:
        why = f"md5 mismatch: it is {owner[0].title}'s {owner[1].name}"
        return BadFile(f"{path} is {owner[0].title}'s {owner[1].name}, not {spec.title}'s "
                       f"(md5 mismatch). Keep each dataset in its own folder (its own is named "
                       f"{spec.cache_folder!r} under WINIT_DATA_DIR).", why)
    return corrupt(path, f"md5 mismatch: its contents hash to {actual}, expected "
                         f"{expected.payload_md5}")

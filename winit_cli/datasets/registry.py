"""Dataset specs: what a dataset is (its files and their checksums, where to download them, its
shape, classes and normalization) and the registry that names them.

Each dataset is one `DatasetSpec`, registered from its own module (`mnist.py`,
`fashion_mnist.py`) with `register`; `get_dataset(name)` looks one up by the name a config's
`data.dataset` uses. Nothing here reads a file or imports torch: the config schema validates
names against this registry without paying for the loader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from winit_cli.registry import Registry


@dataclass(frozen=True)
class IdxFile:
    """One of a dataset's four IDX files.

    `name` is the published (gzip'd) file name; the same name without `.gz` is accepted for an
    uncompressed copy. `payload_md5` is the md5 of the decompressed IDX bytes: the data itself,
    whatever gzip did to it, so a recompressed copy and a fresh download both verify.
    `archive_md5`, when known, is the md5 of the published .gz bytes: a file that matches it is
    verified without hashing its (about 5x larger) payload.
    """

    name: str
    payload_md5: str
    shape: tuple[int, ...]  # what the IDX header must declare, e.g. (60000, 28, 28)
    archive_md5: str | None = None

    @property
    def plain_name(self) -> str:
        return self.name.removesuffix(".gz")

    @property
    def payload_bytes(self) -> int:
        """Length of the decompressed file: magic, one uint32 per dimension, one byte per value."""
        return 4 + 4 * len(self.shape) + math.prod(self.shape)


@dataclass(frozen=True)
class DatasetSpec:
    """An image-classification dataset in IDX format: uint8 images, uint8 labels 0..classes-1."""

    name: str  # registry key and config value, e.g. "fashion_mnist"
    title: str  # for people, e.g. "Fashion-MNIST"
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    mirrors: tuple[str, ...]  # base URLs, tried in order; a file's URL is mirror + file name
    image_shape: tuple[int, ...]  # one example, e.g. (28, 28)
    classes: int
    mean: float  # of the training pixels scaled to [0, 1]: inputs become (x - mean) / std
    std: float
    cache_folder: str  # folder name under the data root and the user cache, e.g. "fashion-mnist"

    def __post_init__(self) -> None:
        # A contributor's typo in a spec should fail at import, not as a shape error mid-run.
        for images, labels in ((self.train_images, self.train_labels),
                               (self.test_images, self.test_labels)):
            if images.shape[1:] != self.image_shape or labels.shape != images.shape[:1]:
                raise ValueError(f"dataset {self.name}: {images.name} {images.shape} and "
                                 f"{labels.name} {labels.shape} do not fit {self.image_shape}")
        if self.classes < 2 or not self.std > 0:
            raise ValueError(f"dataset {self.name}: needs 2+ classes and a positive std")

    @property
    def files(self) -> tuple[IdxFile, IdxFile, IdxFile, IdxFile]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    @property
    def input_size(self) -> int:
        """Values per example once flattened (28 x 28 -> 784)."""
        return math.prod(self.image_shape)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add `spec` to the registry under `spec.name`; returns it."""
    return DATASETS.add(spec.name, spec)


def known_datasets() -> list[str]:
    return sorted(DATASETS)


def get_dataset(name: str, where: str = "data.dataset") -> DatasetSpec:
    """The spec registered as `name`; a ConfigError listing the known names otherwise."""
    return DATASETS.lookup(name, where)


def owner_of(payload_md5: str) -> tuple[DatasetSpec, IdxFile] | None:
    """The registered dataset file whose payload has this md5, if any."""
    for spec in DATASETS.values():
        for file in spec.files:
            if file.payload_md5 == payload_md5:
                return spec, file
    return None

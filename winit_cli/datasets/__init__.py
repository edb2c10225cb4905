"""Datasets: a registry of specs (one module per dataset) and the generic code that finds,
downloads, decodes, verifies and splits any of them.

    registry.py       DatasetSpec, IdxFile, register, get_dataset
    mnist.py          the MNIST spec             } one module per dataset: adding one is a new
    fashion_mnist.py  the Fashion-MNIST spec     } module, its import below, and its test
    idx.py            decode an IDX file; check shape, labels, payload md5
    store.py          where to look, in order, and why a place does not qualify
    download.py       resumable, verified download from the spec's mirrors
    raw.py            load_raw: find or download, decode, verify -> RawDataset
    splits.py         make_splits: normalized train / validation / test -> Splits

Every load verifies every file: the md5 of its decompressed payload, or of the published .gz
bytes when they match (cheaper). It costs about a third of the gunzip that loading needs anyway;
the measurements, and why no "already verified" marker is kept, are in raw.py.

Importing this package registers every dataset; import names from here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from winit_cli.datasets import fashion_mnist as _fashion_mnist  # noqa: F401  registers it
from winit_cli.datasets import mnist as _mnist  # noqa: F401  registers it
from winit_cli.datasets.download import ProgressFn, download_files
from winit_cli.datasets.idx import read_idx
from winit_cli.datasets.registry import (
    DATASETS,
    DatasetSpec,
    IdxFile,
    get_dataset,
    known_datasets,
    register,
)
from winit_cli.datasets.store import default_cache_dir, download_dir, find_dir

if TYPE_CHECKING:
    from winit_cli.datasets.raw import RawDataset

# The names that hold tensors (raw.py, splits.py) are imported on first use, so that config
# validation and `winit advise` read the registry without importing torch.
_WITH_TORCH = {"RawDataset": "raw", "load_raw": "raw", "Splits": "splits", "make_splits": "splits"}


def __getattr__(name: str):
    if name in _WITH_TORCH:
        return getattr(importlib.import_module(f"{__name__}.{_WITH_TORCH[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_dataset(name: str, data_dir: Path | None = None, config_dir: Path | None = None,
                 **kwargs) -> RawDataset:
    """`load_raw` for the dataset registered as `name` (keyword arguments as there)."""
    from winit_cli.datasets.raw import load_raw

    return load_raw(get_dataset(name), data_dir, config_dir, **kwargs)


__all__ = ["DATASETS", "DatasetSpec", "IdxFile", "ProgressFn", "RawDataset", "Splits",
           "default_cache_dir", "download_dir", "download_files", "find_dir", "get_dataset",
           "known_datasets", "load_dataset", "load_raw", "make_splits", "read_idx", "register"]

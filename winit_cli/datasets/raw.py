"""Load a dataset as published: find its files (or download them), decode and verify them.

    load_raw(spec) -> RawDataset (uint8 images, int64 labels, as published) -> splits.make_splits

Verification cost, measured with `benchmarks/bench_datasets.py` on the shared 2-core
development machine (medians of 7): reading and gunzipping the four files takes 0.33 s (MNIST)
to 0.41 s (Fashion-MNIST), which no loader can skip; the md5 of the 55 MB of payload adds 0.13 s;
the md5 of MNIST's published .gz bytes (the archive fast path) 0.03 s. A whole `load_raw` takes
0.42 s for MNIST (0.44 s with the MNIST-only loader this replaced) and 0.55 s for the shared
recompressed Fashion-MNIST copy, which pays a failed archive check (0.07 s) and the payload md5.
So every load verifies every file and nothing remembers "already verified": a marker keyed by
size and mtime would save at most 0.13 s per load (a sweep loads once per process and split),
while bit rot and careless copies keep size and mtime, and the marker would need a writable
place that concurrent sweep workers update atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from winit_cli.datasets.download import ProgressFn, download_files
from winit_cli.datasets.idx import read_checked
from winit_cli.datasets.registry import DatasetSpec
from winit_cli.datasets.store import download_dir, locate, not_found, search
from winit_cli.errors import DataError


@dataclass(frozen=True)
class RawDataset:
    """The four files as published, decoded. Images are flattened row-major (28 x 28 -> 784)."""

    spec: DatasetSpec
    train_images: torch.Tensor  # [n_train, input_size] uint8
    train_labels: torch.Tensor  # [n_train] int64
    test_images: torch.Tensor  # [n_test, input_size] uint8
    test_labels: torch.Tensor  # [n_test] int64
    source: Path  # the folder the files were read from


def load_raw(spec: DatasetSpec, data_dir: Path | None = None, config_dir: Path | None = None,
             *, download: bool = True, mirrors: Sequence[str] | None = None,
             on_progress: ProgressFn | None = None) -> RawDataset:
    """Find `spec`'s files (see `store`), downloading them if absent and allowed; decode and
    verify every one. Downloads go to `store.download_dir(spec)`.
    """
    source, skipped = search(spec, data_dir, config_dir)
    if source is None:
        target = download_dir(spec)
        if not download:
            raise not_found(spec, skipped, target, "Downloading was not allowed. ")
        try:
            source = download_files(spec, target, mirrors, on_progress)
        except DataError as err:
            raise not_found(spec, skipped, target, f"{err} ") from err

    files = locate(source, spec)
    train_images, train_labels, test_images, test_labels = (
        read_checked(files[file.name], spec, file) for file in spec.files)
    return RawDataset(
        spec=spec,
        train_images=train_images.reshape(-1, spec.input_size),
        train_labels=train_labels.long(),
        test_images=test_images.reshape(-1, spec.input_size),
        test_labels=test_labels.long(),
        source=source,
    )

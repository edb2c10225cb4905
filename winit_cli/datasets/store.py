"""Where a dataset's files are: the places looked in, in order, and why each did or did not do.

For a dataset with cache folder F (e.g. "fashion-mnist"), the places are:

    --data-dir, the config's data.dir, $WINIT_DATA_DIR/F, $WINIT_DATA_DIR, the user cache
    ($XDG_CACHE_HOME or ~/.cache, then winit/F)

so one WINIT_DATA_DIR can hold every dataset in its own subfolder, or point straight at one.
The first place holding all four file names (each gzip'd or plain) is used, unless its training
labels are another registered dataset's: MNIST and Fashion-MNIST share file names, so names
alone cannot tell them apart. That check hashes only the labels file (60 KB); the full
verification happens when the files are read (`idx.read_checked`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from winit_cli.datasets.idx import md5_hex, payload_of, payload_size, read_stored
from winit_cli.datasets.registry import DatasetSpec, owner_of
from winit_cli.errors import DataError


@dataclass(frozen=True)
class Place:
    label: str  # how error messages name it, e.g. "$WINIT_DATA_DIR"
    path: Path


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/winit`, or `~/.cache/winit`."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "winit"


def default_cache_dir(spec: DatasetSpec) -> Path:
    """The dataset's folder in the user cache, e.g. `~/.cache/winit/fashion-mnist`."""
    return cache_root() / spec.cache_folder


def env_data_dir() -> Path | None:
    value = os.environ.get("WINIT_DATA_DIR", "")
    return Path(value).expanduser() if value else None


def download_dir(spec: DatasetSpec) -> Path:
    """Where a missing dataset is downloaded: its own folder under $WINIT_DATA_DIR if that is
    set, else in the user cache. Never a --data-dir or config folder (they may be read-only or
    shared), and never $WINIT_DATA_DIR itself, which may hold another dataset's same-named files.
    """
    root = env_data_dir()
    return root / spec.cache_folder if root is not None else default_cache_dir(spec)


def places(spec: DatasetSpec, data_dir: Path | None = None,
           config_dir: Path | None = None) -> list[Place]:
    """Where to look, in order (see the module docstring)."""
    env = env_data_dir()
    candidates = [
        ("--data-dir", data_dir),
        ("the config's data.dir", config_dir),
        (f"$WINIT_DATA_DIR/{spec.cache_folder}", env / spec.cache_folder if env else None),
        ("$WINIT_DATA_DIR", env),
        ("the cache", default_cache_dir(spec)),
    ]
    return [Place(label, Path(path).expanduser()) for label, path in candidates if path]


def locate(directory: Path, spec: DatasetSpec) -> dict[str, Path]:
    """The dataset's files present in `directory`, keyed by published (.gz) name.

    A gzip'd copy is preferred over an uncompressed one: it alone can take the archive-md5
    fast path.
    """
    found = {}
    for file in spec.files:
        for candidate in (directory / file.name, directory / file.plain_name):
            if candidate.is_file():
                found[file.name] = candidate
                break
    return found


def other_dataset(files: dict[str, Path], spec: DatasetSpec) -> DatasetSpec | None:
    """The registered dataset other than `spec` whose training labels these files hold, if any.

    An unreadable or unknown labels file returns None: the folder is then used, and loading
    names the bad file, rather than skipping a corrupted copy the user pointed at.
    """
    path = files[spec.train_labels.name]
    try:
        size = payload_size(spec.train_labels)
        owner = owner_of(md5_hex(payload_of(read_stored(path, size), path, size)))
    except DataError:
        return None
    return owner[0] if owner is not None and owner[0].name != spec.name else None


def why_not(directory: Path, spec: DatasetSpec) -> str | None:
    """Why `directory` cannot serve `spec` (for error messages), or None if it can."""
    if not directory.is_dir():
        return "does not exist"
    files = locate(directory, spec)
    missing = [file.name for file in spec.files if file.name not in files]
    if missing:
        return "lacks " + ", ".join(missing)
    other = other_dataset(files, spec)
    if other is not None:
        return f"holds another dataset's files ({other.title})"
    return None


def search(spec: DatasetSpec, data_dir: Path | None = None,
           config_dir: Path | None = None) -> tuple[Path | None, list[tuple[Place, str]]]:
    """The first place that can serve `spec`, and why each place before it could not."""
    skipped = []
    for place in places(spec, data_dir, config_dir):
        reason = why_not(place.path, spec)
        if reason is None:
            return place.path, skipped
        skipped.append((place, reason))
    return None, skipped


def find_dir(spec: DatasetSpec, data_dir: Path | None = None,
             config_dir: Path | None = None) -> Path | None:
    """The first directory that can serve `spec` (see the module docstring), or None."""
    return search(spec, data_dir, config_dir)[0]


def not_found(spec: DatasetSpec, skipped: list[tuple[Place, str]], target: Path,
              extra: str = "") -> DataError:
    """One line: where we looked and why each place did not do, then how to provide the files."""
    looked = "; ".join(f"{place.label} {place.path} {reason}" for place, reason in skipped)
    names = ", ".join(file.name for file in spec.files)
    return DataError(f"{spec.title} not found ({looked}). {extra}To provide it, copy the four "
                     f"files ({names}) into {target}, set WINIT_DATA_DIR to a directory that "
                     f"holds them (or holds them in a subfolder {spec.cache_folder}), "
                     "or pass --data-dir.")

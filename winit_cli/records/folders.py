"""Folders winit writes whole (a report, an exported run's event files) and the rescue folder.

A folder is winit's only if its manifest (MANIFEST, a JSON file inside it) says so and lists
every file in it with the SHA-256 of what winit wrote: only such a folder is ever replaced, so
a user's own file put beside a report (plots/fig.pdf) or a file edited since (a report.md
rewritten by hand) is never deleted; winit refuses instead.

`staged` builds the new folder aside, in a staging folder beside the target made by mkdtemp,
then swaps it in: the previous folder moves into the staging folder (STAGING/PREVIOUS), the
staging folder takes the target's name, and the previous one is deleted. A staging folder holds
a lock file (LOCK) that its process keeps locked until it is done; the OS releases the lock when
the process dies, however it dies (SIGKILL included), so a staging folder whose lock can be
taken was left by a dead process: the next `staged` of the same target deletes it, after
putting back a previous folder caught half way through the swap.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from winit_cli.errors import ResultsError
from winit_cli.records.files import open_regular, read_json, write_json

MANIFEST = ".winit-manifest.json"
LOCK = ".winit-staging"
PREVIOUS = ".winit-previous"
OWN = {MANIFEST, LOCK, PREVIOUS}  # winit's bookkeeping, never listed in a manifest


def _files(folder: Path) -> list[str]:
    """Every entry under `folder` that is not a folder, as posix paths relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):  # does not descend into links
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]
        for name in [*filenames, *links]:
            found.append((here / name).relative_to(folder).as_posix())
    return sorted(found)


def _digest(path: Path) -> str | None:
    """The SHA-256 of the regular file `path` (never through a link), or None."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def manifest_files(folder: Path) -> dict[str, str]:
    """{file: SHA-256} of what winit wrote in `folder`, by its manifest; {} if it has none."""
    try:
        manifest = read_json(folder / MANIFEST) if not (folder / MANIFEST).is_symlink() else None
    except ResultsError:
        return {}
    files = manifest.get("files") if isinstance(manifest, dict) else None
    return {k: v for k, v in files.items() if isinstance(v, str)} \
        if isinstance(files, dict) else {}


def foreign_files(folder: Path) -> list[str]:
    """What in the folder `folder` winit did not write, or changed since (by its manifest)."""
    listed = manifest_files(folder)
    return [f for f in _files(folder) if f.split("/")[0] not in OWN
            and (f not in listed or _digest(folder / f) != listed[f])]


def check_replaceable(folder: Path, what: str) -> None:
    """Raise unless `folder` is absent or a folder winit wrote whole (its manifest lists every
    file in it): only then may it be replaced."""
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
        raise ResultsError(f"{folder}: {kind}, not a folder winit wrote; give {what} another "
                           "folder")
    foreign = foreign_files(folder)
    if not foreign:
        return
    names = f"{', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}"
    if not os.path.lexists(folder / MANIFEST):
        # an older winit's report folder has no manifest either: name the way past it
        raise ResultsError(f"{folder}: holds files winit did not write ({names}; no {MANIFEST}, "
                           "so an older winit's report counts as such too); remove it if it is "
                           f"one (rm -r {shlex.quote(str(folder))}), or give {what} another "
                           "folder")
    raise ResultsError(f"{folder}: holds files winit did not write ({names}); move them, or "
                       f"give {what} another folder")


def _lock(staging: Path, *, wait: bool) -> int | None:
    """A descriptor holding the lock of `staging`, or None if a live process holds it."""
    fd = open_regular(staging / LOCK, os.O_RDONLY | (os.O_CREAT if wait else 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def clean_stale(target: Path) -> list[Path]:
    """Delete the staging folders of `target` left by dead processes (only winit's: a folder of
    this user's named as `staged` names them, holding a lock file no process holds); a previous
    folder caught half way through a swap is put back first. Returns those deleted."""
    removed: list[Path] = []
    candidates: list[Path] = []
    with suppress(OSError):
        candidates = sorted(target.parent.glob(f".{target.name}.*"))
    for folder in candidates:
        try:
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            fd = _lock(folder, wait=False)
        except OSError:
            continue  # no lock file: not a staging folder of winit's
        if fd is None:
            continue  # a live process is writing it
        try:
            if (folder / PREVIOUS).is_dir() and not os.path.lexists(target):
                (folder / PREVIOUS).rename(target)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


@contextmanager
def staged(target: Path, written_by: str, noun: str, what: str = "--out") -> Iterator[Path]:
    """A fresh folder beside `target` to write `noun` (the report, ...) into; on success, with
    a manifest listing what was written, it replaces `target`. A target winit did not write
    (check_replaceable) is refused before anything is written; an error leaves the previous
    folder as it was."""
    check_replaceable(target, what)
    clean_stale(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes 0700; results are ordinary readable folders
        lock = _lock(staging, wait=True)
    except OSError as e:
        raise ResultsError(f"{target}: cannot write the {noun} there ({e.strerror or e})") \
            from None
    try:
        yield staging
        files = {f: _digest(staging / f) for f in _files(staging) if f.split("/")[0] not in OWN}
        write_json(staging / MANIFEST, {"written_by": written_by, "files": files})
        check_replaceable(target, what)  # nothing put there while we wrote
        if os.path.lexists(target):
            target.rename(staging / PREVIOUS)
        staging.rename(target)
        staging = target
    except OSError as e:
        if (staging / PREVIOUS).exists() and not os.path.lexists(target):
            (staging / PREVIOUS).rename(target)
        raise ResultsError(f"{target}: cannot write the {noun} there ({e.strerror or e}); the "
                           f"previous {noun}, if any, is unchanged") from None
    finally:
        if staging == target:
            shutil.rmtree(target / PREVIOUS, ignore_errors=True)
            (target / LOCK).unlink(missing_ok=True)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)


def private_folder(parent: Path, name: str) -> Path:
    """<parent>/<name>-<uid>, this user's own (mode 0700): made if absent; if something else
    stands there (a link, another user's folder, one others may write), a fresh folder made by
    mkdtemp beside it instead. Nothing written in it can be redirected by another user."""
    path = Path(parent) / f"{name}-{os.geteuid()}"
    with suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
        return path
    return Path(tempfile.mkdtemp(prefix=f"{name}-{os.geteuid()}-", dir=parent))

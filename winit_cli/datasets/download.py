"""Download a dataset's missing files: resumable, verified, never half-written under a final name.

Each file goes to `name.part` first, is fully verified (structure, shape, payload md5: see
`idx.read_checked`), then renamed into place, so a file under its final name has always been
verified. A `.part` left by an interrupted download is resumed with an HTTP Range request when
the server honours it. Mirrors are tried in order; one that fails or serves wrong bytes is
skipped.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from winit_cli import interrupts
from winit_cli._version import __version__
from winit_cli.datasets.idx import BadFile, read_checked
from winit_cli.datasets.registry import DatasetSpec, IdxFile
from winit_cli.datasets.store import locate
from winit_cli.errors import DataError

# (file name, bytes done, total bytes or None when the server does not say)
ProgressFn = Callable[[str, int, int | None], None]

_CHUNK = 1 << 16


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
                interrupts.check()  # a stop signal ends a download between chunks
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


def _download_one(spec: DatasetSpec, file: IdxFile, dest: Path, mirrors: Sequence[str],
                  on_progress: ProgressFn | None, timeout: float) -> list[str]:
    """Fetch `file` into `dest` from the first mirror that serves it verified.

    Returns the failures met on the way (empty if the first try worked); the file is in place
    if and only if one mirror succeeded.
    """
    final, part = dest / file.name, dest / (file.name + ".part")
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + file.name
        # A resumed download that fails verification may owe the fault to the old .part, not
        # to this mirror: give the mirror one more chance from scratch.
        for _ in range(2):
            try:
                resumed = _fetch(url, part, file.name, on_progress, timeout)
            except (OSError, http.client.HTTPException, ValueError) as err:
                failures.append(f"{url}: {_reason(err)}")
                break
            try:
                read_checked(part, spec, file)
            except BadFile as err:
                part.unlink()
                failures.append(f"{url}: {err.why} (corrupted download)")
                if not resumed:
                    break
            else:
                os.replace(part, final)
                return failures
    return failures


def download_files(spec: DatasetSpec, dest: Path, mirrors: Sequence[str] | None = None,
                   on_progress: ProgressFn | None = None, timeout: float = 30) -> Path:
    """Download the files of `spec` missing from `dest` (gzip'd, as published); return `dest`.

    `mirrors` defaults to the spec's own. Files already present are left alone (loading
    verifies them).
    """
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"Cannot create the {spec.title} directory {dest}: {err.strerror}. "
                        "Choose a writable place with WINIT_DATA_DIR.") from err
    mirrors = spec.mirrors if mirrors is None else mirrors
    present = locate(dest, spec)
    for file in spec.files:
        if file.name in present:
            continue
        failures = _download_one(spec, file, dest, mirrors, on_progress, timeout)
        if not (dest / file.name).is_file():
            tried = "; ".join(failures) or "no mirrors given"
            raise DataError(f"Could not download {file.name} into {dest} ({tried}).")
    return dest

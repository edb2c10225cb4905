"""Tests for winit_cli.data against the real MNIST files and a real loopback HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from winit_cli.datasets.loader import (
    MNIST_FILES,
    MNIST_MEAN,
    MNIST_STD,
    MnistRaw,
    default_cache_dir,
    download_mnist,
    find_mnist_dir,
    load_mnist,
    make_splits,
    read_idx,
)
from winit_cli.errors import DataError

SMALL = "train-labels-idx1-ubyte.gz"  # 28 KB: the file the download tests fetch


@pytest.fixture(scope="module")
def mnist_dir(mnist_path: Path) -> Path:
    return mnist_path


@pytest.fixture(scope="module")
def raw(mnist_dir: Path) -> MnistRaw:
    return load_mnist(mnist_dir, download=False)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the real user cache, whatever the environment says."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("WINIT_DATA_DIR", raising=False)


def _seed(dest: Path, source: Path, skip: tuple[str, ...] = ()) -> Path:
    """Symlink the official files from `source` into `dest`, except those in `skip`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        if name not in skip:
            (dest / name).symlink_to(source / name)
    return dest


# --- a loopback mirror ----------------------------------------------------------------------


class Mirror:
    """An HTTP server on 127.0.0.1 serving `files` (name -> bytes) under /mnist/.

    Records the headers of every request. `honour_range=False` answers Range requests with the
    whole file (200), as some servers do; `cut_after=N` announces the full length but closes
    the connection after N bytes, like a dropped download.
    """

    def __init__(self, files: dict[str, bytes], honour_range: bool = True,
                 cut_after: int | None = None):
        self.files, self.honour_range, self.cut_after = files, honour_range, cut_after
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def names(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for path, _ in self.requests]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                mirror.requests.append((self.path, dict(self.headers)))
                body = mirror.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                asked = self.headers.get("Range", "")
                if mirror.honour_range and asked.startswith("bytes="):
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if mirror.cut_after is not None:
                    payload = payload[: mirror.cut_after]
                self.wfile.write(payload)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    """Factory for loopback mirrors, all shut down after the test."""
    mirrors: list[Mirror] = []

    def start(files: dict[str, bytes], **kwargs: object) -> Mirror:
        mirrors.append(Mirror(files, **kwargs))
        return mirrors[-1]

    yield start
    for mirror in mirrors:
        mirror.close()


@pytest.fixture(scope="module")
def official(mnist_dir: Path) -> dict[str, bytes]:
    return {name: (mnist_dir / name).read_bytes() for name in MNIST_FILES}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


# --- loading the real files -----------------------------------------------------------------


def test_real_files_decode_to_known_mnist(raw: MnistRaw, mnist_dir: Path) -> None:
    assert raw.source == mnist_dir
    assert raw.train_images.shape == (60000, 784) and raw.train_images.dtype == torch.uint8
    assert raw.test_images.shape == (10000, 784) and raw.test_images.dtype == torch.uint8
    assert raw.train_labels.shape == (60000,) and raw.train_labels.dtype == torch.int64
    assert raw.test_labels.shape == (10000,) and raw.test_labels.dtype == torch.int64
    assert raw.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert raw.test_labels[:5].tolist() == [7, 2, 1, 0, 4]
    # Published per-digit counts of the test set.
    assert torch.bincount(raw.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert int(raw.train_labels.min()) == 0 and int(raw.train_labels.max()) == 9
    assert int(raw.train_images.max()) == 255 and int(raw.train_images.min()) == 0
    # The normalization constants are the training set's own pixel mean and std.
    pixels = raw.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(MNIST_MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(MNIST_STD, abs=1e-4)


def test_uncompressed_files_load_identically(raw: MnistRaw, mnist_dir: Path,
                                             tmp_path: Path) -> None:
    for name in MNIST_FILES:
        with gzip.open(mnist_dir / name) as src, open(tmp_path / name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    plain = load_mnist(tmp_path, download=False)
    assert plain.source == tmp_path
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(plain, field), getattr(raw, field)), field


# --- lookup order ---------------------------------------------------------------------------


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir() == tmp_path / "xdg-cache" / "winit" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the XDG spec: ignored
    assert default_cache_dir() == Path.home() / ".cache" / "winit" / "mnist"


def test_lookup_order(mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, config, env = (_seed(tmp_path / n, mnist_dir) for n in ("data", "config", "env"))
    cache = _seed(default_cache_dir(), mnist_dir)
    monkeypatch.setenv("WINIT_DATA_DIR", str(env))
    assert find_mnist_dir(data, config) == data
    assert find_mnist_dir(None, config) == config
    assert find_mnist_dir() == env
    monkeypatch.delenv("WINIT_DATA_DIR")
    assert find_mnist_dir() == cache
    shutil.rmtree(cache)
    assert find_mnist_dir() is None


def test_incomplete_directories_are_skipped_and_named(mnist_dir: Path, tmp_path: Path) -> None:
    partial = _seed(tmp_path / "partial", mnist_dir, skip=("t10k-images-idx3-ubyte.gz",))
    missing = tmp_path / "nowhere"
    cache = _seed(default_cache_dir(), mnist_dir)
    assert find_mnist_dir(partial, missing) == cache
    shutil.rmtree(cache)
    with pytest.raises(DataError) as err:
        load_mnist(partial, missing, download=False)
    message = str(err.value)
    assert f"{partial} lacks t10k-images-idx3-ubyte.gz" in message
    assert f"{missing} does not exist" in message
    assert "WINIT_DATA_DIR" in message and "--data-dir" in message


def test_mixed_gzip_and_plain_directory_counts(mnist_dir: Path, tmp_path: Path) -> None:
    _seed(tmp_path, mnist_dir, skip=(SMALL,))
    (tmp_path / SMALL[:-3]).write_bytes(gzip.decompress((mnist_dir / SMALL).read_bytes()))
    assert find_mnist_dir(tmp_path) == tmp_path


# --- corruption -----------------------------------------------------------------------------


def _idx(magic: int, dims: list[int], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def test_read_idx_synthetic_gzip_and_plain(tmp_path: Path) -> None:
    blob = _idx(0x803, [2, 3, 4], bytes(range(24)))
    (tmp_path / "a.idx").write_bytes(blob)
    (tmp_path / "b.bin").write_bytes(gzip.compress(blob))  # gzip told by magic, not by name
    expected = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
    assert torch.equal(read_idx(tmp_path / "a.idx"), expected)
    assert torch.equal(read_idx(tmp_path / "b.bin"), expected)


@pytest.mark.parametrize("blob, why", [
    (_idx(0x802, [3], b"abc"), "magic number"),
    (_idx(0x801, [3], b"abcd"), "expected 11"),
    (_idx(0x801, [3], b"ab"), "expected 11"),
    (_idx(0x803, [1, 1, 2], b"ab")[:10], "header cut short"),
    (b"", "magic number"),
])
def test_read_idx_rejects_malformed(tmp_path: Path, blob: bytes, why: str) -> None:
    path = tmp_path / "broken-idx"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=why) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "corrupted" in str(err.value)


def test_truncated_gzip_is_reported(official: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"  # not an official name: only the gzip stream can catch it
    path.write_bytes(official[SMALL][: len(official[SMALL]) // 2])
    with pytest.raises(DataError, match="bad gzip data") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "Delete it" in str(err.value)


def test_truncated_official_file_fails_md5(official: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / SMALL
    path.write_bytes(official[SMALL][:-100])
    with pytest.raises(DataError, match="md5") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_md5_is_checked_even_when_structure_is_valid(official: dict[str, bytes],
                                                     tmp_path: Path) -> None:
    # Same labels, recompressed: a valid gzip'd IDX file, but not the published bytes.
    labels = gzip.decompress(official[SMALL])
    path = tmp_path / SMALL
    path.write_bytes(gzip.compress(labels, mtime=0))
    assert hashlib.md5(path.read_bytes()).hexdigest() != MNIST_FILES[SMALL]
    with pytest.raises(DataError, match=f"md5 .*expected {MNIST_FILES[SMALL]}"):
        read_idx(path)
    (tmp_path / "renamed.gz").write_bytes(path.read_bytes())
    assert read_idx(tmp_path / "renamed.gz").shape == (60000,)  # unofficial names: no md5


def test_wrong_shape_for_an_official_file(mnist_dir: Path, tmp_path: Path) -> None:
    _seed(tmp_path, mnist_dir, skip=("t10k-labels-idx1-ubyte.gz",))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(0x801, [10], bytes(10)))
    with pytest.raises(DataError, match=r"shape \(10,\), expected \(10000,\)"):
        load_mnist(tmp_path, download=False)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Cannot read"):
        read_idx(tmp_path / "absent.idx")


# --- downloading from a loopback mirror -----------------------------------------------------


def test_fresh_download_into_cache(serve, official: dict[str, bytes], raw: MnistRaw) -> None:
    mirror = serve(official)
    loaded = load_mnist(mirrors=[mirror.url])
    assert loaded.source == default_cache_dir()
    assert sorted(mirror.names()) == sorted(MNIST_FILES)
    assert sorted(p.name for p in default_cache_dir().iterdir()) == sorted(MNIST_FILES)
    assert torch.equal(loaded.train_images, raw.train_images)
    assert torch.equal(loaded.test_labels, raw.test_labels)


def test_download_fills_only_missing_files_in_env_dir(serve, official, mnist_dir: Path,
                                                      tmp_path: Path, monkeypatch) -> None:
    env = _seed(tmp_path / "env", mnist_dir, skip=(SMALL,))
    monkeypatch.setenv("WINIT_DATA_DIR", str(env))
    mirror = serve(official)
    assert load_mnist(mirrors=[mirror.url]).source == env
    assert mirror.names() == [SMALL]
    assert not default_cache_dir().exists()


def test_missing_on_first_mirror_falls_through(serve, official, mnist_dir, tmp_path) -> None:
    empty, good = serve({}), serve(official)
    _seed(tmp_path, mnist_dir, skip=(SMALL,))
    download_mnist(tmp_path, [empty.url, good.url])
    assert empty.names() == [SMALL] and good.names() == [SMALL]
    assert (tmp_path / SMALL).read_bytes() == official[SMALL]


def _flipped(blob: bytes, at: int = 1000) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:]


def test_corrupted_mirror_never_leaves_a_final_file(serve, official, mnist_dir,
                                                    tmp_path) -> None:
    bad = serve({SMALL: _flipped(official[SMALL])})
    _seed(tmp_path, mnist_dir, skip=(SMALL,))
    with pytest.raises(DataError, match=f"{SMALL}.*md5 mismatch"):
        download_mnist(tmp_path, [bad.url])
    assert not (tmp_path / SMALL).exists() and not (tmp_path / (SMALL + ".part")).exists()
    good = serve(official)
    download_mnist(tmp_path, [bad.url, good.url])
    assert (tmp_path / SMALL).read_bytes() == official[SMALL]


def test_resume_requests_only_the_rest(serve, official, mnist_dir, tmp_path) -> None:
    body = official[SMALL]
    half = len(body) // 2
    _seed(tmp_path, mnist_dir, skip=(SMALL,))
    (tmp_path / (SMALL + ".part")).write_bytes(body[:half])
    mirror = serve(official)
    progress: list[tuple[str, int, int | None]] = []
    download_mnist(tmp_path, [mirror.url], on_progress=lambda *a: progress.append(a))
    assert [h.get("Range") for _, h in mirror.requests] == [f"bytes={half}-"]
    assert progress[0] == (SMALL, half, len(body)) and progress[-1] == (SMALL, len(body),
                                                                        len(body))
    assert (tmp_path / SMALL).read_bytes() == body
    assert not (tmp_path / (SMALL + ".part")).exists()


def test_server_ignoring_range_restarts(serve, official, mnist_dir, tmp_path) -> None:
    body = official[SMALL]
    _seed(tmp_path, mnist_dir, skip=(SMALL,))
    (tmp_path / (SMALL + ".part")).write_bytes(body[:1000])
    mirror = serve(official, honour_range=False)
    download_mnist(tmp_path, [mirror.url])
    assert mirror.requests[0][1].get("Range") == "bytes=1000-"
    assert (tmp_path / SMALL).read_bytes() == body


def test_stale_part_is_discarded_and_refetched(serve, official, mnist_dir, tmp_path) -> None:
    body = official[SMALL]
    _seed(tmp_path, mnist_dir, skip=(SMALL,))
    (tmp_path / (SMALL + ".part")).write_bytes(_flipped(body[:5000], at=10))
    mirror = serve(official)
    download_mnist(tmp_path, [mirror.url])
    assert [h.get("Range") for _, h in mirror.requests] == ["bytes=5000-", None]
    assert (tmp_path / SMALL).read_bytes() == body


def test_overlong_part_gets_416_and_restarts(serve, official, mnist_dir, tmp_path) -> None:
    body = official[SMALL]
    _seed(tmp_path, mnist_dir, skip=(SMALL,))
    (tmp_path / (SMALL + ".part")).write_bytes(body + b"junk")
    mirror = serve(official)
    download_mnist(tmp_path, [mirror.url])
    assert [h.get("Range") for _, h in mirror.requests] == [f"bytes={len(body) + 4}-", None]
    assert (tmp_path / SMALL).read_bytes() == body


def test_dropped_connection_resumes_on_next_mirror(serve, official, mnist_dir, tmp_path) -> None:
    body = official[SMALL]
    cut = 10000
    dropping, good = serve(official, cut_after=cut), serve(official)
    _seed(tmp_path, mnist_dir, skip=(SMALL,))
    download_mnist(tmp_path, [dropping.url, good.url])
    assert [h.get("Range") for _, h in good.requests] == [f"bytes={cut}-"]
    assert (tmp_path / SMALL).read_bytes() == body


def test_progress_counts_increase_to_the_total(serve, official, mnist_dir, tmp_path) -> None:
    name = "t10k-images-idx3-ubyte.gz"  # 1.6 MB: many chunks
    _seed(tmp_path, mnist_dir, skip=(name,))
    progress: list[tuple[str, int, int | None]] = []
    download_mnist(tmp_path, [serve(official).url], on_progress=lambda *a: progress.append(a))
    done = [d for _, d, _ in progress]
    assert len(done) > 10 and done[0] == 0 and done[-1] == len(official[name])
    assert all(a < b for a, b in zip(done, done[1:], strict=False))
    assert {(n, t) for n, _, t in progress} == {(name, len(official[name]))}


def test_offline_without_files_says_how_to_provide_them(tmp_path: Path) -> None:
    url = _closed_port_url()
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path / "here", mirrors=[url])
    message = str(err.value)
    assert url in message and f"{tmp_path / 'here'} does not exist" in message
    assert f"copy the four files ({', '.join(MNIST_FILES)}) into {default_cache_dir()}" in message
    assert "set WINIT_DATA_DIR" in message and "--data-dir" in message
    assert not any(p.suffix == ".gz" for p in default_cache_dir().iterdir())


# --- splits ---------------------------------------------------------------------------------


def test_splits_sizes_disjoint_and_faithful(raw: MnistRaw) -> None:
    s = make_splits(raw, val_size=5000, seed=0)
    assert s.x_train.shape == (55000, 784) and s.x_train.dtype == torch.float32
    assert s.x_val.shape == (5000, 784) and s.y_val.shape == (5000,)
    assert s.x_test.shape == (10000, 784) and s.y_test.dtype == torch.int64
    # Disjoint and together exactly the training set.
    both = torch.cat([s.train_idx, s.val_idx])
    assert torch.equal(both.sort().values, torch.arange(60000))
    # Rows and labels really come from those indices; the test set is the official one.
    rows = torch.tensor([0, 123, 54999])
    expected = (raw.train_images[s.train_idx[rows]].double() / 255 - MNIST_MEAN) / MNIST_STD
    assert torch.allclose(s.x_train[rows].double(), expected, atol=1e-5)
    assert torch.equal(s.y_train, raw.train_labels[s.train_idx])
    assert torch.equal(s.y_val, raw.train_labels[s.val_idx])
    assert torch.equal(s.y_test, raw.test_labels)


def test_splits_are_normalized(raw: MnistRaw) -> None:
    s = make_splits(raw, val_size=0)
    assert s.x_train.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert s.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    assert s.x_val.shape == (0, 784)


def test_splits_are_deterministic_per_seed(raw: MnistRaw) -> None:
    a, b = make_splits(raw, 1000, 2000, seed=7), make_splits(raw, 1000, 2000, seed=7)
    c = make_splits(raw, 1000, 2000, seed=8)
    assert torch.equal(a.val_idx, b.val_idx) and torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.val_idx, c.val_idx)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(make_splits(raw, 1000, 2000, seed=7).train_idx, a.train_idx)


def test_subset_caps_training_only(raw: MnistRaw) -> None:
    s = make_splits(raw, val_size=1000, subset=500)
    assert len(s.x_train) == 500 and len(s.x_val) == 1000 and len(s.x_test) == 10000
    assert torch.equal(s.val_idx, make_splits(raw, val_size=1000).val_idx)  # same val set


@pytest.mark.parametrize("val_size, subset, why", [
    (-1, None, "0 or more"),
    (0, 0, "at least 1"),
    (60000, None, "exceeds"),
    (50000, 10001, "exceeds"),
])
def test_bad_split_sizes(raw: MnistRaw, val_size: int, subset: int | None, why: str) -> None:
    with pytest.raises(DataError, match=why):
        make_splits(raw, val_size=val_size, subset=subset)

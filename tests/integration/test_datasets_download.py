"""Downloads against a real loopback HTTP server: resumable (.part, HTTP Range), verified,
into the dataset's own folder, for MNIST (published bytes) and Fashion-MNIST (recompressed)."""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from dataset_folders import isolated_env, seed_folder  # noqa: F401  isolated_env: autouse

from winit_cli.datasets import (
    RawDataset,
    default_cache_dir,
    download_files,
    get_dataset,
    load_dataset,
)
from winit_cli.errors import DataError

MNIST = get_dataset("mnist")
FASHION = get_dataset("fashion_mnist")
NAMES = [file.name for file in MNIST.files]
SMALL = "train-labels-idx1-ubyte.gz"  # 28 KB: the file most download tests fetch


# --- a loopback mirror ----------------------------------------------------------------------


class Mirror:
    """An HTTP server on 127.0.0.1 serving `files` (name -> bytes) under /data/.

    Records the headers of every request. `honour_range=False` answers Range requests with the
    whole file (200), as some servers do; `cut_after=N` announces the full length but closes
    the connection after N bytes, like a dropped download.
    """

    def __init__(self, files: dict[str, bytes], honour_range: bool = True,
                 cut_after: int | None = None):
        self.files, self.honour_range, self.cut_after = files, honour_range, cut_after
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data/"
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
def official(mnist_path: Path) -> dict[str, bytes]:
    return {name: (mnist_path / name).read_bytes() for name in NAMES}


@pytest.fixture(scope="module")
def fashion_files(fashion_path: Path) -> dict[str, bytes]:
    return {name: (fashion_path / name).read_bytes() for name in NAMES}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/data/"


def _flipped(blob: bytes, at: int = 1000) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:]


# --- MNIST: the published bytes -------------------------------------------------------------


@pytest.mark.mnist
def test_fresh_download_into_the_datasets_cache_folder(serve, official, mnist_raw) -> None:
    """A missing dataset is downloaded into ~/.cache/winit/mnist and loads as the real thing."""
    mirror = serve(official)
    loaded = load_dataset("mnist", mirrors=[mirror.url])
    assert loaded.source == default_cache_dir(MNIST)
    assert loaded.source.name == "mnist"
    assert sorted(mirror.names()) == sorted(NAMES)
    assert sorted(p.name for p in loaded.source.iterdir()) == sorted(NAMES)
    assert torch.equal(loaded.train_images, mnist_raw.train_images)
    assert torch.equal(loaded.test_labels, mnist_raw.test_labels)


@pytest.mark.mnist
def test_download_goes_to_the_datasets_folder_under_winit_data_dir(
        serve, official, mnist_path: Path, tmp_path: Path, monkeypatch) -> None:
    """With $WINIT_DATA_DIR set, a download lands in $WINIT_DATA_DIR/<cache folder>, fetches only
    the files missing there, and leaves the user cache alone."""
    root = tmp_path / "data"
    seed_folder(root / "mnist", mnist_path, skip=(SMALL,))
    monkeypatch.setenv("WINIT_DATA_DIR", str(root))
    mirror = serve(official)
    assert load_dataset("mnist", mirrors=[mirror.url]).source == root / "mnist"
    assert mirror.names() == [SMALL]
    assert not default_cache_dir(MNIST).exists()


@pytest.mark.mnist
def test_missing_on_first_mirror_falls_through(serve, official, mnist_path, tmp_path) -> None:
    """A mirror that answers 404 is skipped for the next one."""
    empty, good = serve({}), serve(official)
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    download_files(MNIST, tmp_path, [empty.url, good.url])
    assert empty.names() == [SMALL] and good.names() == [SMALL]
    assert (tmp_path / SMALL).read_bytes() == official[SMALL]


@pytest.mark.mnist
def test_corrupted_mirror_never_leaves_a_final_file(serve, official, mnist_path,
                                                    tmp_path) -> None:
    """Bytes that fail verification never appear under the final name, nor as a .part."""
    bad = serve({SMALL: _flipped(official[SMALL])})
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    with pytest.raises(DataError, match=f"{SMALL}.*corrupted download"):
        download_files(MNIST, tmp_path, [bad.url])
    assert not (tmp_path / SMALL).exists() and not (tmp_path / (SMALL + ".part")).exists()
    good = serve(official)
    download_files(MNIST, tmp_path, [bad.url, good.url])
    assert (tmp_path / SMALL).read_bytes() == official[SMALL]


@pytest.mark.mnist
def test_mirror_serving_another_dataset_is_refused(serve, fashion_files, mnist_path,
                                                   tmp_path) -> None:
    """A mirror that serves Fashion-MNIST's labels under MNIST's name fails verification, and
    the failure says whose file it was."""
    wrong = serve(fashion_files)
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    with pytest.raises(DataError, match=f"md5 mismatch: it is Fashion-MNIST's {SMALL}"):
        download_files(MNIST, tmp_path, [wrong.url])
    assert not (tmp_path / SMALL).exists()


@pytest.mark.mnist
def test_resume_requests_only_the_rest(serve, official, mnist_path, tmp_path) -> None:
    """A .part left behind is continued with a Range request, and progress starts from it."""
    body = official[SMALL]
    half = len(body) // 2
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    (tmp_path / (SMALL + ".part")).write_bytes(body[:half])
    mirror = serve(official)
    progress: list[tuple[str, int, int | None]] = []
    download_files(MNIST, tmp_path, [mirror.url], on_progress=lambda *a: progress.append(a))
    assert [h.get("Range") for _, h in mirror.requests] == [f"bytes={half}-"]
    assert progress[0] == (SMALL, half, len(body))
    assert progress[-1] == (SMALL, len(body), len(body))
    assert (tmp_path / SMALL).read_bytes() == body
    assert not (tmp_path / (SMALL + ".part")).exists()


@pytest.mark.mnist
def test_server_ignoring_range_restarts(serve, official, mnist_path, tmp_path) -> None:
    """A 200 answer to a Range request replaces the .part instead of being appended to it."""
    body = official[SMALL]
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    (tmp_path / (SMALL + ".part")).write_bytes(body[:1000])
    mirror = serve(official, honour_range=False)
    download_files(MNIST, tmp_path, [mirror.url])
    assert mirror.requests[0][1].get("Range") == "bytes=1000-"
    assert (tmp_path / SMALL).read_bytes() == body


@pytest.mark.mnist
def test_stale_part_is_discarded_and_refetched(serve, official, mnist_path, tmp_path) -> None:
    """A resumed file that fails verification is fetched once more from scratch."""
    body = official[SMALL]
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    # Byte 1000 is compressed data (a flip in the gzip header's file name would be harmless:
    # the payload, which is what gets verified, would be intact).
    (tmp_path / (SMALL + ".part")).write_bytes(_flipped(body[:5000], at=1000))
    mirror = serve(official)
    download_files(MNIST, tmp_path, [mirror.url])
    assert [h.get("Range") for _, h in mirror.requests] == ["bytes=5000-", None]
    assert (tmp_path / SMALL).read_bytes() == body


@pytest.mark.mnist
def test_overlong_part_gets_416_and_restarts(serve, official, mnist_path, tmp_path) -> None:
    """A .part longer than the file (416) is dropped and the file fetched whole."""
    body = official[SMALL]
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    (tmp_path / (SMALL + ".part")).write_bytes(body + b"junk")
    mirror = serve(official)
    download_files(MNIST, tmp_path, [mirror.url])
    assert [h.get("Range") for _, h in mirror.requests] == [f"bytes={len(body) + 4}-", None]
    assert (tmp_path / SMALL).read_bytes() == body


@pytest.mark.mnist
def test_dropped_connection_resumes_on_next_mirror(serve, official, mnist_path,
                                                   tmp_path) -> None:
    """What arrived before a dropped connection is kept; the next mirror sends only the rest."""
    body = official[SMALL]
    cut = 10000
    dropping, good = serve(official, cut_after=cut), serve(official)
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    download_files(MNIST, tmp_path, [dropping.url, good.url])
    assert [h.get("Range") for _, h in good.requests] == [f"bytes={cut}-"]
    assert (tmp_path / SMALL).read_bytes() == body


@pytest.mark.mnist
def test_progress_counts_increase_to_the_total(serve, official, mnist_path, tmp_path) -> None:
    """Progress reports rise strictly from 0 to the announced length."""
    name = "t10k-images-idx3-ubyte.gz"  # 1.6 MB: many chunks
    seed_folder(tmp_path, mnist_path, skip=(name,))
    progress: list[tuple[str, int, int | None]] = []
    download_files(MNIST, tmp_path, [serve(official).url],
                   on_progress=lambda *a: progress.append(a))
    done = [d for _, d, _ in progress]
    assert len(done) > 10 and done[0] == 0 and done[-1] == len(official[name])
    assert all(a < b for a, b in zip(done, done[1:], strict=False))
    assert {(n, t) for n, _, t in progress} == {(name, len(official[name]))}


def test_offline_without_files_says_how_to_provide_them(tmp_path: Path) -> None:
    """Offline and nowhere to be found: one message naming the mirror tried, the places looked
    in, and how to provide the files."""
    url = _closed_port_url()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path / "here", mirrors=[url])
    message = str(err.value)
    assert "\n" not in message
    assert url in message and f"{tmp_path / 'here'} does not exist" in message
    assert f"copy the four files ({', '.join(NAMES)}) into {default_cache_dir(MNIST)}" in message
    assert "set WINIT_DATA_DIR" in message and "--data-dir" in message
    assert not any(p.suffix == ".gz" for p in default_cache_dir(MNIST).iterdir())


# --- Fashion-MNIST: recompressed bytes, verified by payload ---------------------------------


@pytest.mark.mnist
def test_fashion_download_accepts_recompressed_files(serve, fashion_files, fashion_raw,
                                                     tmp_path: Path, monkeypatch) -> None:
    """A mirror serving the recompressed shared copy (gzip bytes unlike upstream's, payloads
    identical) passes verification; the files land in $WINIT_DATA_DIR/fashion-mnist."""
    for file in FASHION.files:  # the premise: these are not upstream's gzip bytes
        assert hashlib.md5(fashion_files[file.name]).hexdigest() != file.archive_md5
    monkeypatch.setenv("WINIT_DATA_DIR", str(tmp_path / "data"))
    mirror = serve(fashion_files)
    loaded: RawDataset = load_dataset("fashion_mnist", mirrors=[mirror.url])
    assert loaded.source == tmp_path / "data" / "fashion-mnist"
    assert sorted(mirror.names()) == sorted(NAMES)
    assert torch.equal(loaded.train_images, fashion_raw.train_images)
    assert torch.equal(loaded.test_labels, fashion_raw.test_labels)
    assert not default_cache_dir(FASHION).exists()


@pytest.mark.mnist
def test_fashion_download_rejects_an_altered_payload(serve, fashion_files, fashion_path,
                                                     tmp_path) -> None:
    """A well-formed gzip whose payload differs by one pixel is refused by the payload md5."""
    name = "t10k-images-idx3-ubyte.gz"
    seed_folder(tmp_path, fashion_path, skip=(name,))
    altered = {name: gzip.compress(_flipped(gzip.decompress(fashion_files[name]), at=5000))}
    with pytest.raises(DataError, match=f"{name}.*md5 mismatch"):
        download_files(FASHION, tmp_path, [serve(altered).url])
    assert not (tmp_path / name).exists() and not (tmp_path / (name + ".part")).exists()

"""Shared fixtures: the real MNIST and Fashion-MNIST files (never downloaded, never copied into
the repo)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

# The tests train tiny nets, for which one thread is as fast as several on an idle machine and
# far faster on a loaded one (threads spin waiting for each other): set before torch is imported,
# here and in every subprocess a test starts (a user's explicit setting is kept).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The signal tests send SIGINT and SIGHUP to a winit they start, as a terminal would. A shell
# script's background job (`pytest &`, as some CI runners start it) begins with SIGINT ignored,
# `nohup pytest` with SIGHUP ignored; every child inherits that, and winit rightly leaves a
# signal ignored at its start ignored: those tests would wait for a stop that never comes. A
# handler that does nothing keeps pytest itself as it was started, and is reset to the default
# in each child at exec, which gives the children a terminal's disposition.
for _signal in (signal.SIGINT, signal.SIGHUP):
    if signal.getsignal(_signal) is signal.SIG_IGN:
        signal.signal(_signal, lambda *_: None)

# Both datasets publish the same four file names.
MNIST_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def shared_data_dir(folder: str, env_var: str, dataset: str) -> Path:
    """Where the tests read a dataset: `$env_var` if set; else where winit itself finds it
    (`datasets.find_dir`: $WINIT_DATA_DIR, then the user cache, which scripts/setup.sh links to
    the shared copy); else `shared/data/<folder>` beside the repository or beside one of its
    parents (a git worktree may sit a level or two below the main checkout)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser().resolve()
    from winit_cli.datasets import find_dir, get_dataset

    found = find_dir(get_dataset(dataset))
    if found is not None:
        return Path(found).resolve()
    repo = Path(__file__).resolve().parents[1]
    for parent in repo.parents:
        candidate = parent / "shared" / "data" / folder
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / folder


def shared_mnist_dir() -> Path:
    """$WINIT_TEST_MNIST if set, else MNIST found as winit finds it (see `shared_data_dir`)."""
    return shared_data_dir("mnist", "WINIT_TEST_MNIST", "mnist")


def _required(path: Path, what: str, env_var: str) -> Path:
    missing = [n for n in MNIST_NAMES if not (path / n).is_file()]
    if missing:
        # A hard failure, not a skip: these tests are meaningless without the real data.
        pytest.fail(f"{what} files {missing} not found in {path}; set WINIT_DATA_DIR (or "
                    f"{env_var}) to a folder holding them")
    return path


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The same as OMP_NUM_THREADS=1, should torch have been imported before this conftest."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    return _required(shared_mnist_dir(), "MNIST", "WINIT_TEST_MNIST")


@pytest.fixture(scope="session")
def fashion_path() -> Path:
    """The shared Fashion-MNIST copy ($WINIT_TEST_FASHION_MNIST overrides): recompressed files
    whose gzip bytes differ from upstream's, the payloads identical."""
    path = shared_data_dir("fashion-mnist", "WINIT_TEST_FASHION_MNIST", "fashion_mnist")
    return _required(path, "Fashion-MNIST", "WINIT_TEST_FASHION_MNIST")


@pytest.fixture
def winit_data_dir(mnist_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point winit at the shared MNIST folder and at a private, empty cache."""
    monkeypatch.setenv("WINIT_DATA_DIR", str(mnist_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return mnist_path


@pytest.fixture(scope="session")
def mnist_raw(mnist_path: Path):
    """The four files decoded once per session (about a second), found through $WINIT_DATA_DIR."""
    from winit_cli.datasets import load_dataset

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINIT_DATA_DIR", str(mnist_path))
        mp.setenv("XDG_CACHE_HOME", str(mnist_path / "no-such-cache"))  # never the user's cache
        raw = load_dataset("mnist", download=False)
    assert raw.source == mnist_path
    return raw


@pytest.fixture(scope="session")
def fashion_raw(fashion_path: Path):
    """Fashion-MNIST decoded once per session, found through --data-dir."""
    from winit_cli.datasets import load_dataset

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WINIT_DATA_DIR", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(fashion_path / "no-such-cache"))
        raw = load_dataset("fashion_mnist", fashion_path, download=False)
    assert raw.source == fashion_path
    return raw


# --- tiers: the markers say what a test needs, and a unit test cannot lie about it ----------------
#
# A test's needs are marked in its file (a module-level `pytestmark`, or on the test): `mnist`
# (the real dataset files), `slow`, `cluster` (Ray), `browser` (Chromium), `integration` (a
# subprocess, a socket, a whole CLI run: anything else a unit test may not do). Here, at
# collection, every test under tests/integration/ is marked `integration`, and every test under
# tests/unit/ or tests/meta/ that is marked with none of those is marked `unit`; the guard below
# then fails a unit test that starts a process, uses the network or opens a dataset file.

TESTS = Path(__file__).resolve().parent
DATASET_FIXTURES = {"mnist_path", "fashion_path", "winit_data_dir", "mnist_raw", "fashion_raw"}
NOT_UNIT = ("integration", "mnist", "slow", "cluster", "browser")
# Audit events (sys.addaudithook) a unit test may not raise: a new process, or the network.
PROCESS_EVENTS = {"subprocess.Popen", "multiprocessing.Process.start", "os.fork", "os.forkpty",
                  "os.posix_spawn", "os.exec", "os.spawn", "os.system", "pty.spawn"}
NETWORK_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo"}


def _tier(item: pytest.Item) -> list[str]:
    """Mark the item with its tier; what is wrong with its markers, if anything."""
    try:
        place = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
    except ValueError:
        return []
    marks = {m.name for m in item.iter_markers()}
    errors = []
    if place == "integration":
        if "unit" in marks:
            errors.append("marked unit under tests/integration/")
        item.add_marker(pytest.mark.integration)
    elif place in ("unit", "meta") and not marks & set(NOT_UNIT):
        item.add_marker(pytest.mark.unit)
        marks.add("unit")
    if "unit" in marks and (also := marks & set(NOT_UNIT)):
        errors.append(f"marked unit and {sorted(also)}")
    if (data := DATASET_FIXTURES & set(item.fixturenames)) and "mnist" not in marks:
        errors.append(f"uses {sorted(data)} but is not marked mnist")
    return errors


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tiers, above. (Tests outside tests/unit, integration and meta, e.g. an older
    checkout's flat tests/ run by scripts/mutation.py --tests-ref, get no tier.)"""
    wrong = [f"{item.nodeid}: {e}" for item in items for e in _tier(item)]
    if wrong:
        raise pytest.UsageError("tests whose markers do not fit:\n  " + "\n  ".join(wrong))


def _dataset_roots() -> list[Path]:
    """Every folder a test could read a dataset from: the test data, $WINIT_DATA_DIR, the user's
    winit cache, and the shared data folder beside the repository."""
    from winit_cli.datasets.store import cache_root

    found = [os.environ.get(v) for v in ("WINIT_TEST_MNIST", "WINIT_TEST_FASHION_MNIST",
                                         "WINIT_DATA_DIR")]
    roots = [Path(p).expanduser() for p in found if p] + [cache_root()]
    roots += [parent / "shared" / "data" for parent in TESTS.parents]
    return [r.resolve() for r in roots]


class _UnitGuard:
    """Fails the unit test now running if it starts a process, touches the network or opens a
    file under a dataset folder: an audit hook (which cannot be removed, so it stays installed
    and checks only while a unit test runs) raises in the offending call, and the test fails
    afterwards even if the code under test swallowed that error."""

    def __init__(self) -> None:
        self.item: pytest.Item | None = None
        self.broken: list[str] = []
        self.roots: list[str] = []
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            self.roots = [str(r) + os.sep for r in _dataset_roots()]
            # the one process the standard library starts for a run's record (`uname -p`, for
            # platform.uname().processor): started here, once, and cached by `platform`
            import platform

            platform.uname().processor  # noqa: B018
            sys.addaudithook(self.hook)
            # multiprocessing's spawn and forkserver start processes through a call that
            # raises no audit event
            import multiprocessing.process

            start = multiprocessing.process.BaseProcess.start

            def guarded_start(process, *args, **kwargs):
                self.hook("multiprocessing.Process.start", (process.name,))
                return start(process, *args, **kwargs)

            multiprocessing.process.BaseProcess.start = guarded_start
            self.installed = True

    def hook(self, event: str, args: tuple) -> None:
        if self.item is None:
            return
        why = None
        if event in PROCESS_EVENTS:
            why = f"starts a process ({event} {str(args[:2])[:160]})"
        elif event in NETWORK_EVENTS:
            address = args[1] if len(args) > 1 else None
            if not isinstance(address, str | bytes):  # AF_UNIX paths are local, not a network
                why = f"uses the network ({event} {address!r})"
        elif event == "open" and isinstance(args[0], str | bytes):
            path = os.path.abspath(os.fsdecode(args[0]))
            if any((path + os.sep).startswith(r) for r in self.roots):
                why = f"opens a dataset file ({path})"
        if why:
            self.broken.append(why)
            self.item, item = None, self.item  # no second report from inside the raise
            try:
                raise RuntimeError(f"a unit test {why}: mark it with what it needs "
                                   f"({', '.join(NOT_UNIT)})")
            finally:
                self.item = item


_guard = _UnitGuard()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    unit = item.get_closest_marker("unit") is not None
    if unit:
        _guard.install()
        _guard.item, _guard.broken = item, []
    try:
        yield
    finally:
        _guard.item = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if _guard.broken and item.get_closest_marker("unit") is not None:
        if report.passed:  # the code under test swallowed the guard's error
            report.outcome = "failed"
            report.longrepr = f"{item.nodeid}: a unit test that " + \
                "; ".join(dict.fromkeys(_guard.broken))
        _guard.broken = []  # reported once

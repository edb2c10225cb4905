"""A real Ray cluster for tests: head and worker nodes on 127.0.0.1 in a private network namespace.

Outside a namespace, `ray start` binds the machine's own (non-loopback) address and every node
talks to it; inside one made for the test, loopback is the only interface, so the cluster cannot
reach or be reached from anywhere else, and fixed ports cannot collide with anyone's.

    with RayCluster(python=sys.executable, workers=1) as cluster:
        done = cluster.run([sys.executable, "-m", "winit_cli", "compare", "schemes", ...,
                            "--executor", "ray"])           # a driver; RAY_ADDRESS is set
        cluster.kill_worker(0)                      # the whole node: raylet and its workers

The namespace is held by this file run as a script (`unshare -n python raycluster.py`): it
brings `lo` up, says "ready", and waits on its stdin. When the pipe closes, because the test
shut the cluster down or because the test process died however it died, it SIGKILLs every
process in its namespace (Ray's daemons included: `ray start` detaches them) and exits. So no
run leaves a cluster behind, and nothing outside the namespace is ever signalled: `ray stop`
would stop every Ray process on the machine, other people's too.

Nothing of the machine's Ray state reaches the cluster or its drivers: every process started
here sees an environment with no inherited `RAY_*` variable (no RAY_ADDRESS, RAY_AUTH_*,
RAY_TMPDIR of the user's), a HOME of its own (Ray reads and writes `~/.ray/auth_token`: a local
`ray.init()`, as `winit compare --executor ray` does, writes one, and a `ray start` that finds
it turns token authentication on, so a user's token would otherwise decide how the test's
nodes and drivers authenticate), token authentication on with a token made for this cluster
(RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH: what a user's Ray does by default), and one
temporary folder (--temp-dir on every node, RAY_TMPDIR) for sessions, sockets and logs, not
/tmp/ray, which other clusters on the machine share.

Needs root (or CAP_SYS_ADMIN) for `unshare -n` and `nsenter`, both from util-linux.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD_PORT = 6379  # the namespace is private: Ray's default port is free there
WORKER_PORT_BASE = 6400  # worker i's raylet listens on WORKER_PORT_BASE + i: how we find it
OBJECT_STORE_BYTES = 200 * 1024**2  # per node; MNIST splits are tens of MB, each node holds one
START_TIMEOUT_S = 120


class RayCluster:
    """Head + `workers` worker nodes, `cpus` CPUs each, in a namespace of their own."""

    def __init__(self, python: str | Path, workers: int = 1, cpus: int = 1,
                 env: dict[str, str] | None = None):
        self.python = Path(python).absolute()
        self.ray = [str(self.python), "-m", "ray.scripts.scripts"]  # `ray`, wherever it is
        self.workers, self.cpus = workers, cpus
        # Unix socket paths are limited to 107 bytes and Ray nests sessions/<id>/sockets under
        # its temp dir: keep that short (not under pytest's deep tmp_path).
        self.temp = Path(tempfile.mkdtemp(prefix="winit-ray-"))
        self.env = {**isolated_env(self.temp), **(env or {}), "RAY_ADDRESS": self.address}
        self.holder: subprocess.Popen | None = None
        self.start_seconds: float | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{HEAD_PORT}"

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> RayCluster:
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def start(self) -> None:
        started = time.perf_counter()
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", sys.executable, __file__, "--hold"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.holder.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"network namespace not made (unshare needs root): {ready!r}")
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus),
                  "--num-gpus", "0", "--object-store-memory", str(OBJECT_STORE_BYTES),
                  "--disable-usage-stats"]
        common += ["--temp-dir", str(self.temp / "ray")]  # the head's; said on every node
        self._ray_start(["--head", "--port", str(HEAD_PORT), "--include-dashboard", "false",
                         *common])
        for i in range(self.workers):
            self._ray_start(["--address", self.address,
                             "--node-manager-port", str(WORKER_PORT_BASE + i), *common])
        self.wait_for_nodes(1 + self.workers)
        self.start_seconds = time.perf_counter() - started

    def _ray_start(self, args: list[str]) -> None:
        done = self.run([*self.ray, "start", *args], timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def wait_for_nodes(self, count: int, timeout: float = START_TIMEOUT_S) -> None:
        """Until `count` nodes are alive in the cluster's own view (not just started)."""
        script = ("import ray, sys, time\n"
                  "ray.init(logging_level='ERROR', log_to_driver=False)\n"
                  f"deadline = time.time() + {timeout}\n"
                  f"while sum(n['Alive'] for n in ray.nodes()) != {count}:\n"
                  "    if time.time() > deadline: sys.exit('nodes: %s' % ray.nodes())\n"
                  "    time.sleep(0.2)\n")
        done = self.run([str(self.python), "-c", script], timeout=timeout + 30)
        if done.returncode != 0:
            raise RuntimeError(f"cluster nodes did not come up:\n{done.stderr[-2000:]}")

    def shutdown(self) -> None:
        """Close the holder's stdin: it kills everything in the namespace, then exits."""
        if self.holder is not None and self.holder.poll() is None:
            self.holder.stdin.close()
            try:
                self.holder.wait(timeout=30)
            except subprocess.TimeoutExpired:  # never seen; the namespace dies with its last pid
                self.holder.kill()
                self.holder.wait()
        shutil.rmtree(self.temp, ignore_errors=True)

    # --- inside the namespace ---------------------------------------------------------------------

    def _enter(self, command: list[str]) -> list[str]:
        if self.holder is None or self.holder.poll() is not None:
            raise RuntimeError("the cluster's namespace is gone")
        return ["nsenter", "--target", str(self.holder.pid), "--net", "--", *command]

    def run(self, command: list[str], timeout: float = 600,
            env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
        """Run a command (a driver: RAY_ADDRESS points at the head) inside the namespace."""
        return subprocess.run(self._enter(command), env={**self.env, **(env or {})}, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, command: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self._enter(command), env={**self.env, **(env or {})}, cwd=cwd,
                                **kwargs)

    def processes(self) -> dict[int, tuple[int, str]]:
        """pid -> (parent pid, command line) for every process in the namespace."""
        assert self.holder is not None
        return {pid: info for pid, info in _processes_in(_netns(self.holder.pid)).items()
                if pid != self.holder.pid}

    def worker_raylet(self, index: int = 0) -> int | None:
        flag = f"--node_manager_port={WORKER_PORT_BASE + index}"
        return next((pid for pid, (_, cmd) in self.processes().items()
                     if "raylet/raylet" in cmd and flag in cmd.split()), None)

    def tasks_on_worker(self, name: str, index: int = 0) -> list[int]:
        """Worker processes of node `index` now executing task `name` (Ray retitles a worker
        `ray::<task name>` while it runs one)."""
        raylet = self.worker_raylet(index)
        procs = self.processes()
        return [pid for pid in _descendants(procs, raylet)
                if procs[pid][1].startswith(f"ray::{name}")] if raylet else []

    def kill_worker(self, index: int = 0) -> list[int]:
        """SIGKILL worker node `index`: its raylet and everything under it (task workers, agents).
        Returns the pids killed."""
        raylet = self.worker_raylet(index)
        if raylet is None:
            raise RuntimeError(f"worker node {index} has no raylet running")
        victims = [raylet, *_descendants(self.processes(), raylet)]
        for pid in victims:
            _kill(pid)
        return victims


def isolated_env(root: Path) -> dict[str, str]:
    """This process's environment without the machine's Ray state, for a cluster under `root`:
    no inherited RAY_* variable; HOME, Ray's temp folder and a fresh auth token under `root`;
    token authentication on (Ray's default for a local cluster), from that token only."""
    home, token = root / "home", root / "auth_token"
    home.mkdir(exist_ok=True)
    (root / "ray").mkdir(exist_ok=True)
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    kept = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**kept, "HOME": str(home), "RAY_TMPDIR": str(root / "ray"),
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0"}


def _netns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def _processes_in(netns: str) -> dict[int, tuple[int, str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") != netns:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry)] = (parent, cmd.strip())
    return found


def _descendants(procs: dict[int, tuple[int, str]], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in procs.items():
        children.setdefault(parent, []).append(pid)
    out, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2: SIOCGIFFLAGS, set IFF_UP, SIOCSIFFLAGS."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, siocgifflags, request)[:18])[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def _hold() -> None:
    """The namespace's first process: up, ready, wait for stdin to close, kill the rest."""
    _loopback_up()
    print("ready", flush=True)
    sys.stdin.read()  # EOF: the test shut down, or died
    me, netns = os.getpid(), _netns(os.getpid())
    for _ in range(3):  # a dying raylet may still be forking a worker: sweep until none left
        others = [pid for pid in _processes_in(netns) if pid != me]
        if not others:
            break
        for pid in others:
            _kill(pid)
        time.sleep(0.2)


if __name__ == "__main__" and sys.argv[1:] == ["--hold"]:
    _hold()

"""How many threads torch's CPU kernels get: the CPUs free when a run starts, then whatever the
run measures to be fastest.

PyTorch starts one OpenMP thread per core. When another process keeps a core busy, every parallel
kernel waits at its barrier for the thread that is descheduled: on 2 cores beside one busy
process a plain training loop ran at 0.20 of its speed alone with 2 threads and at 0.70 with 1.
So `train.threads: auto` starts from the CPUs that are idle (`free_cpus`: the idle time of the
CPUs this process may use, over a short window, within its cgroup's quota), and a `ThreadTuner`
re-checks during the run by timing a few steps at each neighbouring count. A number pins it.

Kernels split float sums across threads, so the last bits of a run's numbers depend on its thread
count: pin `train.threads` where runs must match bit for bit.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

PROC_STAT = Path("/proc/stat")
# At most this many threads per process (set in sweep workers: --jobs N shares the CPUs).
_share: int | None = None


def set_cpu_share(threads: int | None) -> None:
    """Cap `auto` thread counts in this process (a worker of N sharing the machine's CPUs);
    None lifts the cap. A run in progress follows it from its next step (ThreadControl)."""
    global _share
    _share = threads


def cgroup_cpu_limit(cgroup: str | None = None, root: Path = Path("/sys/fs/cgroup")
                     ) -> float | None:
    """CPUs this process's cgroup may use (quota / period), or None without a quota.

    Reads cgroup v2's `cpu.max` ("max 100000" or "200000 100000") or v1's cpu.cfs_quota_us and
    cpu.cfs_period_us (-1: no quota), for the cgroup named in /proc/self/cgroup."""
    try:
        cgroup = cgroup if cgroup is not None else Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    for line in cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            return parse_cpu_max(_read(root / path.lstrip("/") / "cpu.max"))
        if "cpu" in controllers.split(","):  # v1
            base = root / "cpu" / path.lstrip("/")
            quota, period = _read(base / "cpu.cfs_quota_us"), _read(base / "cpu.cfs_period_us")
            if quota and period and int(quota) > 0:
                return int(quota) / int(period)
            return None
    return None


def parse_cpu_max(text: str | None) -> float | None:
    """cgroup v2 `cpu.max` -> CPUs, or None for "max" (no quota) or an unreadable file."""
    if not text:
        return None
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), within its cgroup's CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = cgroup_cpu_limit()
    return max(1, min(cpus or 1, math.floor(limit) if limit else cpus or 1))


def cpu_times(stat: str, cpus: set[int] | None = None) -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies of each CPU in a /proc/stat text (of `cpus` only, if given).

    Idle counts idle and iowait; busy is everything else, steal included (a hypervisor's
    other guests hold that CPU)."""
    times = {}
    for line in stat.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        cpu = int(name[3:])
        if cpus is None or cpu in cpus:
            values = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            times[cpu] = (values[3] + values[4], sum(values))
    return times


def busy_cpus(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> float:
    """How many CPUs were busy between two `cpu_times` readings (0 to len(after))."""
    busy = 0.0
    for cpu, (idle, total) in after.items():
        idle0, total0 = before.get(cpu, (idle, total))
        if total > total0:
            busy += 1.0 - (idle - idle0) / (total - total0)
    return busy


def threads_for(free: float, limit: int) -> int:
    """Threads to start with: one per free CPU (rounded), at least one, at most `limit`."""
    return max(1, math.floor(min(free, limit) + 0.5))


class LoadMeter:
    """How busy the CPUs this process may use are, measured between `__init__` and `threads()`
    (work can happen in between: this process's own CPU time is taken out). Reads /proc/stat;
    where it cannot, every usable CPU counts as free."""

    MIN_WINDOW = 0.05  # seconds: /proc/stat counts in 10 ms ticks

    def __init__(self) -> None:
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.before = self._read()
        self.own, self.wall = time.process_time(), time.perf_counter()

    def _read(self) -> dict[int, tuple[int, int]] | None:
        try:
            return cpu_times(PROC_STAT.read_text(), self.cpus)
        except OSError:
            return None

    def free(self) -> float:
        """CPUs (of those this process may run on) not busy with other work since the meter
        started; inf where /proc/stat cannot be read."""
        wait = self.MIN_WINDOW - (time.perf_counter() - self.wall)
        if wait > 0:
            time.sleep(wait)
        after = self._read()
        if self.before is None or after is None:
            return math.inf
        own = (time.process_time() - self.own) / (time.perf_counter() - self.wall)
        return len(after) - max(0.0, busy_cpus(self.before, after) - own)


@dataclass
class ThreadTuner:
    """Re-checks the thread count while training: after `first_check` seconds and then every
    `every` seconds it times `trial_steps` steps at the current count and at each neighbour (half
    and double, within 1..limit), and moves to the fastest if it beats the current by `margin`.

    Pure logic: the loop asks `threads()` before each step and reports the step's duration to
    `observe` (`ordinary=False` for steps that also evaluate: they are not timed).
    """

    current: int
    limit: int
    first_check: float = 3.0
    every: float = 60.0
    trial_steps: int = 6
    margin: float = 0.10
    _since_check: float = 0.0
    _next_check: float = 0.0
    _trial: list[int] = field(default_factory=list)  # counts still to time
    _times: dict[int, list[float]] = field(default_factory=dict)
    _warm: bool = False  # the first step after a switch resizes the pool: not timed

    def __post_init__(self) -> None:
        self.current = max(1, min(self.current, self.limit))
        self._next_check = self.first_check

    def threads(self) -> int:
        return self._trial[0] if self._trial else self.current

    def candidates(self) -> list[int]:
        """The current count first, then its neighbours."""
        return list(dict.fromkeys([self.current, max(1, self.current // 2),
                                   min(self.limit, self.current * 2)]))

    def observe(self, seconds: float, ordinary: bool = True) -> None:
        if not self._trial:
            self._since_check += seconds
            if self._since_check >= self._next_check and len(self.candidates()) > 1:
                self._trial, self._times, self._warm = self.candidates(), {}, False
            return
        if not ordinary:
            return
        if not self._warm:  # this step paid for switching to the trial count
            self._warm = True
            return
        timed = self._times.setdefault(self._trial[0], [])
        timed.append(seconds)
        if len(timed) >= self.trial_steps:
            self._trial.pop(0)
            self._warm = False
            if not self._trial:
                self._decide()

    def relimit(self, limit: int) -> None:
        """A new cap (another process started or stopped beside this one): go to it at once if
        the count is above it, or up to it if the cap rose (the CPUs it adds are the ones the
        other process gave back), drop any trial, and check again after `first_check`."""
        grew = limit > self.limit
        self.limit = limit
        self.current = limit if grew else min(self.current, limit)
        self._trial, self._times, self._warm = [], {}, False
        self._since_check, self._next_check = 0.0, self.first_check

    def _decide(self) -> None:
        medians = {n: statistics.median(t) for n, t in self._times.items()}
        best = min(medians, key=medians.get)
        if medians[best] < medians[self.current] * (1 - self.margin):
            self.current = best
        self._since_check, self._next_check = 0.0, self.every


class ThreadControl:
    """A run's `train.threads` applied to torch: a fixed count, or `auto` (start from the free
    CPUs, then a `ThreadTuner`, both within the CPU share; a share set mid-run applies from the
    next step). `restore` puts back the count found; `summary` says what ran.
    """

    def __init__(self, setting: int | str):
        self.previous = torch.get_num_threads()
        self.auto = setting == "auto"
        self.share = _share
        self.limit = min(usable_cpus(), _share or usable_cpus())
        self.meter = LoadMeter() if self.auto else None
        self.fixed = self.limit if self.auto else int(setting)
        self.tuner: ThreadTuner | None = None
        self.changes: list[tuple[int, int]] = []  # (step, threads from that step on)
        self.steps: Counter[int] = Counter()

    def start(self) -> None:
        """Choose the first count (for auto: from the load measured since __init__) and apply
        it; the run's setup may happen in between, and is not counted as load."""
        if self.meter is not None:
            self.tuner = ThreadTuner(threads_for(self.meter.free(), self.limit), self.limit)
        torch.set_num_threads(self.tuner.threads() if self.tuner else self.fixed)

    def before_step(self, step: int) -> None:
        if _share != self.share and self.auto:  # set mid-run: --jobs N started or ended helpers
            self.share = _share
            self.limit = min(usable_cpus(), _share or usable_cpus())
            self.fixed = self.limit
            if self.tuner:
                self.tuner.relimit(self.limit)
        n = self.tuner.threads() if self.tuner else self.fixed
        if not self.changes or self.changes[-1][1] != n:
            torch.set_num_threads(n)
            self.changes.append((step, n))
        self.steps[n] += 1

    def after_step(self, seconds: float, ordinary: bool) -> None:
        if self.tuner:
            self.tuner.observe(seconds, ordinary)

    def restore(self) -> None:
        torch.set_num_threads(self.previous)

    def summary(self) -> dict:
        """For the run record: the count most steps ran with, whether it was chosen, and every
        change as [step, threads]."""
        main = self.steps.most_common(1)[0][0] if self.steps else torch.get_num_threads()
        return {"threads": main, "threads_auto": self.auto,
                "thread_changes": [list(c) for c in self.changes]}

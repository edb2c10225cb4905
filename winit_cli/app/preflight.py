"""Before anything is allocated: will the model fit in memory?

A network too big for the machine would otherwise fail after the data is loaded, with a
traceback, or be killed silently by the OOM killer. The estimate for K members trained together:

    parameters   counted on the model itself, built on PyTorch's meta device (shapes, no
                 memory), so every model kind is counted exactly; float32
    per member   parameters * (weights + gradients + optimizer state: 0 for SGD, 1 for
                 momentum, 3 for Adam: two moments and the copy the probe keeps to measure the
                 update)
    activations  6 tensors of [B, fan_out] per Linear layer in a recorded step (z, phi(z), their
                 gradients, the probe's temporaries), and 3 of [2500, fan_out] in evaluation
    data         the dataset's images (train and test) as bytes and as float32

It is compared with what this process may still allocate: the smallest of MemAvailable
(/proc/meminfo), the cgroup's memory limit less its usage, and the address-space limit
(ulimit -v) less what the process already maps.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

from winit_cli.config import Config
from winit_cli.errors import ConfigError

FLOAT = 4  # bytes
EVAL_CHUNK = 2500  # training.loop.evaluate's chunk
OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "adam": 3}
GB = 1e9


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a group needs while training, by part (app.estimate.CostEstimate is its time)."""

    parameters: int  # bytes of weights + gradients
    optimizer: int
    activations: int
    data: int

    @property
    def total(self) -> int:
        return self.parameters + self.optimizer + self.activations + self.data

    def describe(self) -> str:
        parts = (("parameters and gradients", self.parameters), ("optimizer state",
                 self.optimizer), ("activations", self.activations), ("data", self.data))
        return f"about {_gb(self.total)} ({', '.join(f'{k} {_gb(v)}' for k, v in parts)})"


def _gb(n: float) -> str:
    return f"{n / GB:,.1f} GB" if n >= 0.1 * GB else f"{n / 1e6:,.0f} MB"


def _shape(config: Config) -> tuple[int, list[int], int, int]:
    """(parameters of one member, fan_out of every Linear layer, training examples, pixels in
    the dataset),
    from a model built on the meta device: no memory, whatever its width."""
    import torch

    from winit_cli.datasets import get_dataset
    from winit_cli.models import build_model

    spec = get_dataset(config.data.dataset)
    with torch.device("meta"):
        model = build_model(config.model, spec.input_size, spec.classes, members=1)
    train, test = spec.train_images.shape[0], spec.test_images.shape[0]
    params = sum(p.numel() for p in model.parameters())
    return params, [out for _, out in model.layer_shapes()], train, (train + test) * spec.input_size


def parameter_count(config: Config) -> int:
    return _shape(config)[0]


def estimate(config: Config, members: int = 1) -> MemoryEstimate:
    """The memory a group of `members` configs shaped like `config` needs while training."""
    params, widths, train, pixels = _shape(config)
    weights = params * FLOAT * members
    batch = min(config.train.batch_size, train)
    activations = FLOAT * members * (6 * batch * sum(widths) + 3 * EVAL_CHUNK * max(widths))
    return MemoryEstimate(parameters=2 * weights,
                    optimizer=OPTIMIZER_COPIES[config.train.optimizer] * weights,
                    activations=activations, data=pixels * (1 + FLOAT))


def _meminfo(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")
            ) -> int | None:
    """The cgroup's memory limit less its usage (v2: memory.max/current; v1:
    memory.limit_in_bytes/usage_in_bytes), for the process's own cgroup or, in a container
    where that path is not mounted, the mount's root."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, files = root, ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base, files = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        for folder in (base / path.lstrip("/"), base):
            try:
                limit, usage = ((folder / f).read_text().strip() for f in files)
            except OSError:
                continue
            if limit.isdigit() and usage.isdigit() and int(limit) < 1 << 60:
                return max(0, int(limit) - int(usage))
            break
    return None


def _address_space(status: Path = Path("/proc/self/status")) -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        mapped = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                      if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        mapped = 0
    return max(0, soft - mapped)


def available() -> tuple[int | None, str]:
    """What this process may still allocate, and which limit says so."""
    found = [(n, why) for n, why in ((_meminfo(), "MemAvailable"),
                                     (_cgroup(), "cgroup memory limit"),
                                     (_address_space(), "address-space limit (ulimit -v)"))
             if n is not None]
    return min(found) if found else (None, "unknown")


def check(config: Config, members: int = 1, concurrent: int = 1,
          free: tuple[int | None, str] | None = None) -> MemoryEstimate:
    """Refuse (ConfigError) a group that will not fit, with `concurrent` groups of its size
    training at once (--jobs)."""
    need = estimate(config, members)
    free = free if free is not None else available()
    if free[0] is not None and need.total * concurrent > free[0]:
        m = config.model
        shape = f"depth {m.depth}, width " + (str(m.width) if m.widths is None
                                             else "-".join(map(str, m.widths)))
        who = f"{members} members of " if members > 1 else ""
        times = f"{concurrent} groups at once, each " if concurrent > 1 else ""
        raise ConfigError(
            f"model too big for this machine's memory: {who}{shape} needs {times}"
            f"{need.describe()}; {_gb(free[0])} is available ({free[1]}); reduce model.width, "
            "model.depth or train.batch_size")
    return need


def check_groups(groups: list[list[Config]], jobs: int = 1) -> None:
    """A sweep's groups, before any trains: with --jobs N, N of the largest at once."""
    if groups:
        largest = max(groups, key=lambda g: estimate(g[0], len(g)).total)
        check(largest[0], len(largest), min(jobs, len(groups)))

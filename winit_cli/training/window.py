"""The training values of a metrics row: each member's sums of per-step values since the last
row (`train_loss`, `train_accuracy`, ...), averaged when a row is written. One window for CLI
runs (K members) and `winit.watch` (one)."""

from __future__ import annotations

import torch


class Window:
    """Per-member sums of named per-step values, and how many steps they hold.

    A value may be a Python float or a 0-d tensor: a tensor is summed on its device, so that the
    steps between rows cost no transfer (and no wait for a GPU); a row reads it once. The CLI's
    float32 losses, as Python floats, are summed in float64; a member's NaN is never read once it
    has diverged."""

    def __init__(self, members: int):
        self.members = members
        self.reset()

    def add(self, **values: list[float | torch.Tensor]) -> None:
        """One step's values: a list of one per member under each name."""
        for name, new in values.items():
            sums = self.sums.get(name, [0.0] * self.members)
            self.sums[name] = [a + b for a, b in zip(sums, new, strict=True)]
        self.steps += 1

    def row(self, member: int, step: int, epoch: int | None) -> dict:
        """A metrics row: the step, its epoch, and each value's mean over the window."""
        return {"step": step, "epoch": epoch,
                **{name: float(sums[member]) / self.steps for name, sums in self.sums.items()}}

    def reset(self) -> None:
        self.sums: dict[str, list] = {}
        self.steps = 0

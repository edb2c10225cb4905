"""Each member's norm of many tensors at once, exact where float32 fails: what records are made of.

float32 sums of squares lose elements below ~1e-19 (their squares underflow, or are flushed to
zero) and overflow above ~1e19: in vanishing and exploding nets a float32 norm reads 0 where the
gradient is 1e-20, or inf where it is 1e20. So norms are computed in float32, and those outside
SAFE_BAND are recomputed in float64 (inside it, what underflowed is below 1e-7 of the result).
Casting everything to float64 would double the cost of recording.

At these sizes a record costs passes over memory and kernel calls, not arithmetic: the 2-norms
of a step go in one `_foreach_norm` call (as `clip_grad_norm_` does), and a tensor wanted both
as a sum of |x| and as its largest |x| is made absolute once, into one buffer kept between
steps (`AbsStats` says why one).
"""

from __future__ import annotations

import numpy as np
import torch

SAFE_BAND = (1e-12, 1e12)


def out_of_band(values: np.ndarray) -> np.ndarray:
    return ~((values >= SAFE_BAND[0]) & (values <= SAFE_BAND[1]))


def norm64(t: torch.Tensor, ord: float = 2) -> np.ndarray:
    """Each member's norm of t ([K, ...]) in float64: exact where float32 under- or overflows."""
    return torch.linalg.vector_norm(t.detach().flatten(1).double(), ord, dim=1).cpu().numpy()


def to_host(tensors: list[torch.Tensor]) -> np.ndarray:
    """The tensors' values, flattened and concatenated, float64 on the CPU. Off a GPU that is
    one transfer (one sync); on the CPU each is read where it lies."""
    if not tensors:
        return np.empty(0)
    if tensors[0].device.type != "cpu":
        return torch.cat([t.reshape(-1) for t in tensors]).double().cpu().numpy()
    return np.concatenate([t.numpy().reshape(-1) for t in tensors], dtype=np.float64)


def l2_norms(tensors: list[torch.Tensor], members: int) -> torch.Tensor:
    """Each member's 2-norm of each tensor ([K, ...]), [len(tensors) * K] tensor-major, on the
    device, in one `_foreach_norm` call. Not checked against SAFE_BAND: see `redo_in_float64`."""
    if not tensors:
        return torch.empty(0)
    # With one member, the whole tensor is the member: no per-member slices to make.
    return torch.stack(torch._foreach_norm(
        [m for t in tensors for m in (t.unbind(0) if members > 1 else (t,))], 2))


class AbsStats:
    """Sums of |x| and largest |x| per member, each tensor made absolute in turn into one buffer
    this object keeps, sized for the largest: reused at once, the buffer stays in cache, where
    one buffer per tensor (all of a step's weight gradients again) pushed the training data out
    of it; recording every 10 steps ran at 0.88 of the plain loop with one buffer per tensor,
    0.93 with one for all."""

    def __init__(self) -> None:
        self._buffer = torch.empty(0)
        # [K, n] views of the buffer by (K, n): made once, not at every record (a view costs
        # a dispatch, and a record is short enough for those to show)
        self._views: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, tensors: list[torch.Tensor], members: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """([len * K] sums of |x|, [len * K] largest |x|), tensor-major, on the device. Call
        under no_grad."""
        if not tensors:
            return torch.empty(0), torch.empty(0)
        self._size_for(tensors)
        sums, largest = [], []
        for t in tensors:
            flat = t.reshape(members, -1)  # a view: gradients are contiguous
            absolute = torch.abs(flat, out=self._view(flat.shape))
            # a plain sum of |x|: torch's cascaded sum is exact to ~1e-7 relative, where the L1
            # `_foreach_norm` and `vector_norm` were measured 2e-6 to 1e-5 off on 37k-200k values
            sums.append(absolute.sum(1))
            # amax of |x|: the inf norm, which `_foreach_norm` does not vectorize on the CPU,
            # was measured 10x slower, and `_foreach_max` 2x slower; exact either way
            largest.append(absolute.amax(1))
        return torch.cat(sums), torch.cat(largest)

    def _size_for(self, tensors: list[torch.Tensor]) -> None:
        like, size = tensors[0], max(t.numel() for t in tensors)
        if self._buffer.numel() < size or self._buffer.dtype != like.dtype \
                or self._buffer.device != like.device:
            self._buffer = torch.empty(size, dtype=like.dtype, device=like.device)
            self._views = {}

    def _view(self, shape: torch.Size) -> torch.Tensor:
        if (view := self._views.get(tuple(shape))) is None:
            view = self._views[tuple(shape)] = self._buffer[:shape.numel()].view(shape)
        return view


def redo_in_float64(values: np.ndarray, tensors: list[torch.Tensor | None], rows,
                    order: float) -> None:
    """Recompute in float64, in place, those of `rows` of values ([N, K], norms of `order` of
    `tensors`) that float32 may have got wrong: a 2-norm's squares under- and overflow, a sum of
    |x| (order 1) only overflows. A largest |x| is exact: never pass those."""
    rows = np.asarray(rows, dtype=int)
    with np.errstate(invalid="ignore"):
        wrong = out_of_band(values[rows]) if order == 2 else ~np.isfinite(values[rows])
    for i in rows[wrong.any(axis=1)]:
        values[i] = norm64(tensors[i], order)


def member_norms(tensors: list[torch.Tensor | None]) -> np.ndarray:
    """L2 norm of each member ([K, ...] slices) of each tensor: [len(tensors), K], float64 (NaN
    for None); float64 for any outside SAFE_BAND."""
    present = [t.detach() for t in tensors if t is not None]
    members = present[0].shape[0] if present else 1
    norms = np.full((len(tensors), members), np.nan)
    rows = [i for i, t in enumerate(tensors) if t is not None]
    norms[rows] = to_host([l2_norms(present, members)]).reshape(-1, members)
    redo_in_float64(norms, tensors, rows, 2)
    return norms

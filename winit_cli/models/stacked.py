"""Layers of K stacked members that more than one kind uses: Linear, BatchNorm, LayerNorm and
dropout, each acting on member k with member k's parameters (and noise) only.

Activations are [K, B, features], or [B, features] when K = 1 (the kinds drop the member axis
of a single member, where a plain matmul is faster than a batch of one).
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5  # torch.nn.BatchNorm1d / LayerNorm's
MOMENTUM = 0.1  # BatchNorm running statistics: r <- (1 - m) r + m * batch value, as torch's


def linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """z = h W^T + b per member: h [K, B, in] or [B, in] (K = 1), w [K, out, in], b [K, out]."""
    if h.dim() == 2:  # squeeze: views (w[0] would allocate a full zero gradient in backward)
        return F.linear(h, w.squeeze(0), None if b is None else b.squeeze(0))
    if b is None:
        return torch.bmm(h, w.transpose(1, 2))
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _per_member(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A [K, features] tensor shaped to broadcast against x."""
    return p.squeeze(0) if x.dim() == 2 else p.unsqueeze(1)


class StackedNorm(nn.Module):
    """BatchNorm or LayerNorm of every member: y = gamma * (x - mean) / sqrt(var + eps) + beta.

    batch: mean and biased variance of each unit over the batch in training (Ioffe & Szegedy
    2015), running estimates in eval (`model.eval()`), updated as torch.nn.BatchNorm1d does
    (momentum 0.1, the unbiased batch variance). A batch of one normalizes to beta (its
    variance is 0) and leaves the running estimates alone.
    layer: mean and biased variance over each example's units (Ba, Kiros & Hinton 2016), the same
    in training and eval. gamma and beta are per member and per unit, trained like any weight;
    `inits.initialize` sets gamma = 1, beta = 0.
    """

    def __init__(self, kind: str, members: int, features: int):
        super().__init__()
        if kind not in ("batch", "layer"):
            raise ValueError(f"unknown norm {kind!r}")
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(members, features))
        self.bias = nn.Parameter(torch.zeros(members, features))
        if kind == "batch":
            self.register_buffer("running_mean", torch.zeros(members, features))
            self.register_buffer("running_var", torch.ones(members, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layer":
            xhat = F.layer_norm(x, x.shape[-1:], eps=EPS)
        elif self.training:
            mean = x.mean(dim=-2, keepdim=True)
            var = x.var(dim=-2, unbiased=False, keepdim=True)
            xhat = (x - mean) * torch.rsqrt(var + EPS)
            self._track(mean, var, x.shape[-2])
        else:
            mean, var = _per_member(self.running_mean, x), _per_member(self.running_var, x)
            xhat = (x - mean) * torch.rsqrt(var + EPS)
        return xhat * _per_member(self.weight, x) + _per_member(self.bias, x)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        if n < 2:
            return
        shape = self.running_mean.shape  # [K, features]; mean is [K, 1, f] or [1, f]
        self.running_mean.lerp_(mean.reshape(shape), MOMENTUM)
        self.running_var.lerp_(var.reshape(shape) * (n / (n - 1)), MOMENTUM)


def noise_seed(seed: int, step: int) -> int:
    """The seed of member noise at a training step: a hash of both, so that streams of
    different seeds and steps do not overlap as consecutive integers would."""
    digest = hashlib.blake2b(f"winit-dropout:{seed}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class MemberDropout:
    """Inverted dropout on hidden activations, with each member's own masks.

    Member k's masks are drawn from a generator seeded by noise_seed(seeds[k], step), reseeded at
    the start of every training forward pass (`start`), then drawn layer by layer in forward
    order: the masks depend on the member's seed and step only, so a member draws the same alone
    as in a stack, and a step's forward pass redone draws the same masks. Each kept unit is
    scaled by 1 / (1 - rate), as torch.nn.Dropout does; eval mode drops nothing.
    """

    def __init__(self, rate: float, members: int):
        self.rate = rate
        self.seeds = [0] * members
        self.step = 0
        self._generators: list[torch.Generator] = []

    def start(self, device: torch.device) -> None:
        if not self._generators or self._generators[0].device != device:
            self._generators = [torch.Generator(device=device) for _ in self.seeds]
        for g, seed in zip(self._generators, self.seeds, strict=True):
            g.manual_seed(noise_seed(seed, self.step))

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        shape = h.shape[-2:]
        masks = [torch.rand(shape, generator=g, device=h.device, dtype=h.dtype) >= self.rate
                 for g in self._generators]
        mask = masks[0] if h.dim() == 2 else torch.stack(masks)
        return h * mask / (1.0 - self.rate)

"""Singular values of an MLP's input-output Jacobian at initialization.

Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
dynamical isometry"; Saxe, McClelland & Ganguli 2014. The mean squared singular value of the
Jacobian is the product of the layers' chi (mean field); what decides how fast a deep net trains
is the whole spectrum: concentrated near 1 (dynamical isometry) or spread over decades.

The map is from the first hidden layer's pre-activations z_1 to the last hidden layer's z_{L-1},
    z_l = W_l phi(z_{l-1}) + b_l  (l = 2..L-1),     J = W_{L-1} D_{L-2} ... W_2 D_1,
with D_l = diag(phi'(z_l)), J of shape [n_{L-1}, n_1], one J per input. Its singular values here
are the square roots of the eigenvalues of J J^T: n_{L-1} of them per input (zeros included), so
mean(s^2) = tr(J J^T) / n_{L-1}, the squared gain of backpropagation from z_{L-1} to z_1 along a
random direction, which mean-field theory predicts as prod_{l=1}^{L-2} chi_l.

Two methods, pooled over the inputs (measured accuracy: see tests/unit/measure/test_jacobian.py):
- exact: J materialised in float64 by products of column-scaled weights, then svdvals. Costs
  ~2 B n^3 flops per layer plus B SVDs of n x n (0.4 s of one core for 30 layers of 256 and
  16 inputs); memory B n^2 float64.
- lanczos: stochastic Lanczos quadrature (SLQ; Golub & Meurant 2010; Ubaru, Chen & Saad 2017),
  the estimator used for Hessian spectra (Ghorbani, Krishnan & Xiao 2019): per input, m
  Lanczos steps on J J^T from a random start, through products J v and J^T u taken layer by
  layer, never forming J (winit_cli/measure/slq.py). Costs ~4 B m n^2 flops per layer. Chosen
  over randomized SVD, which finds only the top of the spectrum while the spread needs all of
  it. Accuracy: mean(s^2) by a deflated Hutchinson estimate, unbiased (0.1% or better for the
  broad spectra of deep nets at m = 64, n = 128; 2-5% for flat ones, 8 inputs); max, the top
  Ritz value, a lower bound, to 1e-6 once m >= 32; the spread is an m-point Gauss quadrature
  of (ln s)^2 that cannot resolve singular values below ~max / m, so it reads low for broad
  spectra (by 20-25% at m = n / 2, 50-80% at m = n / 8). Its spread_uncertainty (a Gauss-Radau
  bound plus two jackknife standard errors) contained the exact spread in all 96 cases
  measured, but is wide (about the spread itself) until m nears n. So "auto" uses the exact
  method whenever it is affordable: the spread of a broad spectrum has no cheap estimate.

Zeros: singular values at or below zero_rtol (default 1e-6) times the pooled maximum count as
zero (ReLU's dead units give exact zeros; products of many layers give values below float64's
reach). They enter mean(s^2) and zero_fraction, and are left out of the spread, the std of ln s
over the rest; compare spreads only at the same zero_rtol. For a product of Gaussian matrices
the lower tail reaches far below any such cutoff, so the spread is set by the cutoff (for a
critical tanh net of depth 32, width 256, about twice as large in float64 at 1e-12). The
summaries that need no cutoff come with it: var_ratio = var(s^2) / mean(s^2)^2 (the normalized
variance of J J^T's eigenvalues, zeros included; free probability predicts it exactly,
theory/spectra.py's var_sq) and the 10th, 50th and 90th percentiles of s, zeros included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from winit_cli.measure import slq
from winit_cli.models.base import ACTIVATIONS

# The models' own activation functions, so the Jacobian is that of the network they build.
TORCH_ACTIVATIONS = ACTIVATIONS

# "auto" materialises J up to this width: 30 layers of 1024 and 16 inputs take ~30 s of one core
# and 0.4 GB. Beyond it SLQ, with m steps of 128 by default.
EXACT_MAX_WIDTH = 1024
DEFAULT_LANCZOS_STEPS = 128


@dataclass(frozen=True)
class JacobianSpectrum:
    singular_values: torch.Tensor  # [k] float64: all B n values (exact), or Ritz nodes (lanczos)
    weights: torch.Tensor  # [k] float64, sums to 1: each value's share of the pooled spectrum
    method: str  # "exact" or "lanczos"
    mean_sq: float  # mean of s^2, zeros included: compare with prod chi
    max: float  # largest singular value over the inputs (lanczos: a lower bound)
    spread: float  # std of ln s over nonzero s; nan when all are zero
    zero_fraction: float  # share of singular values at or below zero_rtol * max
    spread_uncertainty: float  # lanczos: |spread(m) - spread(m / 2)|; exact: 0
    # Needing no cutoff (module docstring): var(s^2) / mean(s^2)^2, and s's percentiles
    var_ratio: float = math.nan
    quantiles: dict[str, float] = field(default_factory=dict)  # {"q10": ..., "q50", "q90"}
    zero_rtol: float = 1e-6  # the cutoff of `spread` and `zero_fraction`

    def to_summary(self) -> dict[str, float | str]:
        """Flat snake_case fields for a run's summary.json."""
        return {
            "jacobian_method": self.method,
            "jacobian_mean_sq_sv": self.mean_sq,
            "jacobian_max_sv": self.max,
            "jacobian_spread_log_sv": self.spread,
            "jacobian_spread_uncertainty": self.spread_uncertainty,
            "jacobian_zero_fraction": self.zero_fraction,
            "jacobian_spread_zero_rtol": self.zero_rtol,
            "jacobian_var_ratio_sq": self.var_ratio,
            **{f"jacobian_sv_{k}": v for k, v in self.quantiles.items()},
        }


QUANTILES = {"q10": 0.1, "q50": 0.5, "q90": 0.9}


def cutoff_free(values: torch.Tensor, weights: torch.Tensor) -> tuple[float, dict[str, float]]:
    """(var(s^2) / mean(s^2)^2, {q10, q50, q90 of s}) of a weighted spectrum, zeros included:
    the summaries no zero cutoff moves. A percentile is the smallest s whose cumulative
    weight reaches it."""
    lam = values.double() ** 2
    w = weights.double() / weights.double().sum()
    mean = float((w * lam).sum())
    var = float((w * (lam - mean) ** 2).sum())
    order = torch.argsort(values)
    cumulative = torch.cumsum(w[order], 0)
    sorted_values = values.double()[order]
    quantiles = {}
    for name, q in QUANTILES.items():
        i = min(int(torch.searchsorted(cumulative, torch.tensor(q, dtype=cumulative.dtype))),
                len(sorted_values) - 1)
        quantiles[name] = float(sorted_values[i])
    return (var / mean**2 if mean > 0 else math.nan), quantiles


def _layer_slopes(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor | None] | None,
    activation: str,
    z1: torch.Tensor,
) -> list[torch.Tensor]:
    """D_1..D_{L-2} as [B, n_l] float64: phi'(z_l) for the input of each W_{l+1}."""
    if activation not in TORCH_ACTIVATIONS:
        known = ", ".join(sorted(TORCH_ACTIVATIONS))
        raise ValueError(f"unknown activation {activation!r}; known: {known}")
    if biases is not None and len(biases) != len(weights):
        raise ValueError(f"got {len(weights)} weights but {len(biases)} biases")
    phi = TORCH_ACTIVATIONS[activation]
    z = z1.detach().to(torch.float64)
    slopes = []
    for l, w in enumerate(weights):
        with torch.enable_grad():
            leaf = z.clone().requires_grad_(True)
            h = phi(leaf)
            # phi acts elementwise, so the gradient of sum(phi(z)) is phi'(z) entry by entry.
            (slope,) = torch.autograd.grad(h.sum(), leaf)
        slopes.append(slope)
        z = h.detach() @ w.to(torch.float64).T
        if biases is not None and biases[l] is not None:
            z = z + biases[l].to(torch.float64)
    return slopes


def exact_jacobians(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor | None] | None,
    activation: str,
    z1: torch.Tensor,
) -> torch.Tensor:
    """J = W_{L-1} D_{L-2} ... W_2 D_1 at each input: [B, n_{L-1}, n_1], float64.

    weights[i] is W_{i+2} as [n_out, n_in]; biases likewise (or None); z1 is [B, n_1].
    With no weights (one hidden layer) J is the identity.
    """
    slopes = _layer_slopes(weights, biases, activation, z1)
    batch, width = z1.shape
    if not weights:
        return torch.eye(width, dtype=torch.float64).expand(batch, width, width).clone()
    jac = weights[0].to(torch.float64) * slopes[0][:, None, :]  # W_2 D_1: [B, n_2, n_1]
    for w, d in zip(weights[1:], slopes[1:], strict=True):
        jac = w.to(torch.float64) @ (d[:, :, None] * jac)  # W_{l+1} D_l (...): [B, n_{l+1}, n_1]
    return jac


def _log_spread(values: torch.Tensor, weights: torch.Tensor, cutoff: float) -> tuple[float, float]:
    """(std of ln s over s > cutoff, weighted; share of weight at s <= cutoff)."""
    nonzero = values > cutoff
    zero_fraction = float(weights[~nonzero].sum())
    if not nonzero.any():
        return math.nan, zero_fraction
    log_s, share = values[nonzero].log(), weights[nonzero] / weights[nonzero].sum()
    mean_log = (share * log_s).sum()
    return float((share * (log_s - mean_log) ** 2).sum().sqrt()), zero_fraction


def _exact_spectrum(weights, biases, activation, z1, zero_rtol: float) -> JacobianSpectrum:
    jac = exact_jacobians(weights, biases, activation, z1)
    batch, n_out, n_in = jac.shape
    values = torch.linalg.svdvals(jac)  # [B, min(n_out, n_in)]
    if n_in < n_out:  # J J^T has n_out - n_in more eigenvalues, all zero
        values = torch.cat([values, values.new_zeros(batch, n_out - n_in)], dim=1)
    values = values.flatten()
    shares = torch.full_like(values, 1.0 / values.numel())
    top = float(values.max())
    spread, zero_fraction = _log_spread(values, shares, zero_rtol * top)
    mean_sq = float((values**2).mean())
    return JacobianSpectrum(values, shares, "exact", mean_sq, top, spread, zero_fraction, 0.0)


def _gram_operator(weights, slopes) -> Callable[[torch.Tensor], torch.Tensor]:
    """u -> J J^T u for a batch of vectors u [P, n_{L-1}], row p using input p's slopes."""
    mats = [w.to(torch.float64) for w in weights]

    def apply(u: torch.Tensor) -> torch.Tensor:
        g = u
        for w, d in zip(reversed(mats), reversed(slopes), strict=True):
            g = (g @ w) * d  # J^T: D_l W_{l+1}^T g
        for w, d in zip(mats, slopes, strict=True):
            g = (g * d) @ w.T  # J: W_{l+1} D_l g
        return g

    return apply


def _singular_values(theta: torch.Tensor, tau2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SLQ nodes of J J^T [P, m] -> singular values, and weights over all P rows summing to 1."""
    return theta.sqrt(), tau2 / len(tau2)


def _jackknife_error(values: torch.Tensor, shares: torch.Tensor, cutoff: float) -> float:
    """Standard error of the pooled spread over the random probes (rows), by the jackknife."""
    count = len(values)
    if count < 2:
        return math.inf
    keep = ~torch.eye(count, dtype=torch.bool)
    loo = torch.tensor(
        [_log_spread(values[k].flatten(), shares[k].flatten(), cutoff)[0] for k in keep]
    )
    return float(((count - 1) / count * ((loo - loo.mean()) ** 2).sum()).sqrt())


def _lanczos_spectrum(
    weights, biases, activation, z1, steps: int, probes: int, seed: int, zero_rtol: float
) -> JacobianSpectrum:
    """SLQ on J J^T per input; a deflated Hutchinson mean(s^2); a Gauss-Radau spread bound.

    mean(s^2): the SLQ mean sum tau^2 theta is Hutchinson's u^T A u / n, whose error is ruled
    by the few largest eigenvalues. The Lanczos basis Q has already captured those, so we split
    tr A = tr(Q^T A Q) + tr((I - QQ^T) A (I - QQ^T)): the first is tr T, exact; the second is
    estimated from an independent probe g, unbiased since Q does not depend on g (the idea of
    Hutch++, Meyer, Musco, Musco & Woodruff 2021). Exact when m = n.

    Spread: Gauss quadrature moves mass it cannot resolve at the low end up to its lowest node,
    so it underestimates a broad spectrum's spread. The Radau rule with a node pinned at the zero
    cutoff puts such mass as low as it may go. spread_uncertainty is the gap between the two
    plus two jackknife standard errors over the probes (the quadrature weights are random).
    """
    slopes = _layer_slopes(weights, biases, activation, z1)
    slopes = [d.repeat_interleave(probes, dim=0) for d in slopes]  # [B * probes, n_l]
    n_out = weights[-1].shape[0]
    count = z1.shape[0] * probes
    gen = torch.Generator().manual_seed(seed)
    start, probe = (
        torch.randint(0, 2, (count, n_out), generator=gen).to(torch.float64) * 2 - 1
        for _ in range(2)
    )
    gram = _gram_operator(weights, slopes)
    alpha, beta, basis = slq.lanczos(gram, start, min(steps, n_out))
    rest = slq.project_out(basis, probe)
    mean_sq = float((alpha.sum(dim=1) + (rest * gram(rest)).sum(dim=1)).mean()) / n_out

    values, shares = _singular_values(*slq.ritz(slq.tridiagonal(alpha, beta[:, :-1])))
    top = float(values.max())
    cutoff = zero_rtol * top
    spread, zero_fraction = _log_spread(values.flatten(), shares.flatten(), cutoff)
    # The pinned node sits at the cutoff and counts as nonzero; the rule's other nodes lie above.
    pinned = _singular_values(*slq.ritz(slq.gauss_radau(alpha, beta, cutoff**2)))
    pinned_spread, _ = _log_spread(pinned[0].flatten(), pinned[1].flatten(), 0.5 * cutoff)
    uncertainty = abs(pinned_spread - spread) + 2 * _jackknife_error(values, shares, cutoff)
    values, shares = values.flatten(), shares.flatten()
    return JacobianSpectrum(
        values, shares, "lanczos", mean_sq, top, spread, zero_fraction, uncertainty
    )


def jacobian_spectrum(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor | None] | None,
    activation: str,
    z1: torch.Tensor,
    *,
    method: str = "auto",
    lanczos_steps: int = DEFAULT_LANCZOS_STEPS,
    probes_per_input: int = 1,
    zero_rtol: float = 1e-6,
    seed: int = 0,
) -> JacobianSpectrum:
    """Singular values of dz_{L-1}/dz_1 at the inputs z1 [B, n_1], pooled, with summaries.

    weights[i] is W_{i+2} as [n_out, n_in] (layers 2..L-1), biases likewise or None. method:
    "exact", "lanczos", or "auto" (exact up to EXACT_MAX_WIDTH wide, where it is cheap and
    exact, lanczos beyond). Example, a 10-layer 64-wide tanh net at criticality::

        ws = [torch.randn(64, 64) / 8 for _ in range(8)]
        jacobian_spectrum(ws, None, "tanh", torch.randn(16, 64)).spread
    """
    if z1.dim() != 2 or z1.shape[0] == 0:
        raise ValueError(f"z1 must be [n_inputs, width] with n_inputs >= 1, got {tuple(z1.shape)}")
    if method not in ("auto", "exact", "lanczos"):
        raise ValueError(f"unknown method {method!r}; known: auto, exact, lanczos")
    if lanczos_steps < 1 or probes_per_input < 1:
        raise ValueError("lanczos_steps and probes_per_input must be >= 1")
    widest = max([z1.shape[1]] + [w.shape[0] for w in weights])
    if method == "auto":
        method = "exact" if widest <= EXACT_MAX_WIDTH else "lanczos"
    if method == "exact" or not weights:  # no layers: J = I, nothing to estimate
        spectrum = _exact_spectrum(weights, biases, activation, z1, zero_rtol)
    else:
        spectrum = _lanczos_spectrum(
            weights, biases, activation, z1, lanczos_steps, probes_per_input, seed, zero_rtol)
    var_ratio, quantiles = cutoff_free(spectrum.singular_values, spectrum.weights)
    return replace(spectrum, var_ratio=var_ratio, quantiles=quantiles, zero_rtol=zero_rtol)

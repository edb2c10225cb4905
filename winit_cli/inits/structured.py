"""Init schemes: orthogonal, data-calibrated (LSUV) and edge-of-chaos (critical).

In the style of `torch/nn/init.py`: each function fills a Linear layer's weight and bias in place;
its docstring names the paper and gives the formula (torch is imported inside each, see
inits/common.py); it reuses `torch.nn.init` where that already
has the scheme. Its keyword parameters (with defaults) are what a config's `init.params` may set.
Beside each scheme, its variance function: the per-element weight and bias variances it produces,
which the mean-field theory uses. Importing `winit_cli.inits` registers every scheme.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

from winit_cli import theory
from winit_cli.errors import ConfigError
from winit_cli.inits.common import fill_bias, no_grad
from winit_cli.inits.registry import activation_gain, register

if TYPE_CHECKING:
    import torch

    from winit_cli.models.base import StackedModel


def _orthogonal_variance(fan_in, fan_out, activation, *, gain, **_):
    # A semi-orthogonal [out, in] matrix times gain has |W|_F^2 = gain^2 min(out, in): its mean
    # square per element is gain^2 min / (out in) = gain^2 / max(out, in).
    gain = activation_gain(activation) if gain is None else gain
    return gain**2 / max(fan_in, fan_out), 0.0


@register("orthogonal", variance=_orthogonal_variance,
          formula="gain Q, Q semi-orthogonal (QR of a Gaussian); Var = gain^2 / max(fans)")
def orthogonal(weight, bias, *, activation, generator, gain=None, bias_value=0.0):
    """Orthogonal: gain times a random (semi-)orthogonal matrix, gain from the activation.

    Saxe, McClelland & Ganguli 2013, "Exact solutions to the nonlinear dynamics of learning in
    deep linear neural networks": in a deep linear net orthogonal weights preserve the norm of
    every vector, not only on average, so learning is depth-independent. W = gain Q with
    Q Q^T = I (out <= in) or Q^T Q = I (out >= in), from the QR decomposition of a Gaussian
    matrix (`torch.nn.init.orthogonal_`). Per-element variance gain^2 / max(fan_in, fan_out):
    for a square layer sigma_w^2 = gain^2, He's for ReLU. Also known as orthogonal / Saxe
    initialization (Keras `Orthogonal`).

    Example: ``init: {scheme: orthogonal, params: {gain: 1.0}}``
    """
    import torch

    gain = activation_gain(activation) if gain is None else gain
    torch.nn.init.orthogonal_(weight, gain=gain, generator=generator)
    fill_bias(bias, bias_value)



def _lsuv_variance(fan_in, fan_out, activation, **_):
    # What `fill` draws: the orthonormal start. The calibrated weights' variance depends on the
    # data (Scheme.data_dependent): measure it from the weights instead.
    return 1.0 / max(fan_in, fan_out), 0.0


@no_grad
def unit_variance_(weight: torch.Tensor, bias: torch.Tensor | None, z: torch.Tensor, *,
                   tol: float = 0.1, max_iter: int = 10) -> float:
    """LSUV's step for one layer: W <- W / sqrt(Var(z)) until |Var(z) - 1| < tol, at most
    `max_iter` times, with z the layer's output on a batch; returns the factor applied to W.

    The variance is over all of z's entries (batch, units, positions), as in the paper. z is
    affine in W, z = (x W^T or a convolution of x by W) + b, so scaling W by s turns z into
    b + s (z - b): z is updated in place without recomputing. `bias` must broadcast against z
    (a Conv's [C] bias as [C, 1, 1]); it is not changed.
    """
    total = 1.0
    for _ in range(max_iter):
        var = z.double().var().item()
        if abs(var - 1) < tol or not var > 0 or not math.isfinite(var):
            break  # converged, or nothing to rescale (a dead or overflowing input)
        scale = 1 / math.sqrt(var)
        weight.mul_(scale)
        total *= scale
        if bias is None:
            z.mul_(scale)
        else:
            z.sub_(bias).mul_(scale).add_(bias)
    return total


@no_grad
def _lsuv_calibrate(model: StackedModel, member: int, data: torch.Tensor, *, tol: float,
                    max_iter: int, batch_size: int, **_) -> None:
    """Rescale member `member`'s Linear layers, input side first, to unit pre-activation variance.

    The batch is data[:batch_size]: the first examples of the training split, which is itself a
    seeded random permutation of the dataset, so every member and every run calibrates on the
    same examples. The variance is over all of z_l's entries (batch and units), as in the paper.

    One forward pass of the model itself does it, whatever the kind: its `Trace` hands each
    layer's output z_l to `rescale` before the layers above see it, and since z_l = h W_l^T + b_l
    is affine in W_l, scaling W_l by s turns z_l into b_l + s (z_l - b_l) without recomputing.
    """
    from winit_cli.models.base import Trace

    layers = model.linears()

    def rescale(l: int, z: torch.Tensor) -> torch.Tensor:
        w = layers[l].weight[member]  # a view: scaling it changes only this member
        b = None if layers[l].bias is None else layers[l].bias[member]
        mine = z.view(model.members, -1, z.shape[-1])[member]  # [B, fan_out], a view of z
        unit_variance_(w, b, mine, tol=tol, max_iter=max_iter)
        return z

    x = data[:batch_size].to(layers[0].weight.device, layers[0].weight.dtype)  # [B, input]
    model(x.expand(model.members, *x.shape), Trace(adjust=rescale))


@register("lsuv", variance=_lsuv_variance, calibrate=_lsuv_calibrate,
          formula="orthonormal, then W_l /= sqrt(Var z_l) on a batch, layer by layer")
def lsuv(weight, bias, *, activation, generator, tol=0.1, max_iter=10, batch_size=512):
    """LSUV: orthonormal weights, then each layer rescaled so Var(z_l) = 1 on a data batch.

    Mishkin & Matas 2015, "All you need is a good init". Start from orthonormal matrices (Saxe
    et al. 2013, gain 1, variance 1 / max(fan_in, fan_out)) and zero biases; then, for each layer
    l in order, forward a batch of `batch_size` training inputs and set W_l <- W_l / sqrt(Var(z_l))
    until |Var(z_l) - 1| < tol, at most `max_iter` times (the paper's Tol_var = 0.1, T_max = 10).
    The pre-activations z_l then have unit variance on that batch whatever the activation, data
    or depth: LSUV measures what He and Glorot derive. The batch is the first `batch_size`
    examples of the training split (the same for every run). The weights depend on the data, so
    the mean-field prediction uses their measured variance, not a formula. Also known as
    layer-sequential unit-variance initialization.

    Example: ``init: {scheme: lsuv, params: {tol: 0.1, batch_size: 512}}``
    """
    import torch

    torch.nn.init.orthogonal_(weight, gain=1.0, generator=generator)
    if bias is not None:
        torch.nn.init.zeros_(bias)


@functools.lru_cache(maxsize=64)
def critical_sigma_w2(activation: str, sigma_b2: float) -> float:
    """theory.critical_sigma_w2, cached (quadrature takes ~0.1 s), failing as a ConfigError."""
    try:
        return theory.critical_sigma_w2(activation, sigma_b2)
    except ValueError as e:
        raise ConfigError(
            f"init.scheme critical: {e} (chi at the fixed point jumps across 1 without reaching "
            "it); choose another scheme, activation or init.params.sigma_b2"
        ) from None


def _critical_variance(fan_in, fan_out, activation, *, sigma_b2, **_):
    return critical_sigma_w2(activation, float(sigma_b2)) / fan_in, float(sigma_b2)


def _scaled_orthogonal_(weight: torch.Tensor, sigma_w2: float, generator) -> None:
    """A semi-orthogonal matrix with the per-element variance of N(0, sigma_w2 / fan_in).

    gain Q has mean square gain^2 / max(fan_in, fan_out) per element, so gain^2 =
    sigma_w2 max / fan_in: every input direction is then scaled by sqrt(sigma_w2) (when
    fan_out >= fan_in) exactly, not only on average.
    """
    import torch

    fan_out, fan_in = weight.shape
    gain = math.sqrt(sigma_w2 * max(fan_in, fan_out) / fan_in)
    torch.nn.init.orthogonal_(weight, gain=gain, generator=generator)


def _gaussian_bias_(bias, sigma_b2: float, generator) -> None:
    import torch

    if bias is None:
        return
    if sigma_b2 > 0:
        torch.nn.init.normal_(bias, 0.0, math.sqrt(sigma_b2), generator=generator)
    else:
        torch.nn.init.zeros_(bias)


@register("critical", variance=_critical_variance,
          formula="N(0, sigma_w2*/fan_in) or orthogonal, b ~ N(0, sigma_b2), chi* = 1")
def critical(weight, bias, *, activation, generator, sigma_b2=0.0, orthogonal=False):
    """Edge of chaos: W ~ N(0, sigma_w2*/fan_in), b ~ N(0, sigma_b2), with chi = 1 at q*.

    Poole et al. 2016, "Exponential expressivity in deep neural networks through transient
    chaos"; Schoenholz et al. 2016, "Deep Information Propagation". sigma_w2* solves
    chi* = sigma_w2 E[phi'(sqrt(q*) z)^2] = 1 at the fixed point q* of the length map for the
    given bias variance (`theory.critical_sigma_w2`): 2 for ReLU (He normal, any sigma_b2),
    1 for tanh with sigma_b2 = 0 (LeCun normal), found numerically when sigma_b2 > 0 (1.76 for
    tanh at 0.05). Gradients then neither vanish nor explode exponentially with depth: the depth
    scale xi = 1 / |ln chi| is infinite. Some activations (GELU) have no such point; the config
    is then rejected. Also known as critical initialization, edge-of-chaos initialization.

    orthogonal: true draws scaled orthogonal weights with the same variance instead
    (Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
    dynamical isometry"): the same chi, but with tanh the Jacobian's singular values stay
    concentrated as depth grows, where Gaussian weights spread them.

    Example: ``init: {scheme: critical, params: {sigma_b2: 0.05, orthogonal: true}}``
    """
    import torch

    sigma_w2 = critical_sigma_w2(activation, float(sigma_b2))
    if orthogonal:
        _scaled_orthogonal_(weight, sigma_w2, generator)
    else:
        torch.nn.init.normal_(weight, 0.0, math.sqrt(sigma_w2 / weight.shape[1]),
                              generator=generator)
    _gaussian_bias_(bias, float(sigma_b2), generator)


def _mean_field_variance(fan_in, fan_out, activation, *, sigma_w2, sigma_b2, **_):
    return float(sigma_w2) / fan_in, float(sigma_b2)


@register("mean_field", variance=_mean_field_variance,
          formula="N(0, sigma_w2/fan_in), b ~ N(0, sigma_b2), any point of the phase diagram")
def mean_field(weight, bias, *, activation, generator, sigma_w2=1.0, sigma_b2=0.0):
    """Mean-field parameters set directly: W ~ N(0, sigma_w2/fan_in), b ~ N(0, sigma_b2).

    The parametrisation of Poole et al. 2016 and Schoenholz et al. 2017, for a point anywhere
    in the (sigma_w2, sigma_b2) plane: ordered (chi_1 < 1), critical, or chaotic. `winit phase`
    sweeps it over sigma_w2 x depth. sigma_w2 = 1 is LeCun normal, 2 He normal.

    Example: ``init: {scheme: mean_field, params: {sigma_w2: 1.5, sigma_b2: 0.05}}``
    """
    import torch

    torch.nn.init.normal_(weight, 0.0, math.sqrt(float(sigma_w2) / weight.shape[1]),
                          generator=generator)
    _gaussian_bias_(bias, float(sigma_b2), generator)

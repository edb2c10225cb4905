"""The init schemes themselves: one function per scheme, each registered in `inits.SCHEMES`.

In the style of `torch/nn/init.py`: each function fills a Linear layer's weight and bias in place;
its docstring names the paper and gives the formula; it reuses `torch.nn.init` where that already
has the scheme. Its keyword parameters (with defaults) are what a config's `init.params` may set.
Beside each scheme, its variance function: the per-element weight and bias variances it produces,
which the mean-field theory uses.

`inits/__init__.py` imports this module, so importing `inits` registers every scheme.
"""

from __future__ import annotations

import functools
import math

import torch

from winit_cli.errors import ConfigError
from winit_cli.inits.registry import activation_gain, register
from winit_cli.measure import theory
from winit_cli.models.base import StackedModel, Trace


def _fans(fan_in: int, fan_out: int, mode: str) -> int:
    return fan_in if mode == "fan_in" else fan_out


def _fill_bias(bias: torch.Tensor | None, value: float) -> None:
    if bias is not None:
        torch.nn.init.constant_(bias, value)


def _normal_variance(fan_in, fan_out, activation, *, std, **_):
    return std**2, 0.0


@register("normal", variance=_normal_variance, formula="N(mean, std^2)")
def normal(weight, bias, *, activation, generator, std=0.01, mean=0.0, bias_value=0.0):
    """Normal N(mean, std^2) with a fixed std, independent of the layer's size (default std 0.01).

    The "small random numbers" init of early deep-learning practice. Since each layer multiplies
    the backpropagated gradient's variance by fan_in * std^2 * E[phi'(z)^2], a std of 0.01 at
    width 512 shrinks it by ~20x per layer: deep nets vanish (Glorot & Bengio 2010).

    Example: ``init: {scheme: normal, params: {std: 0.01}}``
    """
    torch.nn.init.normal_(weight, mean, std, generator=generator)
    _fill_bias(bias, bias_value)


@register("mean1_normal", variance=_normal_variance, formula="N(mean, std^2), mean 1")
def mean1_normal(weight, bias, *, activation, generator, std=1.0, mean=1.0, bias_value=0.0):
    """Normal N(1, std^2): every weight positive on average (the classic exploding case).

    With mean 1 each unit sums fan_in positive contributions, so activations and gradients grow by
    about fan_in per layer and overflow float32 within a few layers of width 512. Mean-field
    theory assumes zero-mean weights and does not apply.

    Example: ``init: {scheme: mean1_normal, params: {std: 1.0}}``
    """
    torch.nn.init.normal_(weight, mean, std, generator=generator)
    _fill_bias(bias, bias_value)


@register("normal_l2", variance=_normal_variance, formula="N(mean, std^2), plus L2 l2 |W|^2")
def normal_l2(weight, bias, *, activation, generator, std=0.01, mean=0.0, bias_value=0.0, l2=1e-3):
    """Zero-mean normal N(0, std^2) init, plus L2 regularization (weight decay `l2`) in training.

    Initialization sets where training starts; L2 regularization adds `l2 * W` to every weight
    gradient during training, pulling weights towards zero. The two are independent knobs: this
    scheme pairs the `normal` init with a penalty so the two can be compared. The recorded
    gradients are those of the data loss alone; `l2` is added to `train.weight_decay`.

    Example: ``init: {scheme: normal_l2, params: {std: 0.01, l2: 0.001}}``
    """
    torch.nn.init.normal_(weight, mean, std, generator=generator)
    _fill_bias(bias, bias_value)


def _xavier_variance(fan_in, fan_out, activation, *, gain, **_):
    return gain**2 * 2.0 / (fan_in + fan_out), 0.0


@register("xavier_uniform", variance=_xavier_variance,
          formula="U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))")
def xavier_uniform(weight, bias, *, activation, generator, gain=1.0, bias_value=0.0):
    """Xavier/Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).

    Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural
    networks". Variance 2 gain^2 / (fan_in + fan_out): a compromise that keeps both forward and
    backward signals at constant variance for a linear (or tanh near 0) network. Also known as
    Glorot initialization.

    Example: ``init: {scheme: xavier_uniform}``
    """
    torch.nn.init.xavier_uniform_(weight, gain=gain, generator=generator)
    _fill_bias(bias, bias_value)


@register("xavier_normal", variance=_xavier_variance,
          formula="N(0, 2 gain^2 / (fan_in + fan_out))")
def xavier_normal(weight, bias, *, activation, generator, gain=1.0, bias_value=0.0):
    """Xavier/Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).

    Glorot & Bengio 2010. Same variance as `xavier_uniform`. Also known as Glorot normal.

    Example: ``init: {scheme: xavier_normal}``
    """
    torch.nn.init.xavier_normal_(weight, gain=gain, generator=generator)
    _fill_bias(bias, bias_value)


def _he_variance(fan_in, fan_out, activation, *, mode, gain, **_):
    gain = activation_gain(activation) if gain is None else gain
    return gain**2 / _fans(fan_in, fan_out, mode), 0.0


def _kaiming(fill, weight, activation, generator, mode, gain):
    if gain is None and activation in ("relu", "leaky_relu", "tanh", "sigmoid", "selu", "linear"):
        # torch.nn.init has this case exactly; leaky_relu's slope is torch's default 0.01.
        a = 0.01 if activation == "leaky_relu" else 0
        fill(weight, a=a, mode=mode, nonlinearity=activation, generator=generator)
        return
    gain = activation_gain(activation) if gain is None else gain
    std = gain / math.sqrt(_fans(*_fan_in_out(weight), mode))
    if fill is torch.nn.init.kaiming_normal_:
        torch.nn.init.normal_(weight, 0.0, std, generator=generator)
    else:
        bound = math.sqrt(3.0) * std  # U(-b, b) has variance b^2 / 3
        torch.nn.init.uniform_(weight, -bound, bound, generator=generator)


def _fan_in_out(weight: torch.Tensor) -> tuple[int, int]:
    return weight.shape[1], weight.shape[0]


@register("he_normal", variance=_he_variance, formula="N(0, gain^2 / fan_mode)")
def he_normal(weight, bias, *, activation, generator, mode="fan_in", gain=None, bias_value=0.0):
    """He/Kaiming normal: N(0, std^2), std = gain / sqrt(fan_mode), gain from the activation.

    He et al. 2015, "Delving Deep into Rectifiers". For ReLU gain = sqrt(2), so each layer keeps
    the variance of the forward signal (mode fan_in) or of the backward signal (mode fan_out).
    Also known as He initialization. `gain` overrides `calculate_gain(activation)`.

    Example: ``init: {scheme: he_normal, params: {mode: fan_in}}``
    """
    _kaiming(torch.nn.init.kaiming_normal_, weight, activation, generator, mode, gain)
    _fill_bias(bias, bias_value)


@register("he_uniform", variance=_he_variance, formula="U(-b, b), b = gain sqrt(3 / fan_mode)")
def he_uniform(weight, bias, *, activation, generator, mode="fan_in", gain=None, bias_value=0.0):
    """He/Kaiming uniform: U(-b, b), b = gain * sqrt(3 / fan_mode), gain from the activation.

    He et al. 2015. Same variance as `he_normal`. Also known as He uniform initialization.

    Example: ``init: {scheme: he_uniform, params: {mode: fan_out}}``
    """
    _kaiming(torch.nn.init.kaiming_uniform_, weight, activation, generator, mode, gain)
    _fill_bias(bias, bias_value)


def _torch_default_variance(fan_in, fan_out, activation, **_):
    # kaiming_uniform_(a=sqrt(5)): gain^2 = 2 / (1 + 5), bound = gain * sqrt(3 / fan_in).
    # Bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    return 1.0 / (3.0 * fan_in), 1.0 / (3.0 * fan_in)


@register("torch_default", variance=_torch_default_variance,
          formula="U(-b, b), b = 1 / sqrt(fan_in); bias too")
def torch_default(weight, bias, *, activation, generator):
    """PyTorch's `nn.Linear` default: W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same for the bias.

    `kaiming_uniform_(a=sqrt(5))`, i.e. variance 1 / (3 fan_in) whatever the activation: a third of
    what a linear network needs and a sixth of He's for ReLU, so deep nets vanish.

    Example: ``init: {scheme: torch_default}``
    """
    torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        bound = 1.0 / math.sqrt(weight.shape[1])
        torch.nn.init.uniform_(bias, -bound, bound, generator=generator)


def _lecun_variance(fan_in, fan_out, activation, *, mode, gain, **_):
    return gain**2 / _fans(fan_in, fan_out, mode), 0.0


@register("lecun_normal", variance=_lecun_variance, formula="N(0, gain^2 / fan_mode), gain 1")
def lecun_normal(weight, bias, *, activation, generator, mode="fan_in", gain=1.0, bias_value=0.0):
    """LeCun normal: N(0, std^2), std = gain / sqrt(fan_mode), gain 1 whatever the activation.

    LeCun, Bottou, Orr & Mueller 1998, "Efficient BackProp": weights of standard deviation
    fan_in^(-1/2), so that a unit's summed input has the variance of one of its inputs. Variance
    1 / fan_in: critical for a linear net, and for tanh without bias (chi = 1 at q* = 0); half
    of He's for ReLU, which therefore vanishes. The init SELU is designed for (Klambauer et al.
    2017). Also known as LeCun initialization; Keras's `lecun_normal` has the same variance
    but draws it from a truncated normal (see `truncated_normal` with gain 1).

    Example: ``init: {scheme: lecun_normal}``
    """
    # kaiming with the linear gain, 1, is LeCun's init; any other gain scales its std.
    _kaiming(torch.nn.init.kaiming_normal_, weight, "linear", generator, mode, gain)
    _fill_bias(bias, bias_value)


@register("lecun_uniform", variance=_lecun_variance,
          formula="U(-b, b), b = gain sqrt(3 / fan_mode), gain 1")
def lecun_uniform(weight, bias, *, activation, generator, mode="fan_in", gain=1.0,
                  bias_value=0.0):
    """LeCun uniform: U(-b, b), b = gain * sqrt(3 / fan_mode), gain 1 whatever the activation.

    LeCun et al. 1998, "Efficient BackProp". Same variance as `lecun_normal`, gain^2 / fan_mode.
    Also known as LeCun uniform (Keras `lecun_uniform`).

    Example: ``init: {scheme: lecun_uniform, params: {gain: 1.0}}``
    """
    _kaiming(torch.nn.init.kaiming_uniform_, weight, "linear", generator, mode, gain)
    _fill_bias(bias, bias_value)


# The std of N(0, 1) cut at +-2: sqrt(1 - 4 pdf(2) / (cdf(2) - cdf(-2))). Keras divides the
# target std by it so that the variance after truncation is the target.
TRUNCATION_STD = 0.87962566103423978


def _truncated_target_std(fan_in, fan_out, activation, std, mode, gain) -> float:
    if std is not None:
        return std
    gain = activation_gain(activation) if gain is None else gain
    return gain / math.sqrt(_fans(fan_in, fan_out, mode))


def _truncated_variance(fan_in, fan_out, activation, *, std, mode, gain, **_):
    return _truncated_target_std(fan_in, fan_out, activation, std, mode, gain) ** 2, 0.0


@register("truncated_normal", variance=_truncated_variance,
          formula="N(mean, sigma^2) cut at mean +- 2 sigma, sigma = s / 0.8796; "
                  "s = std, else gain / sqrt(fan_mode)")
def truncated_normal(weight, bias, *, activation, generator, std=None, mode="fan_in", gain=None,
                     mean=0.0, bias_value=0.0):
    """Truncated normal of variance s^2: N(mean, sigma^2) cut at mean +- 2 sigma, sigma = s/0.8796.

    Keras's VarianceScaling with distribution "truncated_normal": draws beyond two standard
    deviations are redrawn (here: the inverse-CDF method of `torch.nn.init.trunc_normal_`),
    which removes the rare large weights. Cutting N(0, sigma^2)
    at +-2 sigma leaves a std of 0.87962566 sigma, so sigma = s / 0.87962566 makes the variance
    after truncation exactly s^2. The target std s is `std` if given (then `gain` and `mode`
    are not used), else gain / sqrt(fan_mode) with gain from the activation, i.e. He for ReLU.
    Keras's `scale` is gain^2: gain 1 is Keras's `lecun_normal`, gain sqrt(2) with ReLU its
    `he_normal`. Unlike Keras's `TruncatedNormal(stddev)`, whose stddev is the one before
    truncation (variance 0.774 stddev^2), `std` here is the std of the weights drawn.
    Also known as truncated He/LeCun normal, VarianceScaling(distribution="truncated_normal").

    Example: ``init: {scheme: truncated_normal, params: {gain: 1.0, mode: fan_in}}``
    """
    fan_in, fan_out = _fan_in_out(weight)
    s = _truncated_target_std(fan_in, fan_out, activation, std, mode, gain)
    if s == 0:
        torch.nn.init.constant_(weight, mean)
    else:
        sigma = s / TRUNCATION_STD
        # trunc_normal_'s cut-offs a, b are absolute values, not multiples of sigma.
        torch.nn.init.trunc_normal_(weight, mean, sigma, a=mean - 2 * sigma, b=mean + 2 * sigma,
                                    generator=generator)
    _fill_bias(bias, bias_value)


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
    gain = activation_gain(activation) if gain is None else gain
    torch.nn.init.orthogonal_(weight, gain=gain, generator=generator)
    _fill_bias(bias, bias_value)


def _zero_variance(fan_in, fan_out, activation, **_):
    return 0.0, 0.0


@register("zeros", variance=_zero_variance, formula="W = 0, b = 0")
def zeros(weight, bias, *, activation, generator):
    """All weights and biases zero: the symmetry-breaking failure case (no randomness at all).

    Every unit of a layer computes the same function of the same input, so it receives the same
    gradient, takes the same update and stays identical to its neighbours forever: a layer of
    width n learns like a single unit. With zeros it is worse: every hidden h_l = phi(0), and
    the backpropagated gradient dL/dz_l = (W_{l+1}^T dL/dz_{l+1}) * phi'(z_l) is exactly 0 below
    the output layer, so at step 0 only the output layer gets a gradient (its weights only when
    phi(0) != 0, as for sigmoid). For ReLU and tanh, phi(0) = 0: nothing but the output bias
    ever learns. Mean-field theory: sigma_w^2 = 0, chi = 0. Also known as zero initialization
    (`torch.nn.init.zeros_`, Keras `Zeros`).

    Example: ``init: {scheme: zeros}``
    """
    torch.nn.init.zeros_(weight)
    if bias is not None:
        torch.nn.init.zeros_(bias)


@register("constant", variance=_zero_variance, formula="W = value, b = bias_value")
def constant(weight, bias, *, activation, generator, value=0.01, bias_value=0.0):
    """Every weight equal to `value` (default 0.01): symmetric, so it never breaks symmetry.

    All units of a layer get the same weights, compute the same thing, receive the same
    gradient and take the same update, forever: each layer acts as one unit copied n times,
    whatever `value` is (variance 0; value 0 is `zeros`). A non-zero value is also a non-zero
    mean, so mean-field theory does not apply; like `mean1_normal` it explodes with depth when
    fan_in * value > 1 (a ReLU layer with a positive input multiplies it by fan_in * value).
    Also known as constant initialization (`torch.nn.init.constant_`, Keras `Constant`).

    Example: ``init: {scheme: constant, params: {value: 0.01}}``
    """
    torch.nn.init.constant_(weight, value)
    _fill_bias(bias, bias_value)


def _lsuv_variance(fan_in, fan_out, activation, **_):
    # What `fill` draws: the orthonormal start. The calibrated weights' variance depends on the
    # data (Scheme.data_dependent): measure it from the weights instead.
    return 1.0 / max(fan_in, fan_out), 0.0


@torch.no_grad()
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
    layers = model.linears()

    def rescale(l: int, z: torch.Tensor) -> torch.Tensor:
        w = layers[l].weight[member]  # a view: scaling it changes only this member
        b = None if layers[l].bias is None else layers[l].bias[member]
        mine = z.view(model.members, -1, z.shape[-1])[member]  # [B, fan_out], a view of z
        for _ in range(max_iter):
            var = mine.double().var().item()
            if abs(var - 1) < tol or not var > 0 or not math.isfinite(var):
                break  # converged, or nothing to rescale (a dead or overflowing input)
            scale = 1 / math.sqrt(var)
            w.mul_(scale)
            if b is None:
                mine.mul_(scale)
            else:
                mine.sub_(b).mul_(scale).add_(b)
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


@register("critical", variance=_critical_variance,
          formula="N(0, sigma_w2*/fan_in), b ~ N(0, sigma_b2), chi* = 1")
def critical(weight, bias, *, activation, generator, sigma_b2=0.0):
    """Edge of chaos: W ~ N(0, sigma_w2*/fan_in), b ~ N(0, sigma_b2), with chi = 1 at q*.

    Poole et al. 2016, "Exponential expressivity in deep neural networks through transient
    chaos"; Schoenholz et al. 2016, "Deep Information Propagation". sigma_w2* solves
    chi* = sigma_w2 E[phi'(sqrt(q*) z)^2] = 1 at the fixed point q* of the length map for the
    given bias variance (`theory.critical_sigma_w2`): 2 for ReLU (He normal, any sigma_b2),
    1 for tanh with sigma_b2 = 0 (LeCun normal), found numerically when sigma_b2 > 0 (1.76 for
    tanh at 0.05). Gradients then neither vanish nor explode exponentially with depth: the depth
    scale xi = 1 / |ln chi| is infinite. Some activations (GELU) have no such point; the config
    is then rejected. Also known as critical initialization, edge-of-chaos initialization.

    Example: ``init: {scheme: critical, params: {sigma_b2: 0.05}}``
    """
    sigma_w2 = critical_sigma_w2(activation, float(sigma_b2))
    torch.nn.init.normal_(weight, 0.0, math.sqrt(sigma_w2 / weight.shape[1]), generator=generator)
    if bias is not None:
        if sigma_b2 > 0:
            torch.nn.init.normal_(bias, 0.0, math.sqrt(sigma_b2), generator=generator)
        else:
            torch.nn.init.zeros_(bias)


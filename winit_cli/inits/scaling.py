"""Init schemes: variance scaling by fan (Xavier/Glorot, He/Kaiming, LeCun, truncated normal).

In the style of `torch/nn/init.py`: each function fills a Linear layer's weight and bias in place;
its docstring names the paper and gives the formula (torch is imported inside each, see
inits/common.py); it reuses `torch.nn.init` where that already
has the scheme. Its keyword parameters (with defaults) are what a config's `init.params` may set.
Beside each scheme, its variance function: the per-element weight and bias variances it produces,
which the mean-field theory uses. Importing `winit_cli.inits` registers every scheme.
"""

from __future__ import annotations

import math

from winit_cli.inits.common import fan_in_out, fans, fill_bias
from winit_cli.inits.registry import activation_gain, register


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
    import torch

    torch.nn.init.xavier_uniform_(weight, gain=gain, generator=generator)
    fill_bias(bias, bias_value)


@register("xavier_normal", variance=_xavier_variance,
          formula="N(0, 2 gain^2 / (fan_in + fan_out))")
def xavier_normal(weight, bias, *, activation, generator, gain=1.0, bias_value=0.0):
    """Xavier/Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).

    Glorot & Bengio 2010. Same variance as `xavier_uniform`. Also known as Glorot normal.

    Example: ``init: {scheme: xavier_normal}``
    """
    import torch

    torch.nn.init.xavier_normal_(weight, gain=gain, generator=generator)
    fill_bias(bias, bias_value)


def _he_variance(fan_in, fan_out, activation, *, mode, gain, **_):
    gain = activation_gain(activation) if gain is None else gain
    return gain**2 / fans(fan_in, fan_out, mode), 0.0


def _kaiming(fill, weight, activation, generator, mode, gain):
    import torch

    if gain is None and activation in ("relu", "leaky_relu", "tanh", "sigmoid", "selu", "linear"):
        # torch.nn.init has this case exactly; leaky_relu's slope is torch's default 0.01.
        a = 0.01 if activation == "leaky_relu" else 0
        fill(weight, a=a, mode=mode, nonlinearity=activation, generator=generator)
        return
    gain = activation_gain(activation) if gain is None else gain
    std = gain / math.sqrt(fans(*fan_in_out(weight), mode))
    if fill is torch.nn.init.kaiming_normal_:
        torch.nn.init.normal_(weight, 0.0, std, generator=generator)
    else:
        bound = math.sqrt(3.0) * std  # U(-b, b) has variance b^2 / 3
        torch.nn.init.uniform_(weight, -bound, bound, generator=generator)



@register("he_normal", variance=_he_variance, formula="N(0, gain^2 / fan_mode)")
def he_normal(weight, bias, *, activation, generator, mode="fan_in", gain=None, bias_value=0.0):
    """He/Kaiming normal: N(0, std^2), std = gain / sqrt(fan_mode), gain from the activation.

    He et al. 2015, "Delving Deep into Rectifiers". For ReLU gain = sqrt(2), so each layer keeps
    the variance of the forward signal (mode fan_in) or of the backward signal (mode fan_out).
    Also known as He initialization. `gain` overrides `calculate_gain(activation)`.

    Example: ``init: {scheme: he_normal, params: {mode: fan_in}}``
    """
    import torch

    _kaiming(torch.nn.init.kaiming_normal_, weight, activation, generator, mode, gain)
    fill_bias(bias, bias_value)


@register("he_uniform", variance=_he_variance, formula="U(-b, b), b = gain sqrt(3 / fan_mode)")
def he_uniform(weight, bias, *, activation, generator, mode="fan_in", gain=None, bias_value=0.0):
    """He/Kaiming uniform: U(-b, b), b = gain * sqrt(3 / fan_mode), gain from the activation.

    He et al. 2015. Same variance as `he_normal`. Also known as He uniform initialization.

    Example: ``init: {scheme: he_uniform, params: {mode: fan_out}}``
    """
    import torch

    _kaiming(torch.nn.init.kaiming_uniform_, weight, activation, generator, mode, gain)
    fill_bias(bias, bias_value)



def _lecun_variance(fan_in, fan_out, activation, *, mode, gain, **_):
    return gain**2 / fans(fan_in, fan_out, mode), 0.0


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
    import torch

    # kaiming with the linear gain, 1, is LeCun's init; any other gain scales its std.
    _kaiming(torch.nn.init.kaiming_normal_, weight, "linear", generator, mode, gain)
    fill_bias(bias, bias_value)


@register("lecun_uniform", variance=_lecun_variance,
          formula="U(-b, b), b = gain sqrt(3 / fan_mode), gain 1")
def lecun_uniform(weight, bias, *, activation, generator, mode="fan_in", gain=1.0,
                  bias_value=0.0):
    """LeCun uniform: U(-b, b), b = gain * sqrt(3 / fan_mode), gain 1 whatever the activation.

    LeCun et al. 1998, "Efficient BackProp". Same variance as `lecun_normal`, gain^2 / fan_mode.
    Also known as LeCun uniform (Keras `lecun_uniform`).

    Example: ``init: {scheme: lecun_uniform, params: {gain: 1.0}}``
    """
    import torch

    _kaiming(torch.nn.init.kaiming_uniform_, weight, "linear", generator, mode, gain)
    fill_bias(bias, bias_value)


# The std of N(0, 1) cut at +-2: sqrt(1 - 4 pdf(2) / (cdf(2) - cdf(-2))). Keras divides the
# target std by it so that the variance after truncation is the target.
TRUNCATION_STD = 0.87962566103423978


def _truncated_target_std(fan_in, fan_out, activation, std, mode, gain) -> float:
    if std is not None:
        return std
    gain = activation_gain(activation) if gain is None else gain
    return gain / math.sqrt(fans(fan_in, fan_out, mode))


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
    import torch

    fan_in, fan_out = fan_in_out(weight)
    s = _truncated_target_std(fan_in, fan_out, activation, std, mode, gain)
    if s == 0:
        torch.nn.init.constant_(weight, mean)
    else:
        sigma = s / TRUNCATION_STD
        # trunc_normal_'s cut-offs a, b are absolute values, not multiples of sigma.
        torch.nn.init.trunc_normal_(weight, mean, sigma, a=mean - 2 * sigma, b=mean + 2 * sigma,
                                    generator=generator)
    fill_bias(bias, bias_value)

"""Init schemes: fixed-scale draws (small normal, mean-1, with L2), constants, PyTorch's default.

In the style of `torch/nn/init.py`: each function fills a Linear layer's weight and bias in place;
its docstring names the paper and gives the formula (torch is imported inside each, see
inits/common.py); it reuses `torch.nn.init` where that already
has the scheme. Its keyword parameters (with defaults) are what a config's `init.params` may set.
Beside each scheme, its variance function: the per-element weight and bias variances it produces,
which the mean-field theory uses. Importing `winit_cli.inits` registers every scheme.
"""

from __future__ import annotations

import math

from winit_cli.inits.common import fill_bias
from winit_cli.inits.registry import register


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
    import torch

    torch.nn.init.normal_(weight, mean, std, generator=generator)
    fill_bias(bias, bias_value)


@register("mean1_normal", variance=_normal_variance, formula="N(mean, std^2), mean 1")
def mean1_normal(weight, bias, *, activation, generator, std=1.0, mean=1.0, bias_value=0.0):
    """Normal N(1, std^2): every weight positive on average (the classic exploding case).

    With mean 1 each unit sums fan_in positive contributions, so activations and gradients grow by
    about fan_in per layer and overflow float32 within a few layers of width 512. Mean-field
    theory assumes zero-mean weights and does not apply.

    Example: ``init: {scheme: mean1_normal, params: {std: 1.0}}``
    """
    import torch

    torch.nn.init.normal_(weight, mean, std, generator=generator)
    fill_bias(bias, bias_value)


@register("normal_l2", variance=_normal_variance, formula="N(mean, std^2), plus L2 l2 |W|^2")
def normal_l2(weight, bias, *, activation, generator, std=0.01, mean=0.0, bias_value=0.0, l2=1e-3):
    """Zero-mean normal N(0, std^2) init, plus L2 regularization (weight decay `l2`) in training.

    Initialization sets where training starts; L2 regularization adds `l2 * W` to every weight
    gradient during training, pulling weights towards zero. The two are independent knobs: this
    scheme pairs the `normal` init with a penalty so the two can be compared. The recorded
    gradients are those of the data loss alone; `l2` is added to `train.weight_decay`.

    Example: ``init: {scheme: normal_l2, params: {std: 0.01, l2: 0.001}}``
    """
    import torch

    torch.nn.init.normal_(weight, mean, std, generator=generator)
    fill_bias(bias, bias_value)



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
    import torch

    torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        bound = 1.0 / math.sqrt(weight.shape[1])
        torch.nn.init.uniform_(bias, -bound, bound, generator=generator)



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
    import torch

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
    import torch

    torch.nn.init.constant_(weight, value)
    fill_bias(bias, bias_value)

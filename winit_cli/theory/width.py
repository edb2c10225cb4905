"""Width: how a parametrization scales init, multipliers and learning rates with width, and the
slope of each layer's coordinate size vs width it predicts. Pure Python, no winit import.

Sources: Yang & Hu 2021, "Tensor Programs IV: Feature Learning in Infinite-Width Neural
Networks" (the abc-parametrizations, stability and feature learning, Sec. 3 and 5); Yang et al.
2021, "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer"
(Table 3: muP for SGD and Adam; Table 8: the same with an output multiplier, the form the `mup`
package implements, MuReadout + MuSGD/MuAdam + set_base_shapes).

Every rule here is relative to a base width: with m = width / base_width, a parametrization
multiplies the standard one's quantities by m^exponent. So at width = base_width every
parametrization is the standard one (the `mup` package's convention), and a learning rate tuned
there is the same number at every width. The layer classes are the `mup` package's:

    input   fan_in fixed (the data), fan_out grows       (a "vector-like" weight)
    hidden  both grow                                    ("matrix-like")
    output  fan_in grows, fan_out fixed (the classes)    ("vector-like")

A layer's m is that of the dimension(s) that grow: m_in = fan_in / base fan_in, m_out likewise.
`LayerRule` gives exponents of m; the multiplier scales the weights in the forward pass (W_eff
= multiplier x W), the init factor multiplies what the init scheme drew (sigma_w^2 / fan_in).

    parametrization   init        multiplier    SGD lr (W, b)          Adam lr (W, b)
    standard          1           1             1, 1                   1, 1
    ntk               1           1             1/m_in, 1              1/sqrt(m_in), 1
    mup               out: sqrt m out: 1/m      in: m, hid: m_out/m_in, hid: 1/m, others 1;
                      b: sqrt m_in              out: m; b: m_out        b: 1

muP's rows are MuReadout (output weights and bias drawn x sqrt(m), forward x 1/m on the
weights), `rescale_linear_bias` (every bias x sqrt(m_in)) and MuSGD/MuAdam's per-group learning
rates. NTK (Jacot et al. 2018) in the same SP-equivalent form: W = w / sqrt(fan_in) with w's
learning rate unscaled is SP's W with the learning rate / fan_in (SGD) or / sqrt(fan_in) (Adam,
whose step does not scale with the gradient), so relative to a base width 1/m_in and
1/sqrt(m_in).

Predicted slopes (`predicted_slopes`): the exponent e_l in coord_l ~ width^e_l of z_l's mean
|coordinate|, at init and after one update, by the counting of Tensor Programs IV: a random
matrix (entries ~ n^-1/2) times a vector keeps its coordinates' size; an update Delta W_l,
built from the outer product of dL/dz_l and h_{l-1}, times h_{l-1} sums n correlated terms, a
factor n. SGD's update carries dL/dz (n^-1/2 below the output in SP, n^-1 in muP); Adam's does
not (its step is about lr per entry whatever the gradient's size). With a homogeneous activation
(ReLU) a layer that grows feeds its growth on; a bounded one (tanh, sigmoid) saturates at O(1).
So in SP with Adam layer 2 grows as n after one step and each layer above adds one; muP keeps
every layer at n^0 (stable and feature learning); NTK with SGD keeps the hidden layers at n^0
but their updates vanish with width (no feature learning). Predictions are for the first update:
in a parametrization that blows up, later steps compound further; in a stable one they stay.
"""

from __future__ import annotations

from dataclasses import dataclass

PARAMETRIZATIONS = ("standard", "ntk", "mup")
OPTIMIZERS = ("sgd", "momentum", "adam")  # momentum scales as SGD (MuSGD takes momentum)
LAYER_CLASSES = ("input", "hidden", "output")
BOUNDED = ("tanh", "sigmoid")  # activations whose output saturates at O(1)


@dataclass(frozen=True)
class LayerRule:
    """Exponents of the width multipliers for one layer class of one parametrization: a factor
    is m_in^(..._in) x m_out^(..._out), m of a fixed dimension being 1."""

    weight_init: float = 0.0  # factor m_in^this on the scheme's drawn weights
    bias_init: float = 0.0  # m_in^this on the drawn biases (mup's rescale_linear_bias)
    multiplier: float = 0.0  # W_eff = m_in^this W in the forward pass
    sgd_lr_in: float = 0.0  # the weights' learning rate, SGD and momentum: m_in^in m_out^out
    sgd_lr_out: float = 0.0
    sgd_bias_lr: float = 0.0  # the biases': m_out^this
    adam_lr_in: float = 0.0  # the weights' learning rate with Adam: m_in^this
    adam_bias_lr: float = 0.0  # the biases' with Adam: m_out^this


# See the module docstring's table.
RULES: dict[str, dict[str, LayerRule]] = {
    "standard": {c: LayerRule() for c in LAYER_CLASSES},
    "ntk": {
        "input": LayerRule(),
        "hidden": LayerRule(sgd_lr_in=-1.0, adam_lr_in=-0.5),
        "output": LayerRule(sgd_lr_in=-1.0, adam_lr_in=-0.5),
    },
    "mup": {
        "input": LayerRule(sgd_lr_out=1.0, sgd_bias_lr=1.0),
        "hidden": LayerRule(bias_init=0.5, sgd_lr_in=-1.0, sgd_lr_out=1.0, sgd_bias_lr=1.0,
                            adam_lr_in=-1.0),
        "output": LayerRule(weight_init=0.5, bias_init=0.5, multiplier=-1.0, sgd_lr_in=1.0),
    },
}

SOURCES = {
    "standard": "PyTorch's default: init variance sigma_w^2 / fan_in, one learning rate",
    "ntk": "Jacot, Gabriel & Hongler 2018; as an abc-parametrization, Yang & Hu 2021 (TP4) "
           "Sec. 3",
    "mup": "Yang et al. 2021 (TP5) Table 3 / Table 8, the `mup` package (MuReadout, MuSGD, "
           "MuAdam, set_base_shapes)",
}


def layer_class(fan_in_grows: bool, fan_out_grows: bool) -> str:
    if fan_in_grows and fan_out_grows:
        return "hidden"
    return "output" if fan_in_grows else "input"


def layer_factors(parametrization: str, optimizer: str, m_in: float, m_out: float,
                  cls: str) -> dict[str, float]:
    """One layer's factors (not exponents): weight_init, bias_init, multiplier, weight_lr,
    bias_lr. m_in, m_out: fan_in / base fan_in and fan_out / base fan_out (1 where fixed)."""
    rule = RULES[parametrization][cls]
    if optimizer == "adam":
        weight_lr, bias_lr = m_in ** rule.adam_lr_in, m_out ** rule.adam_bias_lr
    else:
        weight_lr = m_in ** rule.sgd_lr_in * m_out ** rule.sgd_lr_out
        bias_lr = m_out ** rule.sgd_bias_lr
    return {"weight_init": m_in ** rule.weight_init, "bias_init": m_in ** rule.bias_init,
            "multiplier": m_in ** rule.multiplier, "weight_lr": weight_lr, "bias_lr": bias_lr}


def predicted_slopes(parametrization: str, optimizer: str, depth: int,
                     activation: str = "relu", step: int = 1, bias: bool = True) -> list[float]:
    """The exponent e_l of coord(z_l) ~ width^e_l for l = 1..depth of an MLP whose hidden
    widths all grow (input and classes fixed), at `step` 0 (init) or after the first update
    (any step >= 1: see the module docstring for what later steps add)."""
    if depth < 2:
        raise ValueError("the width theory needs a hidden layer: depth >= 2")
    classes = ["input", *["hidden"] * (depth - 2), "output"]
    rules = [RULES[parametrization][c] for c in classes]
    # the effective weights' size at init, relative to 1 / sqrt(fan_in) (mup's output: -1/2)
    scale = [r.weight_init + r.multiplier for r in rules]
    if step == 0:
        return scale
    # dL/dz at init: O(1) at the logits; one layer down, W_out^T spreads it over n units with
    # entries n^(-1/2 + scale_out); each hidden layer after keeps its size (a random matrix)
    grad = [-0.5 + scale[-1]] * (depth - 1) + [0.0]
    z: list[float] = []
    h = 0.0  # the input's coordinates: fixed
    for l, (cls, r) in enumerate(zip(classes, rules, strict=True)):
        grows = cls != "input"  # fan_in grows: Delta W h sums n correlated terms
        if optimizer == "adam":
            update, bias_update = r.multiplier + r.adam_lr_in, r.adam_bias_lr
        else:  # SGD: Delta W_eff = mult^2 lr dL/dz h0^T, h0 ~ n^0
            update = 2 * r.multiplier + r.sgd_lr_in + r.sgd_lr_out + grad[l]
            bias_update = r.sgd_bias_lr + grad[l]
        terms = [scale[l] + h if grows else 0.0, update + h + (1.0 if grows else 0.0)]
        if bias:
            terms.append(bias_update)
        z.append(max(terms))
        h = min(z[-1], 0.0) if activation in BOUNDED else z[-1]
    return z

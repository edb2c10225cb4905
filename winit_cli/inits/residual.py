"""Init schemes for residual MLPs (`model.kind: resmlp`): Fixup and SkipInit / ReZero.

Each fills every Linear layer like He normal (`fill`), then acts per layer role
(`layer_scale`: input, branch_inner, branch_out, output; see models/resmlp.py) and on the branch
multipliers alpha (`branch_init`); `apply.initialize` applies both, and the theory
(diagnosis/predict_families.py) reads the same two functions, so what is drawn and what is
predicted cannot drift apart. With B blocks of k Linear layers each, h_b = h_{b-1} + alpha F_b:
a block's backward factor is 1 + alpha^2 chi_branch (theory_residual.py), which He init with
alpha = 1 makes 2 per block for ReLU: 10^14.7 in mean square over 49 blocks. Each scheme here
makes it exactly 1 at init, by a different route. The "zero-init the last layer of each branch"
rule on its own, usable with any scheme, is `init.zero_last: true`.
"""

from __future__ import annotations

from winit_cli.inits.registry import activation_gain, register
from winit_cli.inits.scaling import he_normal


def _he_variance(fan_in, fan_out, activation, **_):
    return activation_gain(activation) ** 2 / fan_in, 0.0


def _fixup_scale(role: str, blocks: int, branch_layers: int, *, zero_output: bool, **_) -> float:
    if role == "branch_out" or (role == "output" and zero_output):
        return 0.0
    if role == "branch_inner":  # only with two-layer branches: m = 2, so B^(-1/2)
        return blocks ** (-1.0 / (2 * branch_layers - 2))
    return 1.0


@register("fixup", variance=_he_variance, layer_scale=_fixup_scale,
          formula="He normal; branch layers x B^(-1/(2m-2)), last branch layer 0")
def fixup(weight, bias, *, activation, generator, zero_output=False):
    """Fixup: He init, branch layers scaled by B^(-1/(2m-2)), each branch's last layer zero.

    Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without Normalization".
    With B residual branches of m Linear layers each (B blocks, m = model.branch_layers):
    (1) the last Linear layer of every branch is initialised to 0 (weights and bias), so every
    block starts as the identity and the backward factor per block is exactly 1; (2) every other
    layer is He normal, N(0, gain^2 / fan_in), and the branch layers before the last are scaled by
    B^(-1/(2m-2)) (B^(-1/2) for m = 2; for m = 1 there is none: the branch is its zero last
    layer), which bounds how fast the blocks leave the identity once training moves the zero
    layers; (3) the paper's scalar multiplier per branch (initialised at 1) is the branch scale
    alpha, `model.branch_scale` (default 1), trained when `model.learnable_scale: true`; its
    scalar biases are the Linear layers' own per-unit biases, initialised at 0, which sit after
    every Linear layer and so before every activation. Not implemented: the paper's scalar bias
    before each Linear layer (a^T added to its input). The paper also zeroes the classification
    layer: `zero_output: true` does, but then no gradient reaches any hidden layer at step 0,
    which the step-0 verdict reads as vanishing; by default the output layer keeps its He draw.

    Example: ``model: {kind: resmlp, depth: 100, learnable_scale: true}``,
    ``init: {scheme: fixup}``
    """
    he_normal(weight, bias, activation=activation, generator=generator)


def _skipinit_alpha(*, alpha, **_) -> float:
    return float(alpha)


@register("skipinit", variance=_he_variance, branch_init=_skipinit_alpha,
          formula="He normal; branch multiplier alpha = 0 (learnable)")
def skipinit(weight, bias, *, activation, generator, alpha=0.0):
    """SkipInit: He init, and every branch multiplier alpha initialised to 0 (or `alpha`).

    De & Smith 2020, "Batch Normalization Biases Residual Blocks Towards the Identity Function
    in Deep Networks": BatchNorm makes a deep residual net trainable by scaling each branch down
    by ~1/sqrt(depth) at init; a learnable scalar alpha at the end of each branch, initialised to
    0 (or a small constant), does the same without normalization: h_b = h_{b-1} + alpha_b F_b,
    so every block is the identity at init (backward factor exactly 1) whatever the weights.
    Needs `model.learnable_scale: true` (alpha = 0 never moves otherwise). At step 0 the branch
    weights get no gradient (dL/dW = alpha ...) and alpha gets <dL/dh_b, F_b>.
    Also known as ReZero (`rezero`, the same rule, for nets with no normalization at all).

    Example: ``model: {kind: resmlp, learnable_scale: true}``, ``init: {scheme: skipinit}``
    """
    he_normal(weight, bias, activation=activation, generator=generator)


def _zero_alpha(**_) -> float:
    return 0.0


@register("rezero", variance=_he_variance, branch_init=_zero_alpha,
          formula="He normal; branch multiplier alpha = 0 (learnable)")
def rezero(weight, bias, *, activation, generator):
    """ReZero: He init, every branch multiplier alpha initialised to exactly 0.

    Bachlechner, Majumder, Mao, Cottrell & McAuley 2020, "ReZero is All You Need: Fast
    Convergence at Large Depth": x_{i+1} = x_i + alpha_i F(x_i) with alpha_i = 0 learnable, and
    no normalization anywhere (for Transformers it also removes LayerNorm). In this residual MLP
    it is the same block and the same rule as `skipinit` with alpha = 0; the papers differ in
    aim (SkipInit: what BatchNorm does for ResNets; ReZero: faster convergence, any deep net)
    and SkipInit allows a small non-zero alpha. Needs `model.learnable_scale: true`.

    Example: ``model: {kind: resmlp, learnable_scale: true}``, ``init: {scheme: rezero}``
    """
    he_normal(weight, bias, activation=activation, generator=generator)


def zero_last_scale(role: str) -> float:
    """`init.zero_last`: the factor on a layer's weights, 0 for the last layer of a branch."""
    return 0.0 if role == "branch_out" else 1.0


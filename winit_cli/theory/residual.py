"""Mean-field signal propagation in residual MLPs without normalization, at initialization.

Yang & Schoenholz 2017, "Mean Field Residual Networks: On the Edge of Chaos" (NeurIPS).

The block is the pre-activation one (He, Zhang, Ren & Sun 2016, "Identity Mappings in Deep
Residual Networks"), with a branch of k = 1 or 2 Linear layers and a scalar branch scale alpha:

    h_0     = W_in x + b_in                                          Linear 1 (input projection)
    k = 1:  F_b(h) = W_b1 phi(h) + b_b1
    k = 2:  u_b = W_b1 phi(h) + b_b1,   F_b(h) = W_b2 phi(u_b) + b_b2
    h_b     = h_{b-1} + alpha_b F_b(h_{b-1})                         blocks b = 1..B
    logits  = W_out phi(h_B) + b_out                                 Linear L = 2 + k B

Why this form: the skip path is a pure identity (no activation after the addition), so the
backward pass through a block is exactly I + alpha J_F and the growth factor below is exact in
mean field; the branch ends in a Linear layer, so zeroing it (Fixup, "zero-init the last layer")
makes each block the identity; every Linear layer but the first is preceded by phi, as in the
plain MLP (z_l = W_l phi(z_{l-1})), so the stream h_b plays the part of z and the plain per-layer
expectations carry over. Yang & Schoenholz's "full residual network" has no phi before W_b1; the
factor has the same form, with its own chi_branch.

Write sigma_j = fan_in_j Var(W_j) (sigma_w^2 of layer j), vb_j = Var(b_j), z ~ N(0, 1), and
p_0 = q_{b-1} = E[h_{b-1}^2] per unit. Then, derived here for this block (Yang & Schoenholz's
full-residual recursions have the same shape: p^l = p^{l-1} + sigma_v^2 Vphi(q^l) + sigma_a^2
with q^l = sigma_w^2 p^{l-1} + sigma_b^2, gradient factor 1 + sigma_v^2 sigma_w^2 Vphi'(q^l), as
recalled; the paper's text was not at hand to cite equation numbers):

    forward    p_j = sigma_j E[phi(sqrt(p_{j-1}) z)^2] + vb_j          (j = 1..k; p_k = Var F_b)
               q_b = q_{b-1} + alpha_b^2 p_k                           (E[h F] = 0: E[W] = 0)
    backward   E||dL/dh_{b-1}||^2 = (1 + alpha_b^2 chi_branch_b) E||dL/dh_b||^2
               chi_branch_b = prod_{j=1..k} sigma_j E[phi'(sqrt(p_{j-1}) z)^2]

The backward line: dL/dh_{b-1} = g (I + alpha J) with g = dL/dh_b; the cross term 2 alpha g J g^T
is linear in the zero-mean W_bk and vanishes in expectation (gradient independence, as in the
plain theory), and E||g J||^2 = chi_branch ||g||^2, one sigma_j E[phi'^2] per Linear. ReLU:
chi_branch = prod sigma_j / 2 and q_b = q_{b-1} (1 + alpha^2 prod sigma_j / 2^k) without biases,
so He init with alpha = 1 doubles both q and the mean squared gradient every block. A zero last
branch layer (Fixup, zero-init) has sigma_k = 0, and alpha = 0 (SkipInit, ReZero) removes the
branch: either way the factor is exactly 1. (Fixup's other rescaling, W_b1 by B^(-1/(2k-2)),
changes nothing at init once W_bk = 0; it bounds how fast the factor leaves 1 as W_bk trains.)
Into the output layer, as in the plain net,
E||dL/dh_B||^2 = sigma_out E[phi'(sqrt(q_B) z)^2] E||dL/dz_L||^2.

Assumptions: those of mean_field.py (wide, zero-mean independent weights, gradient independence).
With BatchNorm or LayerNorm inside the branch this module has no prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from winit_cli.theory.activations import derivative_second_moment, second_moment


@dataclass(frozen=True)
class BranchPropagation:
    """What one block does to the variance and to the mean squared gradient."""

    branch_q: tuple[float, ...]  # Var of each branch Linear's output; the last is Var F_b
    q_out: float  # q_b = q_{b-1} + alpha^2 Var F_b
    chi_branch: float  # E||g J_F||^2 / ||g||^2
    grad_factor: float  # E||dL/dh_{b-1}||^2 / E||dL/dh_b||^2 = 1 + alpha^2 chi_branch
    inner_chi: tuple[float, ...]  # sigma_j E[phi'(sqrt(p_{j-1}) z)^2] for j = 1..k


def residual_block(
    activation: str,
    q_in: float,
    sigma_w2: Sequence[float],
    bias_var: Sequence[float],
    branch_scale: float,
    *,
    activation_param: float | None = None,
) -> BranchPropagation:
    """Propagate q and the gradient through one pre-activation block (module docstring).

    sigma_w2[j] = fan_in Var(W) and bias_var[j] describe the branch's Linear layers in order
    (one or two). Closed form for ReLU, leaky ReLU and linear (theory's homogeneous
    activations), quadrature (gaussian.gauss_expect) otherwise. Example (ReLU, He, alpha = 1)::

        residual_block("relu", 1.0, [2.0, 2.0], [0.0, 0.0], 1.0).grad_factor  # 2.0
    """
    if len(sigma_w2) not in (1, 2) or len(bias_var) != len(sigma_w2):
        raise ValueError("a branch has one or two Linear layers, each with a weight and bias var")
    if not q_in >= 0 or min(sigma_w2) < 0 or min(bias_var) < 0:
        raise ValueError("q_in and the variances must be >= 0")
    kw = {"activation_param": activation_param}
    p, branch_q, inner_chi = q_in, [], []
    for s, vb in zip(sigma_w2, bias_var, strict=True):
        # phi is applied to the previous point (the stream, then u_b); its slope there sets chi.
        inner_chi.append(s * derivative_second_moment(activation, p, **kw))
        p = s * second_moment(activation, p, **kw) + vb
        branch_q.append(p)
    chi_branch = math.prod(inner_chi)
    a2 = branch_scale * branch_scale
    return BranchPropagation(
        branch_q=tuple(branch_q),
        q_out=q_in + a2 * branch_q[-1],
        chi_branch=chi_branch,
        grad_factor=1.0 + a2 * chi_branch,
        inner_chi=tuple(inner_chi),
    )


@dataclass(frozen=True)
class ResLayerPrediction:
    layer: int  # 1..L, Linear layers in forward order
    block: int  # 0 for the input projection, b for block b's Linear layers, B + 1 for the output
    role: str  # "input", "branch_inner" (u_b), "branch_out" (F_b, before alpha), "output"
    q: float  # predicted variance of this Linear's output
    log10_grad_ratio: float  # predicted log10 ||dL/d(output of this Linear)|| / ||dL/dz_L||


@dataclass(frozen=True)
class ResPrediction:
    stream_q: list[float]  # q of h_0 .. h_B
    stream_log10_grad_ratio: list[float]  # log10 ||dL/dh_b|| / ||dL/dz_L||, b = 0..B
    blocks: list[BranchPropagation]  # blocks 1..B
    layers: list[ResLayerPrediction]

    def log10_input_to_last_block(self) -> float:
        """Predicted log10 ||dL/dh_0|| / ||dL/dh_B|| = 1/2 sum_b log10(1 + alpha_b^2 chi_b):
        the residual analogue of mean_field.Prediction.log10_first_to_last_hidden."""
        return sum((0.5 * math.log10(b.grad_factor) for b in self.blocks), 0.0)

    def to_rows(self) -> list[dict]:
        """Tidy rows, one per Linear layer."""
        return [
            {"layer": p.layer, "block": p.block, "role": p.role, "predicted_q": p.q,
             "predicted_log10_grad_ratio": p.log10_grad_ratio}
            for p in self.layers
        ]


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 else -math.inf


def _check_layout(fan_in, weight_var, bias_var, branch_layers, branch_scale) -> list[float]:
    depth = len(fan_in)
    if len(weight_var) != depth or len(bias_var) != depth:
        raise ValueError("fan_in, weight_var and bias_var need one entry per Linear layer")
    if branch_layers not in (1, 2) or depth < 2 or (depth - 2) % branch_layers:
        raise ValueError(
            f"a residual MLP has 2 + k B Linear layers with k = 1 or 2; got {depth} with "
            f"k = {branch_layers}"
        )
    if min(fan_in) < 1 or min(weight_var) < 0 or min(bias_var) < 0:
        raise ValueError("fan-ins must be >= 1 and variances >= 0")
    n_blocks = (depth - 2) // branch_layers
    scales = [branch_scale] * n_blocks if isinstance(branch_scale, int | float) else branch_scale
    if len(scales) != n_blocks:
        raise ValueError(f"branch_scale needs one entry per block ({n_blocks}), got {len(scales)}")
    return [float(a) for a in scales]


def predict_resmlp(
    activation: str,
    fan_in: Sequence[int],
    weight_var: Sequence[float],
    bias_var: Sequence[float],
    input_second_moment: float,
    *,
    branch_layers: int,
    branch_scale: float | Sequence[float],
    activation_param: float | None = None,
) -> ResPrediction:
    """Predict q and log10 gradient ratios to the logits, Linear by Linear, of a residual MLP.

    Lists run over Linear layers in forward order (input projection, block 1's k layers, ...,
    output), as mean_field.predict's do; branch_scale is alpha, one for all blocks or one per block.
    q is iterated from the real input's second moment m_0 (q_0 = sigma_in m_0 + vb_in). The
    gradient at a branch's last Linear output is alpha times the stream's (dL/dF_b = alpha
    dL/dh_b), so it is -inf at alpha = 0. Example (ReLU, He, 10 two-layer blocks)::

        predict_resmlp("relu", [784] + [256] * 21, [2 / 784] + [2 / 256] * 21, [0.0] * 22, 1.0,
                       branch_layers=2, branch_scale=1.0)
    """
    scales = _check_layout(fan_in, weight_var, bias_var, branch_layers, branch_scale)
    if not input_second_moment >= 0:
        raise ValueError("input_second_moment must be >= 0")
    sigma = [n * v for n, v in zip(fan_in, weight_var, strict=True)]
    kw = {"activation_param": activation_param}
    q = [sigma[0] * input_second_moment + bias_var[0]]
    blocks = []
    for b, alpha in enumerate(scales):
        j = 1 + b * branch_layers
        block = residual_block(activation, q[-1], sigma[j:j + branch_layers],
                               bias_var[j:j + branch_layers], alpha, **kw)
        blocks.append(block)
        q.append(block.q_out)
    # Backward from the logits: into h_B through the output layer, then one factor per block.
    ratio = [0.0] * (len(blocks) + 1)
    ratio[-1] = 0.5 * _log10(sigma[-1] * derivative_second_moment(activation, q[-1], **kw))
    for b in reversed(range(len(blocks))):
        ratio[b] = ratio[b + 1] + 0.5 * math.log10(blocks[b].grad_factor)
    q_logits = sigma[-1] * second_moment(activation, q[-1], **kw) + bias_var[-1]
    return ResPrediction(q, ratio, blocks, _layer_rows(q, ratio, blocks, scales, q_logits))


def _layer_rows(q, ratio, blocks, scales, q_logits) -> list[ResLayerPrediction]:
    rows = [ResLayerPrediction(1, 0, "input", q[0], ratio[0])]
    for b, (block, alpha) in enumerate(zip(blocks, scales, strict=True), start=1):
        log_alpha = _log10(abs(alpha))
        if len(block.branch_q) == 2:
            # dL/du_b = alpha (dL/dh_b W_b2) * phi'(u_b): one more inner chi.
            inner = log_alpha + 0.5 * _log10(block.inner_chi[1]) + ratio[b]
            rows.append(ResLayerPrediction(len(rows) + 1, b, "branch_inner", block.branch_q[0],
                                           inner))
        rows.append(ResLayerPrediction(len(rows) + 1, b, "branch_out", block.branch_q[-1],
                                       log_alpha + ratio[b]))
    rows.append(ResLayerPrediction(len(rows) + 1, len(blocks) + 1, "output", q_logits, 0.0))
    return rows

"""Gradient explosion in BatchNorm MLPs at initialization.

Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019, "A Mean Field Theory of Batch
Normalization" (ICLR). Placement: Linear -> BN -> phi, i.e. BN on the pre-activations (Ioffe &
Szegedy's placement, the one the paper studies), in training mode (batch statistics, biased
variance, as torch.nn.BatchNorm1d), gamma = 1 and beta = 0 as initialised:

    z_l = W_l h_{l-1} + b_l,   y_l = BN(z_l) per unit over the batch,   h_l = phi(y_l)

For a batch of B inputs, BN maps each unit's B-vector z to y = sqrt(B) P z / ||P z||, with
P = I - 11^T/B the centring projector. So y does not depend on the scale of W_l, and the bias is
removed by the centring: the rate below holds for every zero-mean i.i.d. weight init.

Derivation (the paper's mean-field setting, restated so that each step can be checked):
- Forward. Deep in the net the batch Gram matrix sits at the paper's BSB1 fixed point
  K* = a I + b 11^T, so P z is isotropic in the (B-1)-dimensional subspace 1-perp:
  P z = r sqrt(a) u, u uniform on that subspace's unit sphere, r^2 ~ chi^2_{B-1} independent of
  u. Then y = sqrt(B) u whatever phi is, and a = E[phi(y_1)^2] - E[phi(y_1) phi(y_2)].
- Backward. With G the gradient's B x B second moment, one layer maps
  G -> sigma_w^2 E[J D G D J], J = dy/dz = sqrt(B)/||Pz|| (P - u u^T), D = diag(phi'(y)); the
  sigma_w^2 cancels the 1/sigma_w^2 in ||Pz||^2, and E[1/r^2] = 1/(B-3). G = P is an eigenvector
  (batch-permutation symmetry; J kills 1) and, being positive definite on 1-perp, its eigenvalue
  is the map's spectral radius (a positive map's Perron root):

      lambda(B) = B / (a (B-1) (B-3)) E[tr(D P D P) - u^T D P D u]

  the factor by which E||dL/dz_l||^2 grows per layer going back (norms: sqrt(lambda)). Finite for
  B >= 4 only: with B <= 3 the mean squared gradient is infinite (E[1/chi^2_2] diverges).
- ReLU (D^2 = D, k = number of positive y_i), every expectation in closed form through
  (X_1, X_2) = two coordinates of P g, g ~ N(0, I): variance s = 1 - 1/B, correlation
  rho = -1/(B-1), theta = arccos(rho). See `relu_rate`. Linear phi: (B-2)/(B-3).
- B -> inf: lambda -> E[phi'(z)^2] / Var[phi(z)], z ~ N(0, 1); for ReLU pi/(pi-1) ~ 1.467.

The paper obtains its rates with Laplace/Gegenbauer machinery. Its text (and so its equation
numbers) could not be consulted when this was written: the formulas here were derived anew in
the paper's setting, from the eigenvector above, and are checked against Monte Carlo of the same
expectation and against simulated wide BN nets (within 1-2%:
tests/unit/theory/test_theory_batchnorm.py).
The rate is reached once the Gram matrix has converged (a few layers in from the input); residual
connections, LayerNorm or dropout beside BN are outside it: no prediction.
"""

from __future__ import annotations

import math

import numpy as np

from winit_cli.theory.activations import activation_functions
from winit_cli.theory.gaussian import gauss_expect

_CHUNK_ELEMENTS = 1 << 21  # Monte Carlo batches of this many numbers: ~16 MB per array


def _arccos_kernel(rho: float) -> float:
    """E[relu(X1) relu(X2)] for unit-variance X1, X2 with correlation rho (Cho & Saul 2009)."""
    theta = math.acos(rho)
    return (math.sin(theta) + (math.pi - theta) * rho) / (2 * math.pi)


def relu_rate(batch_size: float) -> float:
    """lambda(B) for a Linear -> BN -> ReLU MLP, in closed form (module docstring).

    Terms, with s = 1 - 1/B, rho = -1/(B-1) (the law of two centred coordinates):
        a        = 1/2 + 1/(4(B-1)) - (sqrt(1-rho^2) + rho arcsin rho) / (2 pi)
        E[k]     = B/2,   E[k^2] = B/2 + B(B-1)(1/4 + arcsin(rho)/(2 pi))
        E[sum_{y_i>0} u_i^2] = 1/2
        E[(sum_{y_i>0} u_i)^2] = (B s/2 + B(B-1) s K(rho)) / (B-1),  K the arc-cosine kernel
        E[tr(DPDP) - u^T DPD u] = (1 - 2/B) E[k] + E[k^2]/B^2 - 1/2 + E[(sum u_i)^2]/B
    lambda(4) = 3.08, lambda(32) = 1.52, lambda(inf) = pi/(pi-1) = 1.467.
    """
    b = float(batch_size)
    if not b >= 4:
        raise ValueError(f"the BatchNorm gradient rate needs a batch of 4 or more, got {b}")
    if math.isinf(b):
        return math.pi / (math.pi - 1)
    rho, s = -1 / (b - 1), 1 - 1 / b
    # a = K*_11 - K*_12: E[relu(y)^2] = 1/2 and E[relu relu] from |y1 y2| (relu = (y + |y|)/2).
    a = 0.5 + 1 / (4 * (b - 1)) - (math.sqrt(1 - rho * rho) + rho * math.asin(rho)) / (2 * math.pi)
    e_k = b / 2
    e_k2 = b / 2 + b * (b - 1) * (0.25 + math.asin(rho) / (2 * math.pi))
    e_sum_u_sq = (b * s / 2 + b * (b - 1) * s * _arccos_kernel(rho)) / (b - 1)
    trace = (1 - 2 / b) * e_k + e_k2 / b**2 - 0.5 + e_sum_u_sq / b
    return b / (a * (b - 1) * (b - 3)) * trace


def _monte_carlo_rate(phi, dphi, batch: int, samples: int, seed: int) -> float:
    """lambda(B) by Monte Carlo over u uniform on the centred sphere (fixed seed)."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // batch)
    sums = np.zeros(3)  # phi_i^2 mean, phi_i phi_j (i != j) mean, the trace term
    done = 0
    while done < samples:
        n = min(rows, samples - done)
        g = rng.standard_normal((n, batch))
        g -= g.mean(axis=1, keepdims=True)
        u = g / np.linalg.norm(g, axis=1, keepdims=True)
        y = math.sqrt(batch) * u
        h, d = phi(y), dphi(y)
        h_sq = (h * h).sum(axis=1)
        # Symmetric estimators over all coordinates and pairs: same law, less variance.
        sums[0] += (h_sq / batch).sum()
        sums[1] += ((h.sum(axis=1) ** 2 - h_sq) / (batch * (batch - 1))).sum()
        d_sq = (d * d).sum(axis=1)
        # tr(D P D P) = (1 - 2/B) sum d^2 + (sum d)^2 / B^2 (P_ii = 1 - 1/B, P_ij = -1/B);
        # u^T D P D u = ||D u||^2 - (1^T D u)^2 / B.
        tr_dpdp = (1 - 2 / batch) * d_sq + d.sum(axis=1) ** 2 / batch**2
        du = d * u
        u_dpd_u = (du * du).sum(axis=1) - du.sum(axis=1) ** 2 / batch
        sums[2] += (tr_dpdp - u_dpd_u).sum()
        done += n
    e_sq, e_cross, e_trace = sums / samples
    a = e_sq - e_cross
    return float(batch / (a * (batch - 1) * (batch - 3)) * e_trace)


def large_batch_rate(activation: str, *, activation_param: float | None = None) -> float:
    """lim_{B -> inf} lambda(B) = E[phi'(z)^2] / Var[phi(z)], z ~ N(0, 1), by quadrature.

    At large B the batch statistics are the population's, y ~ N(0, 1), a = Var phi(z), and the
    trace term is B E[phi'^2] to leading order. ReLU: pi / (pi - 1); linear: 1.
    """
    phi, dphi = activation_functions(activation, activation_param=activation_param)
    mean = gauss_expect(phi, 1.0)
    var = gauss_expect(lambda x: phi(x) ** 2, 1.0) - mean * mean
    return gauss_expect(lambda x: dphi(x) ** 2, 1.0) / var


def bn_gradient_rate(
    activation: str,
    batch_size: float,
    *,
    activation_param: float | None = None,
    samples: int = 200_000,
    seed: int = 0,
) -> float:
    """Per-layer growth factor lambda of E||dL/dz_l||^2 (going back) in a Linear -> BN -> phi MLP.

    Yang et al. 2019's gradient explosion rate, the same for every zero-mean weight init and
    every weight scale. Closed form for ReLU (`relu_rate`) and linear ((B-2)/(B-3)); Monte Carlo
    with `samples` batches from `seed` otherwise (relative error ~1e-3 at the default).
    batch_size = inf gives the large-batch limit (`large_batch_rate`). log10 gradient norms grow
    by 0.5 log10(lambda) per layer toward the input. Example::

        bn_gradient_rate("relu", 32)  # 1.52: norms x1.23 per layer, 4.5 decades over 50 layers
    """
    if not batch_size >= 4:
        raise ValueError(
            f"batch size {batch_size}: the mean squared gradient under BatchNorm is infinite "
            "below a batch of 4 (E[1/chi^2_(B-1)] diverges), so there is no finite rate"
        )
    if math.isinf(batch_size):
        return large_batch_rate(activation, activation_param=activation_param)
    if activation == "relu" and activation_param is None:
        return relu_rate(batch_size)
    if activation == "linear" and activation_param is None:
        return (batch_size - 2) / (batch_size - 3)
    if batch_size != int(batch_size):
        raise ValueError(f"batch size must be a whole number, got {batch_size}")
    phi, dphi = activation_functions(activation, activation_param=activation_param)
    return _monte_carlo_rate(phi, dphi, int(batch_size), samples, seed)

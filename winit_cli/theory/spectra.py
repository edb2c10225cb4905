"""Free-probability predictions of the Jacobian's singular value spectrum (infinite width).

Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
dynamical isometry: theory and practice"; Pennington, Schoenholz & Ganguli 2018, "The emergence
of spectral universality in deep networks". For J = W_{k+1} D_k ... W_2 D_1 (k = L - 2 for an
L-layer MLP, as in winit_cli.measure.jacobian) with pre-activations at the length map's fixed
point q*, the weights and the D_l^2 = diag(phi'(h)^2), h ~ N(0, q*), are asymptotically free,
so the S-transform of J J^T's spectrum multiplies:

    S_{JJ^T}(m) = S_{WW^T}(m)^k S_{D^2}(m)^k,
    S_{WW^T}(m) = 1 / sigma_w2 (orthogonal),   1 / (sigma_w2 (1 + m)) (Gaussian: Marchenko-Pastur)

with M_X(z) = z G_X(z) - 1 and S_X(m) = (1 + m) / (m M_X^{-1}(m)). Writing zeta = M_D^{-1}(m),
i.e. M_{D^2}(zeta) = m, the inverse of M_{JJ^T} becomes explicit in zeta:

    z = sigma_w2^k zeta^k m^(k-1) (1 + m)        (Gaussian)
    z = sigma_w2^k zeta^k (m / (1 + m))^(k-1)    (orthogonal)

We solve that for zeta by Newton's method at z = x (1 + i eta), marching down a grid in ln x
from above the spectrum's edge, at eta = 1e-7 (reached from eta = 1e-2 in stages, so the solve
stays on the right branch), and read the mass of lambda = s^2 above each x as Im F / pi, F the
closed-form antiderivative of G = (1 + m) / z (_tail_mass): each grid cell gets its exact mass,
and the density is the cell's average. A density -Im G / pi read point by point would not do:
where D^2 has an atom of weight w at its top and k w >= k - 1 (orthogonal weights, k <= 2 for
ReLU, leaky ReLU, ELU), the inverse map does not turn at the edge, and the law has an atom there
(k w > k - 1, Belinschi's rule) or an inverse-square-root edge (k w = k - 1: at k = 2, ReLU's
J J^T / 4 is P Q P for free projections of trace 1/2, half an atom at 0 and half the arcsine
law). Atoms are returned apart from the density. At k = 1 with orthogonal weights there is
nothing to convolve: lambda = sigma_w2 phi'(h)^2, taken on a fine grid of h. Moments need no
solve: for free factors with mean 1 the normalised variance var/mean^2 adds, so

    E[s^2] = (sigma_w2 mu_1)^k,  var(s^2) / E[s^2]^2 = k (v_W + mu_2 / mu_1^2 - 1),

mu_j = E[phi'(h)^(2j)], v_W = 1 (Gaussian) or 0 (orthogonal) (Pennington et al. 2017, Eq. 17).
Linear nets: Gaussian weights give the Fuss-Catalan law (all moments known); orthogonal
weights give s = sigma_w^k exactly. Not implemented: inputs away from q* (layers with different
D), biases' effect beyond q*, and finite-width corrections (the smallest singular values of a
width-n net stop near max / n^k, where the infinite-width density goes on to 0).
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass

import numpy as np

from winit_cli.theory.activations import activation_functions
from winit_cli.theory.mean_field import fixed_point_q
from winit_cli.theory.roots import root

# Relative distances from the real axis: the march runs at the first, the density is read at the
# last. The density seen at eta is blurred by a Lorentzian of width eta x, whose tails bring
# the mass of a deep net's huge peak near 0 into the bulk: 1% error at eta = 1e-3, k = 30.
_ETAS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
_STEP = 0.01  # grid spacing in ln x, x = s^2
_HERMITE_NODES = 160  # Gauss-Hermite nodes for the distribution of phi'(h)^2
# k = 1, orthogonal: phi'(h)^2 on this many points of h in [-12, 12] (spacing 1.2e-4; an even
# count, so none sits on ReLU's step at 0); a value holding more than _ATOM_SHARE of the mass is
# an atom (one node holds at most 5e-5).
_FINE_NODES = 200_000
_ATOM_SHARE = 1e-3


@dataclass(frozen=True)
class SpectrumPrediction:
    log_sv: np.ndarray  # [G] cell centres in ln s, increasing ([0] if every s is an atom)
    density: np.ndarray  # [G] density of ln s per unit ln s, each cell's average, atoms left out
    mean_sq: float  # E[s^2], exact
    var_sq: float  # var(s^2) / E[s^2]^2, exact
    max: float  # the support's upper edge in s
    spread: float  # std of ln s over s > zero_rtol * max (atoms there included)
    zero_fraction: float  # mass at or below zero_rtol * max (an atom at 0 included)
    atoms: tuple[tuple[float, float], ...] = ()  # (s, mass) of the atoms above the cutoff


def _slope_atoms(activation: str, q: float) -> tuple[np.ndarray, np.ndarray]:
    """The law of d = phi'(sqrt(q) h)^2 as atoms (distinct values [A], weights [A]): Gauss-Hermite
    nodes, equal values merged (ReLU's 160 nodes are two atoms of weight 1/2 each)."""
    _, dphi = activation_functions(activation)
    if activation == "linear" or q == 0:
        return np.array([float(dphi(np.array([0.0]))[0]) ** 2]), np.array([1.0])
    nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_NODES)
    values, index = np.unique(dphi(math.sqrt(q) * nodes) ** 2, return_inverse=True)
    return values, np.bincount(index, weights / weights.sum())


# phi' of these is scale-free (phi'(c x) = phi'(x) for c > 0): D's law does not depend on q.
_SCALE_FREE = ("linear", "relu", "leaky_relu")


def _pre_activation_variance(activation, sigma_w2, sigma_b2, q) -> float:
    if activation in _SCALE_FREE:
        return 1.0
    if q is None:
        q = fixed_point_q(activation, sigma_w2, sigma_b2)
    if not 0 <= q < math.inf:
        raise ValueError(f"the pre-activation variance must be finite, got q* = {q}")
    return q


def predicted_moments(
    layers: int,
    weights: str,
    activation: str = "linear",
    sigma_w2: float = 1.0,
    sigma_b2: float = 0.0,
    q: float | None = None,
) -> tuple[float, float]:
    """(E[s^2], var(s^2) / E[s^2]^2) of J's singular values s, exactly (see module doc).

    layers: k, the number of weight matrices in J; weights: "gaussian" or "orthogonal";
    q: the pre-activations' variance, by default the fixed point q*.
    """
    v_w = _weight_variance(weights)
    q = _pre_activation_variance(activation, sigma_w2, sigma_b2, q)
    d, w = _slope_atoms(activation, q)
    mu1, mu2 = float(w @ d), float(w @ d**2)
    return (sigma_w2 * mu1) ** layers, layers * (v_w + mu2 / mu1**2 - 1)


def _weight_variance(weights: str) -> float:
    if weights not in ("gaussian", "orthogonal"):
        raise ValueError(f"unknown weights {weights!r}; known: gaussian, orthogonal")
    return 1.0 if weights == "gaussian" else 0.0


class _InverseMap:
    """ln z as a function of zeta, its derivative, for one (k, weights, law of D^2)."""

    def __init__(self, layers: int, weights: str, sigma_w2: float, d, w):
        self.k, self.d, self.w = layers, d, w
        self.a, self.b = (layers - 1, 1) if weights == "gaussian" else (layers - 1, 1 - layers)
        self.log_scale = layers * math.log(sigma_w2)

    def m(self, zeta):
        """M_{D^2}(zeta) = E[d / (zeta - d)]; zeta [...], atoms on a new last axis."""
        return np.sum(self.w * self.d / (zeta[..., None] - self.d), axis=-1)

    def one_plus_m(self, zeta):
        # zeta E[1 / (zeta - d)]: equal to 1 + m, without the cancellation where m -> -1
        # (below the spectrum, 1 + m ~ x / lambda_min).
        return zeta * np.sum(self.w / (zeta[..., None] - self.d), axis=-1)

    def log_z(self, zeta):
        m, one_plus_m = self.m(zeta), self.one_plus_m(zeta)
        log_m = np.log(m) if self.a else 0.0
        return self.log_scale + self.k * np.log(zeta) + self.a * log_m + self.b * np.log(one_plus_m)

    def dlog_z(self, zeta):
        m, one_plus_m = self.m(zeta), self.one_plus_m(zeta)
        dm = -np.sum(self.w * self.d / (zeta[..., None] - self.d) ** 2, axis=-1)
        return self.k / zeta + (self.a / m + self.b / one_plus_m) * dm

    def solve(self, log_z: np.ndarray, zeta: np.ndarray, iterations: int = 40):
        """Newton on ln Z(zeta) = ln z, elementwise over [G] (residual's phase wrapped to
        (-pi, pi]). Returns (zeta, converged [G]).

        Converged at |residual| < 1e-11.
        """
        zeta = zeta.astype(complex)
        for _ in range(iterations):
            r = self.log_z(zeta) - log_z
            r = r.real + 1j * ((r.imag + math.pi) % (2 * math.pi) - math.pi)
            done = np.abs(r) < 1e-11
            if done.all():
                break
            zeta = np.where(done, zeta, zeta - r / self.dlog_z(zeta))
        return zeta, done


def _upper_edge(inverse: _InverseMap) -> tuple[float, float]:
    """(lambda_max, zeta there): the minimum of the real map Z(zeta) over zeta > max(d).

    Above the spectrum, z real has a real zeta > max(d) with Z(zeta) = z, on the branch that
    grows with zeta; the two real branches meet at the edge, where dZ/dzeta = 0 (for the
    Fuss-Catalan law this gives (k + 1)^(k + 1) / k^k, tested). Where D^2's top is an atom
    heavy enough (module doc), Z grows all the way from zeta = max(d): the minimum is its
    limit there (orthogonal ReLU, k = 2: z = 4 + 1 / (m^2 + m), m -> inf, lambda_max = 4).
    """
    top = float(inverse.d.max())
    gaps = np.exp(np.linspace(math.log(1e-12), math.log(1e6), 4000)) * max(top, 1e-300)
    zetas = top + gaps
    values = inverse.log_z(zetas.astype(complex)).real
    best = int(np.argmin(values))
    lo, hi = zetas[max(best - 1, 0)], zetas[min(best + 1, len(zetas) - 1)]
    for _ in range(100):  # golden-section refinement of the minimum
        a, b = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
        fa, fb = (inverse.log_z(np.array([a, b], dtype=complex)).real).tolist()
        lo, hi = (lo, b) if fa < fb else (a, hi)
    zeta = 0.5 * (lo + hi)
    return math.exp(float(inverse.log_z(np.array([zeta], dtype=complex)).real[0])), zeta


def _above_edge(inverse: _InverseMap, log_x: float, zeta_edge: float) -> complex:
    """The real zeta > zeta_edge with ln Z(zeta) = log_x (Z increases there)."""
    def excess(zeta: float) -> float:
        return float(inverse.log_z(np.array([zeta], dtype=complex)).real[0]) - log_x

    lo, hi = zeta_edge, zeta_edge * 2 + 1
    while excess(hi) < 0:
        lo, hi = hi, 2 * hi
    return complex(root(excess, lo, hi, rtol=1e-15))


def _march(inverse: _InverseMap, log_x: np.ndarray, zeta: complex) -> np.ndarray:
    """zeta along z = x (1 + i eta_0), x = e^log_x descending, each solve started from the last.

    At eta_0 = 1e-2 the path stays well clear of the branch points at the spectrum's edges, so
    it cannot slip onto the real branch; a step Newton cannot take is split in halves.
    """
    zetas = np.empty(len(log_x), dtype=complex)
    shift = cmath.log(1 + 1j * _ETAS[0])
    previous = float(log_x[0])  # the starting zeta solves this point's x on the real axis
    for i, target in enumerate(log_x):
        stack, splits = [float(target)], 0
        while stack:
            point = stack[-1]
            found, ok = inverse.solve(np.array([point + shift]), np.array([zeta]))
            if not ok[0]:
                splits += 1
                if splits > 50:
                    raise ArithmeticError(f"the density solver lost its branch at ln x = {point}")
                stack.append(0.5 * (previous + point))
                continue
            zeta, previous = complex(found[0]), point
            stack.pop()
        zetas[i] = zeta
    return zetas


def _descend(inverse: _InverseMap, log_x: np.ndarray, zetas: np.ndarray) -> np.ndarray:
    """Carry every point's zeta from eta_0 down to the last eta, all points at once.

    At fixed x, zeta is analytic in z over the upper half-plane, so shrinking eta by 10x per
    stage keeps each Newton start in its basin.
    """
    for eta in _ETAS[1:]:
        zetas, ok = inverse.solve(log_x + cmath.log(1 + 1j * eta), zetas)
        if not ok.all():
            raise ArithmeticError(f"the density solver did not converge at eta = {eta}")
    return zetas


def _grid(edge: float, zero_rtol: float) -> np.ndarray:
    """ln x from just above the edge down to the zero cutoff (zero_rtol in s) exactly."""
    top, bottom = math.log(edge) + 0.2, math.log(edge) + 2 * math.log(zero_rtol)
    return np.linspace(top, bottom, math.ceil((top - bottom) / _STEP) + 1)


def _tail_mass(inverse: _InverseMap, zetas: np.ndarray) -> np.ndarray:
    """The share of lambda = s^2 above each x, from the zetas solving z = x (1 + i eta).

    G = (1 + m) / z has the antiderivative F = k E[ln(zeta - d)] + a (m + ln m) + b m in
    zeta (d ln z = k dzeta / zeta + (a / m + b / (1 + m)) dm, and (1 + m) / zeta = E[1 / (zeta
    - d)]), so the mass above x is Im F / pi, with F's imaginary part 0 at z = +inf. For z in
    the upper half-plane m lies in the lower one and zeta in the upper one, so principal
    arguments are F's continuous branch: no unwrapping. Unlike the density -Im G / pi read
    point by point, this is exact across atoms and the inverse-square-root edges that occur
    where D^2 has an atom (orthogonal ReLU, k = 2: the arcsine law), where the inverse map
    does not turn at the edge and a density read at eta = 1e-7 is ~ eta^-1/2 there.
    """
    m = inverse.m(zetas)
    m = m.real - 1j * np.abs(m.imag)  # -0.0 where m is real: arg -pi, its limit from below
    zeta = zetas.real + 1j * np.abs(zetas.imag)
    args = np.angle(zeta[..., None] - inverse.d) @ inverse.w
    return (inverse.k * args + inverse.a * (m.imag + np.angle(m)) + inverse.b * m.imag) / math.pi


def _free_atoms(layers: int, weights: str, sigma_w2: float, d, w) -> list[tuple[float, float]]:
    """J J^T's atoms away from 0, (lambda, mass): the free product of k laws of D^2 has one at
    a^k of mass k P(d = a) - (k - 1) where that is positive (Belinschi 2003, "The atoms of the
    free multiplicative convolution"); a Marchenko-Pastur factor has none, so Gaussian weights
    leave none away from 0."""
    if weights == "gaussian":
        return []
    heavy = (d > 0) & (layers * w - (layers - 1) > 1e-9)
    return [(float((sigma_w2 * a) ** layers), float(layers * p - (layers - 1)))
            for a, p in zip(d[heavy], w[heavy], strict=True)]


def _law_spectrum(layers, weights, sigma_w2, d, w, zero_rtol):
    """(ln x grid [G], mass above each x of the part without atoms [G], atoms [(lambda,
    mass)], lambda_max) of J J^T at infinite width for D^2's law (values d, weights w)."""
    inverse = _InverseMap(layers, weights, sigma_w2, d, w)
    edge, zeta_edge = _upper_edge(inverse)
    log_x = _grid(edge, zero_rtol)
    zetas = _march(inverse, log_x, _above_edge(inverse, float(log_x[0]), zeta_edge))
    zetas = _descend(inverse, log_x, zetas)
    tail = _tail_mass(inverse, zetas)
    atoms = _free_atoms(layers, weights, sigma_w2, d, w)
    for x0, mass in atoms:  # mass ln(z - x0) in F: its share of the tail, smoothed as F's is
        tail -= mass * np.angle(np.exp(log_x) * (1 + 1j * _ETAS[-1]) - x0) / math.pi
    return log_x, tail, atoms, edge


def _single_orthogonal(activation, q, sigma_w2, zero_rtol):
    """The same for k = 1 with orthogonal weights: lambda = sigma_w2 phi'(h)^2 exactly, nothing
    to convolve. D^2's law is taken on a fine grid of h, not as _slope_atoms' Gauss-Hermite
    nodes: at k = 1 those nodes would be the spectrum itself (a comb of atoms)."""
    _, dphi = activation_functions(activation)
    h = np.linspace(-12.0, 12.0, _FINE_NODES)
    shares = np.exp(-0.5 * h * h)
    lam, inverse = np.unique(sigma_w2 * dphi(math.sqrt(q) * h) ** 2, return_inverse=True)
    shares = np.bincount(inverse, shares / shares.sum())
    heavy = (shares > _ATOM_SHARE) & (lam > 0)
    atoms = [(float(x0), float(p)) for x0, p in zip(lam[heavy], shares[heavy], strict=True)]
    log_x = _grid(float(lam[-1]), zero_rtol)
    spread_part = np.where(heavy, 0.0, shares)
    above = np.cumsum(spread_part[::-1])[::-1]  # above[i]: mass at lam >= lam[i]
    index = np.searchsorted(lam, np.exp(log_x), side="right")
    tail = np.append(above, 0.0)[index]
    return log_x, tail, atoms, float(lam[-1])


def predicted_spectrum(
    layers: int,
    weights: str,
    activation: str = "linear",
    sigma_w2: float = 1.0,
    sigma_b2: float = 0.0,
    q: float | None = None,
    *,
    zero_rtol: float = 1e-6,
) -> SpectrumPrediction:
    """The density of ln s for J's singular values s at infinite width (see module doc).

    layers: k >= 1, the number of weight matrices in J; weights: "gaussian" or "orthogonal";
    q: the pre-activations' variance, by default the fixed point q*. The grid runs from just
    above the edge down to zero_rtol times it, matching JacobianSpectrum's zero cutoff, so
    spread and zero_fraction compare with a measured spectrum at the same zero_rtol. Example,
    tanh at criticality with bias (Pennington et al. 2017, Fig. 2)::

        predicted_spectrum(30, "orthogonal", "tanh", critical_sigma_w2("tanh", 1e-3), 1e-3)
    """
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    v_w = _weight_variance(weights)
    q = _pre_activation_variance(activation, sigma_w2, sigma_b2, q)
    d, w = _slope_atoms(activation, q)
    mu1, mu2 = float(w @ d), float(w @ d**2)
    mean_sq, var_sq = (sigma_w2 * mu1) ** layers, layers * (v_w + mu2 / mu1**2 - 1)
    if var_sq < 1e-14:  # orthogonal weights, constant slopes: every s is sigma_w^k sqrt(d)
        s = math.sqrt(mean_sq)
        return SpectrumPrediction(np.empty(0), np.empty(0), mean_sq, 0.0, s, 0.0, 0.0,
                                  ((s, 1.0),))
    if weights == "orthogonal" and layers == 1:
        log_x, tail, atoms, edge = _single_orthogonal(activation, q, sigma_w2, zero_rtol)
    else:
        log_x, tail, atoms, edge = _law_spectrum(layers, weights, sigma_w2, d, w, zero_rtol)
    cells = np.maximum(np.diff(tail), 0.0)[::-1]  # [G - 1], mass between grid points
    log_sv = 0.25 * (log_x[1:] + log_x[:-1])[::-1]  # cell centres in ln s = ln x / 2
    density = cells / (0.5 * -np.diff(log_x)[::-1])  # per unit ln s, the cell's average
    cutoff = zero_rtol * math.sqrt(edge)
    sv_atoms = tuple((math.sqrt(x0), mass) for x0, mass in atoms if math.sqrt(x0) > cutoff)
    return _summarize(log_sv, density, cells, sv_atoms, mean_sq, var_sq, math.sqrt(edge))


def _summarize(log_sv, density, cells, atoms, mean_sq, var_sq, edge) -> SpectrumPrediction:
    """Spread and zero share over the cells (all above the cutoff) and the atoms above it."""
    values = np.concatenate([log_sv, [math.log(s) for s, _ in atoms]])
    masses = np.concatenate([cells, [mass for _, mass in atoms]])
    mass = float(masses.sum())
    mean_log = float(values @ masses) / mass
    var_log = float((values - mean_log) ** 2 @ masses) / mass
    return SpectrumPrediction(log_sv, density, mean_sq, var_sq, edge, math.sqrt(var_log),
                              max(0.0, 1.0 - mass), atoms)

"""Stochastic Lanczos quadrature (SLQ) for the spectrum of a symmetric PSD operator.

Golub & Meurant 2010, "Matrices, Moments and Quadrature with Applications"; Ubaru, Chen & Saad
2017, "Fast estimation of tr(f(A)) via stochastic Lanczos quadrature". From a start vector u,
m Lanczos steps give a tridiagonal T_m whose eigenvalues theta_j (Ritz values) and squared first
eigenvector components tau_j^2 form the m-point Gauss quadrature of the spectral measure of A
seen from u: sum_j tau_j^2 f(theta_j) ~ u^T f(A) u / |u|^2, exact for polynomials of degree
< 2m. Averaged over random u it estimates tr f(A) / n. Everything is batched over P
independent operators and start vectors (rows), in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def project_out(basis: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """v - Q Q^T v, twice ("twice is enough", Parlett): basis Q [P, j, n], v [P, n]."""
    for _ in range(2):
        v = v - torch.einsum("pjn,pj->pn", basis, torch.einsum("pjn,pn->pj", basis, v))
    return v


def lanczos(
    apply: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """m Lanczos steps from each row of start [P, n]: T's diagonal alpha [P, m] and
    off-diagonal beta [P, m] (beta[:, m-1] links to the step not taken), basis [P, m, n].

    Full reorthogonalization (twice, "twice is enough"): without it rounding makes copies of
    converged Ritz values whose weights steal from the rest. On breakdown (the Krylov space is
    invariant, e.g. m >= rank) the next vector is a fresh random one orthogonal to the basis
    with beta = 0: T then splits, and the split-off block gets zero weight, as it should.
    """
    count, n = start.shape
    basis = start.new_zeros(count, steps, n)
    alpha, beta = start.new_zeros(count, steps), start.new_zeros(count, steps)
    q = start / start.norm(dim=1, keepdim=True)
    gen = torch.Generator().manual_seed(12345)
    for j in range(steps):
        basis[:, j] = q
        w = apply(q)
        alpha[:, j] = (w * q).sum(dim=1)
        scale = w.norm(dim=1)
        w = project_out(basis[:, : j + 1], w)
        beta[:, j] = w.norm(dim=1)
        broken = beta[:, j] <= 1e-10 * scale
        if broken.any():
            fresh = torch.randn(int(broken.sum()), n, generator=gen, dtype=w.dtype)
            w[broken] = project_out(basis[broken, : j + 1], fresh)
            beta[broken, j] = 0.0
        q = w / w.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return alpha, beta, basis


def tridiagonal(alpha: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """The Jacobi matrix [P, m, m] from its diagonal [P, m] and off-diagonal [P, m - 1]."""
    return torch.diag_embed(alpha) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)


def gauss_radau(alpha: torch.Tensor, beta: torch.Tensor, node: float) -> torch.Tensor:
    """The (m+1)-point Gauss-Radau rule with one node fixed at `node` (Golub & Meurant 2010,
    Sec. 6.2): T_m extended by beta_m and alpha' = node + delta_m, (T_m - node I) delta =
    beta_m^2 e_m. Returns its Jacobi matrix [P, m + 1, m + 1]."""
    count, steps = alpha.shape
    tri = tridiagonal(alpha, beta[:, :-1])
    rhs = alpha.new_zeros(count, steps, 1)
    rhs[:, -1, 0] = beta[:, -1] ** 2
    shifted = tri - node * torch.eye(steps, dtype=alpha.dtype)
    delta = torch.linalg.solve(shifted, rhs)[:, -1, 0]
    return tridiagonal(torch.cat([alpha, (node + delta)[:, None]], dim=1), beta)


def ritz(tri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes theta (Ritz values) and weights tau^2, each [P, m], from T [P, m, m].

    Each row's weights sum to 1; theta is clipped at 0 (A is PSD, rounding is not).
    """
    theta, vectors = torch.linalg.eigh(tri)  # eigenvectors [P, m, m], one per column
    return theta.clamp_min(0), vectors[:, 0, :] ** 2

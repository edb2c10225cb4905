"""Tests for winit_cli.measure.jacobian: exact spectra, the Lanczos estimator, mean field."""

import math

import numpy as np
import pytest
import torch

from winit_cli.measure.jacobian import (
    TORCH_ACTIVATIONS,
    exact_jacobians,
    jacobian_spectrum,
)
from winit_cli.theory import ACTIVATIONS, critical_sigma_w2, predict


def _random_net(sizes, sigma_w2, sigma_b2, inputs, seed=0, orthogonal=False):
    """Weights W_2..W_{L-1} for pre-activation widths `sizes` = [n_1, ..., n_{L-1}], biases,
    and z_1 ~ N(0, 1) as [inputs, n_1]; all float64."""
    gen = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        if orthogonal:
            square = torch.randn(fan_out, fan_out, generator=gen, dtype=torch.float64)
            w = torch.linalg.qr(square)[0][:, :fan_in] * math.sqrt(sigma_w2 * fan_out / fan_in)
        else:
            w = torch.randn(fan_out, fan_in, generator=gen, dtype=torch.float64)
            w = w * math.sqrt(sigma_w2 / fan_in)
        weights.append(w)
        biases.append(torch.randn(fan_out, generator=gen, dtype=torch.float64) * sigma_b2**0.5)
    z1 = torch.randn(inputs, sizes[0], generator=gen, dtype=torch.float64)
    return weights, biases, z1


def _jacrev_jacobians(weights, biases, activation, z1):
    """dz_{L-1}/dz_1 per input by torch.func.jacrev through a plain forward pass."""
    phi = TORCH_ACTIVATIONS[activation]

    def forward(z):
        for w, b in zip(weights, biases, strict=True):
            z = w @ phi(z) + b
        return z

    return torch.stack([torch.func.jacrev(forward)(z) for z in z1])


def test_activations_are_winits():
    """The same names as the theory module, so any activation a run uses can be measured."""
    assert set(TORCH_ACTIVATIONS) == set(ACTIVATIONS)
    with pytest.raises(ValueError, match="known: elu, gelu"):
        jacobian_spectrum([torch.eye(3)], None, "swish", torch.randn(2, 3))


# ---------------------------------------------------------------------------------------------
# Exact method against torch.func


@pytest.mark.parametrize("activation", sorted(TORCH_ACTIVATIONS))
def test_exact_jacobian_matches_jacrev(activation):
    """Products of column-scaled weights equal autograd's Jacobian, with unequal widths."""
    weights, biases, z1 = _random_net([6, 9, 7, 8, 5], 1.5, 0.1, inputs=4)
    ours = exact_jacobians(weights, biases, activation, z1)
    reference = _jacrev_jacobians(weights, biases, activation, z1)
    assert ours.shape == (4, 5, 6)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "linear"])
def test_exact_spectrum_and_summaries(activation):
    """Singular values, mean of s^2, max and spread, each recomputed in numpy from jacrev."""
    weights, biases, z1 = _random_net([10, 10, 10, 10, 10, 10], 2.0, 0.05, inputs=3)
    spectrum = jacobian_spectrum(weights, biases, activation, z1, method="exact")
    jac = _jacrev_jacobians(weights, biases, activation, z1).numpy()
    values = np.sort(np.concatenate([np.linalg.svd(j, compute_uv=False) for j in jac]))
    assert spectrum.method == "exact"
    np.testing.assert_allclose(np.sort(spectrum.singular_values.numpy()), values, atol=1e-12)
    assert spectrum.mean_sq == pytest.approx(np.mean(np.sum(jac**2, axis=(1, 2))) / 10)
    assert spectrum.max == pytest.approx(values.max())
    nonzero = values[values > 1e-6 * values.max()]
    assert spectrum.spread == pytest.approx(np.std(np.log(nonzero)), rel=1e-10)
    assert spectrum.zero_fraction == pytest.approx(1 - len(nonzero) / len(values))
    assert spectrum.spread_uncertainty == 0.0


def test_relu_dead_units_are_zeros():
    """J's rank is at most the live units of z_1; the rest are zeros, out of the spread."""
    weights, biases, z1 = _random_net([12] * 4, 2.0, 0.0, inputs=5)
    spectrum = jacobian_spectrum(weights, biases, "relu", z1, method="exact")
    jac = _jacrev_jacobians(weights, biases, "relu", z1)
    ranks = torch.linalg.matrix_rank(jac)
    assert (ranks <= (z1 > 0).sum(dim=1)).all()
    assert spectrum.zero_fraction == pytest.approx(1 - ranks.sum().item() / (5 * 12))
    assert spectrum.zero_fraction > 0.3


def test_narrow_first_layer_pads_zeros():
    """n_1 < n_{L-1}: J J^T has n_{L-1} - n_1 zero eigenvalues, counted as singular values."""
    weights, biases, z1 = _random_net([4, 8, 8], 1.0, 0.0, inputs=2)
    spectrum = jacobian_spectrum(weights, biases, "tanh", z1, method="exact")
    assert spectrum.singular_values.numel() == 2 * 8
    assert spectrum.zero_fraction == pytest.approx(0.5)


def test_one_hidden_layer_is_the_identity():
    spectrum = jacobian_spectrum([], None, "tanh", torch.randn(3, 5))
    assert spectrum.mean_sq == 1.0 and spectrum.max == 1.0 and spectrum.spread == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown method"):
        jacobian_spectrum([torch.eye(3)], None, "tanh", torch.randn(2, 3), method="svd")
    with pytest.raises(ValueError, match=r"\[n_inputs, width\]"):
        jacobian_spectrum([torch.eye(3)], None, "tanh", torch.randn(3))
    with pytest.raises(ValueError, match="biases"):
        jacobian_spectrum([torch.eye(3)], [None, None], "tanh", torch.randn(2, 3))


# ---------------------------------------------------------------------------------------------
# The Lanczos estimator against the exact method


def test_auto_picks_exact_for_narrow_nets():
    weights, biases, z1 = _random_net([32] * 4, 1.0, 0.0, inputs=2)
    assert jacobian_spectrum(weights, biases, "tanh", z1).method == "exact"


@pytest.mark.parametrize(
    ("activation", "sigma_w2", "sigma_b2", "orthogonal"),
    [("tanh", 1.0, 0.0, True), ("tanh", 1.76, 0.05, False), ("relu", 2.0, 0.0, False)],
)
def test_lanczos_matches_exact_on_a_medium_net(activation, sigma_w2, sigma_b2, orthogonal):
    """Width 128, depth 12, 8 inputs, m = 64: mean(s^2) to 3%, max to 1e-6 (from below), the
    spread within the spread_uncertainty the estimator reports."""
    weights, biases, z1 = _random_net([128] * 11, sigma_w2, sigma_b2, 8, orthogonal=orthogonal)
    exact = jacobian_spectrum(weights, biases, activation, z1, method="exact")
    estimate = jacobian_spectrum(
        weights, biases, activation, z1, method="lanczos", lanczos_steps=64
    )
    assert estimate.method == "lanczos"
    assert estimate.mean_sq == pytest.approx(exact.mean_sq, rel=0.03)
    assert estimate.max == pytest.approx(exact.max, rel=1e-6)
    assert estimate.max <= exact.max * (1 + 1e-12)  # Ritz values never overshoot
    assert abs(estimate.spread - exact.spread) <= estimate.spread_uncertainty
    assert estimate.singular_values.shape == estimate.weights.shape == (8 * 64,)
    assert float(estimate.weights.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("steps", [4, 16, 64, 128])
def test_spread_uncertainty_is_honest(steps):
    """Few steps on a broad spectrum (tanh, Gaussian weights, on the critical line): the spread
    reads low, the uncertainty says by how much at most; with m = n it is small."""
    weights, biases, z1 = _random_net([128] * 11, 1.76, 0.05, 8, seed=1)
    exact = jacobian_spectrum(weights, biases, "tanh", z1, method="exact")
    estimate = jacobian_spectrum(weights, biases, "tanh", z1, method="lanczos", lanczos_steps=steps)
    assert abs(estimate.spread - exact.spread) <= estimate.spread_uncertainty
    if steps <= 16:
        assert estimate.spread < 0.6 * exact.spread
        assert estimate.spread_uncertainty > 0.5 * exact.spread
    if steps == 128:
        assert estimate.spread_uncertainty < 0.2 * exact.spread


def test_lanczos_with_m_equal_n_finds_the_exact_values():
    """m = n: Ritz values are the eigenvalues (to ~1e-8 of the largest: SLQ works with squares,
    so singular values below sqrt(float64 eps) ~ 1e-8 of the max are blurred), and the deflated
    mean(s^2) is exact."""
    weights, biases, z1 = _random_net([24] * 5, 1.5, 0.1, inputs=1)
    exact = jacobian_spectrum(weights, biases, "tanh", z1, method="exact")
    estimate = jacobian_spectrum(weights, biases, "tanh", z1, method="lanczos", lanczos_steps=24)
    np.testing.assert_allclose(
        np.sort(estimate.singular_values.numpy()),
        np.sort(exact.singular_values.numpy()),
        rtol=1e-8,
        atol=1e-8 * exact.max,
    )
    assert estimate.mean_sq == pytest.approx(exact.mean_sq, rel=1e-10)


def test_lanczos_on_a_net_of_unequal_widths():
    """Widths 20 -> 24 -> 16: J J^T is 16 x 16 (the last layer's width); with m = 16 the
    deflated mean(s^2) is exact, ||J||_F^2 / 16 with J = W_2 D_2 W_1 D_1 multiplied out
    (D = diag(tanh'(z))), and the Ritz values are J's singular values."""
    weights, biases, z1 = _random_net([20, 24, 16], 1.5, 0.1, inputs=1)
    estimate = jacobian_spectrum(weights, biases, "tanh", z1, method="lanczos", lanczos_steps=16)
    z, jac = z1[0], torch.eye(20, dtype=torch.float64)
    for w, b in zip(weights, biases, strict=True):
        jac = w @ ((1 - torch.tanh(z) ** 2)[:, None] * jac)  # [16, 20] at the end
        z = w @ torch.tanh(z) + b
    assert estimate.mean_sq == pytest.approx(float((jac**2).sum()) / 16, rel=1e-10)
    np.testing.assert_allclose(np.sort(estimate.singular_values.numpy()),
                               np.sort(torch.linalg.svdvals(jac).numpy()), rtol=1e-8,
                               atol=1e-8 * float(torch.linalg.svdvals(jac).max()))


def test_lanczos_survives_rank_deficiency():
    """ReLU halves the rank: the Krylov space runs out before m = n (breakdown), and the
    zeros still come out as zeros with about the right share."""
    weights, biases, z1 = _random_net([64] * 6, 2.0, 0.0, inputs=4)
    exact = jacobian_spectrum(weights, biases, "relu", z1, method="exact")
    estimate = jacobian_spectrum(weights, biases, "relu", z1, method="lanczos", lanczos_steps=64)
    assert estimate.zero_fraction == pytest.approx(exact.zero_fraction, abs=0.1)
    assert estimate.mean_sq == pytest.approx(exact.mean_sq, rel=1e-8)
    assert abs(estimate.spread - exact.spread) <= estimate.spread_uncertainty


# ---------------------------------------------------------------------------------------------
# Mean field: mean(s^2) is the product of the layers' chi


def _theory_chi_product(activation, sizes, sigma_w2, sigma_b2, q1):
    """prod_{l=1}^{L-2} chi_l from winit's predict, for z_1 of variance q1 (a stand-in first
    layer with sigma_w2 = 1 on an input of second moment q1) and a stand-in output layer."""
    depth = len(sizes) + 1
    fan_in = [sizes[0]] + list(sizes)
    prediction = predict(
        activation,
        fan_in,
        [1 / fan_in[0]] + [sigma_w2 / n for n in fan_in[1:]],
        [0.0] + [sigma_b2] * (depth - 1),
        input_second_moment=q1,
    )
    chis = [layer.chi for layer in prediction.layers[: depth - 2]]
    return math.prod(chis)


def _measured_chi_product(weights, biases, activation, z1):
    """prod_l (||W_{l+1}||_F^2 / n_l) mean(phi'(z_l)^2), measured on the net's own z_l."""
    phi, z, product = TORCH_ACTIVATIONS[activation], z1.clone(), 1.0
    for w, b in zip(weights, biases, strict=True):
        z.requires_grad_(True)
        (slope,) = torch.autograd.grad(phi(z).sum(), z)
        product *= (w.pow(2).sum() / w.shape[1]).item() * slope.pow(2).mean().item()
        z = (phi(z) @ w.T + b).detach()
    return product


@pytest.mark.parametrize(
    ("activation", "sigma_w2", "sigma_b2", "theory_tol"),
    [
        ("linear", 1.0, 0.0, 0.06),
        ("tanh", 1.0, 0.0, 0.06),  # critical without bias: q -> 0 slowly, chi_l < 1
        ("tanh", None, 0.05, 0.06),  # on the critical line
        ("tanh", 0.8, 0.05, 0.06),  # ordered: mean(s^2) ~ 5e-3
        ("tanh", 2.5, 0.05, 0.06),  # chaotic: ~ 4
        ("relu", 2.0, 0.1, 0.15),
    ],
)
def test_mean_sq_is_the_product_of_chi(activation, sigma_w2, sigma_b2, theory_tol):
    """Width 384, depth 12, 8 inputs, 4 nets: mean(s^2) against the product of chi measured
    layer by layer on each net (to 6%), and the nets' geometric mean against winit's theory.
    The theory tolerance covers finite width: per net, measured scatter around the theory was
    up to 11% (tanh) and 29% (ReLU, whose inputs grow correlated, so they do not average)."""
    if sigma_w2 is None:
        sigma_w2 = critical_sigma_w2(activation, sigma_b2)
    sizes, log_ratios = [384] * 11, []
    for seed in range(4):
        weights, biases, z1 = _random_net(sizes, sigma_w2, sigma_b2, inputs=8, seed=seed)
        spectrum = jacobian_spectrum(weights, biases, activation, z1, method="exact")
        measured = _measured_chi_product(weights, biases, activation, z1)
        assert spectrum.mean_sq == pytest.approx(measured, rel=0.06)
        q1 = z1.pow(2).mean().item()
        theory = _theory_chi_product(activation, sizes, sigma_w2, sigma_b2, q1)
        log_ratios.append(math.log(spectrum.mean_sq / theory))
    assert abs(np.mean(log_ratios)) < theory_tol

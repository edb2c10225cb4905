"""record.jacobian: the step-0 Jacobian spectrum a run records (spectrum.csv and summary.json's
`jacobian` block), the `critical` scheme's orthogonal option and the `mean_field` scheme."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from winit_cli import theory
from winit_cli.config import validate
from winit_cli.datasets import make_splits
from winit_cli.inits import initialize
from winit_cli.models import build_model
from winit_cli.runner.group import run_group

WIDTH, DEPTH, INPUTS = 256, 10, 16
# mean(s^2) pools 16 inputs x 256 singular values; theory's prod chi is the infinite-width
# limit. Measured here: within 2% at width 256-512; the tolerance leaves room for the seed.
MEAN_SQ_RTOL = 0.08


def _config(tmp_path, params: dict, name: str):
    return validate({
        "name": name, "model": {"depth": DEPTH, "width": WIDTH, "activation": "tanh"},
        "init": {"scheme": "critical", "params": params},
        "train": {"steps": 1, "batch_size": 32}, "data": {"val_size": 500, "subset": 2000},
        "record": {"jacobian": True, "jacobian_inputs": INPUTS},
        "output_dir": str(tmp_path)})


@pytest.fixture(scope="module")
def critical_runs(mnist_raw, tmp_path_factory):
    """Critical tanh (sigma_b2 = 0: sigma_w2 = 1), Gaussian and orthogonal, trained together
    for one step."""
    tmp = tmp_path_factory.mktemp("jacobian")
    splits = make_splits(mnist_raw, 500, 2000, seed=0)
    configs = [_config(tmp, {"sigma_b2": 0.0}, "gauss"),
               _config(tmp, {"sigma_b2": 0.0, "orthogonal": True}, "orth")]
    return run_group(configs, splits)


@pytest.mark.mnist
def test_mean_squared_singular_value_matches_the_product_of_chi(critical_runs):
    """The measured mean(s^2) of dz_{L-1}/dz_1 agrees with the run's predicted prod chi_l,
    for Gaussian and orthogonal weights alike (chi depends only on the variance)."""
    for outcome in critical_runs:
        j = outcome.record.jacobian
        assert j.method == "exact" and j.inputs == INPUTS and j.reason is None
        # independent: the per-layer predicted chi in layers.csv, layers 1..L-2
        step0 = outcome.layers[outcome.layers.step == 0].sort_values("layer")
        chis = step0.predicted_chi.to_numpy()[: DEPTH - 2]
        assert j.predicted_mean_sq == pytest.approx(float(chis.prod()), rel=1e-9)
        assert j.mean_sq == pytest.approx(j.predicted_mean_sq, rel=MEAN_SQ_RTOL)


@pytest.mark.mnist
def test_orthogonal_weights_concentrate_the_spectrum(critical_runs):
    """Dynamical isometry (Pennington et al. 2017): at criticality with tanh, orthogonal weights
    keep the singular values far less spread than Gaussian ones of the same variance."""
    gauss, orth = (o.record.jacobian for o in critical_runs)
    assert orth.spread < 0.6 * gauss.spread
    assert orth.max < gauss.max


@pytest.mark.mnist
def test_spectrum_csv_round_trips_to_the_summary(critical_runs):
    """spectrum.csv holds every singular value (inputs x width rows, weights summing to 1), and
    the summary's numbers are recomputed from it."""
    for outcome in critical_runs:
        frame = pd.read_csv(outcome.run_dir / "spectrum.csv")
        assert list(frame.columns) == ["value", "weight"]
        assert len(frame) == INPUTS * WIDTH
        assert frame.weight.sum() == pytest.approx(1.0, rel=1e-12)
        summary = json.loads((outcome.run_dir / "summary.json").read_text())["jacobian"]
        assert (frame.weight * frame.value**2).sum() == pytest.approx(summary["mean_sq"],
                                                                       rel=1e-12)
        assert frame.value.max() == summary["max"]
        nonzero = frame.value[frame.value > 1e-6 * frame.value.max()]
        assert nonzero.apply(math.log).std(ddof=0) == pytest.approx(summary["spread"], rel=1e-9)


@pytest.mark.mnist
def test_no_spectrum_unless_asked(tmp_path, mnist_raw):
    """record.jacobian defaults to off: no spectrum.csv, no block, and the config hash of runs
    made before the option exists is unchanged."""
    raw = {"model": {"depth": 3, "width": 8}, "train": {"steps": 1},
           "output_dir": str(tmp_path)}
    config = validate(raw)
    assert config.record.jacobian is False
    with_default = validate({**raw, "record": {"jacobian": False, "jacobian_inputs": 4}})
    assert config.content_hash() == with_default.content_hash()
    (outcome,) = run_group([config], make_splits(mnist_raw, 100, 500, seed=0))
    assert outcome.record.jacobian is None
    assert not (outcome.run_dir / "spectrum.csv").exists()


def _member_weights(scheme: str, params: dict, activation: str = "tanh"):
    config = validate({"model": {"depth": 4, "width": 64, "activation": activation},
                       "init": {"scheme": scheme, "params": params}})
    model = build_model(config.model, 784, 10, 1)
    initialize(model, 0, scheme, params, torch.Generator().manual_seed(0))
    return [layer.weight[0].detach().double() for layer in model.linears()]


def test_critical_orthogonal_is_scaled_orthogonal_with_the_critical_variance():
    """orthogonal: true gives W W^T = gain^2 I (fan_out <= fan_in) with the per-element
    variance sigma_w2* / fan_in of the Gaussian critical scheme."""
    sigma_w2 = theory.critical_sigma_w2("tanh", 0.05)
    for w in _member_weights("critical", {"sigma_b2": 0.05, "orthogonal": True}):
        fan_out, fan_in = w.shape
        gram = w @ w.T if fan_out <= fan_in else w.T @ w
        gain2 = sigma_w2 * max(fan_in, fan_out) / fan_in
        assert torch.allclose(gram, gain2 * torch.eye(len(gram), dtype=gram.dtype), atol=1e-5)
        assert w.pow(2).mean().item() == pytest.approx(sigma_w2 / fan_in, rel=1e-5)


def test_mean_field_scheme_draws_the_given_variances():
    """mean_field: W ~ N(0, sigma_w2 / fan_in): the sample variance of a 64 x 784 layer is
    within a few standard errors (~0.6%) of it."""
    w = _member_weights("mean_field", {"sigma_w2": 3.0, "sigma_b2": 0.1})[0]
    assert w.var().item() == pytest.approx(3.0 / 784, rel=0.03)
    assert abs(w.mean().item()) < 4 * math.sqrt(3.0 / 784 / w.numel())


@pytest.mark.mnist
@pytest.mark.slow
def test_report_draws_the_spectrum_density(critical_runs, tmp_path):
    """`winit report` over runs with spectrum.csv adds a spectrum-density figure to their group
    (and none for runs without one: see test_report.py's figure lists)."""
    from winit_cli.app.report import build_report

    report = build_report([critical_runs[0].run_dir.parent], tmp_path / "report")
    figures = [p for p in report.files if p.name.startswith("spectrum_")]
    assert len(figures) == 1 and figures[0].stat().st_size > 1000

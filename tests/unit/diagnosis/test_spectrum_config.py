"""Which runs get a Jacobian-spectrum prediction (diagnosis/spectrum.py) and with which
arguments: a config is mapped by hand here onto the theory's (k = depth - 2 square weight
matrices, sigma_w^2 = width Var(W), the weights' family) and the prediction compared with the
theory's own on those arguments; outside the theory, none."""

from __future__ import annotations

import pytest
import yaml

from winit_cli.diagnosis.spectrum import predicted_for, weight_family
from winit_cli.records.reader import flatten
from winit_cli.theory.spectra import predicted_spectrum

HE = {"model.width": 64, "model.depth": 6, "model.activation": "relu",
      "init.scheme": "he_normal"}


def test_he_normal_is_four_gaussian_layers_at_sigma_w2_two():
    """He: Var(W) = 2 / fan_in, so sigma_w^2 = 2 whatever the width; depth 6 has 4 weight
    matrices between z_1 and z_5; no bias variance."""
    found = predicted_for(HE)
    expected = predicted_spectrum(4, "gaussian", "relu", 2.0, 0.0)
    assert (found.mean_sq, found.var_sq) == pytest.approx((expected.mean_sq, expected.var_sq))


@pytest.mark.parametrize(("scheme", "params", "family"), [
    ("he_normal", {}, "gaussian"), ("critical", {}, "gaussian"),
    ("critical", {"orthogonal": True}, "orthogonal"), ("orthogonal", {}, "orthogonal"),
    ("xavier_uniform", {}, None), ("lsuv", {}, None), ("mean1_normal", {}, None),
])
def test_weight_family(scheme, params, family):
    assert weight_family(scheme, params) == family


@pytest.mark.parametrize(("changes", "predicted"), [
    ({"model.depth": 3}, True),  # one weight matrix between z_1 and z_2: still a spectrum
    ({"model.depth": 2}, False),  # none
    ({"model.parametrization": "mup", "model.base_width": 32}, False),  # rescaled init
    ({"model.parametrization": "mup", "model.base_width": 64}, True),  # standard at 64
    ({"model.parametrization": "standard", "model.base_width": 32}, True),
    ({"model.parametrization": "mup"}, True),  # no base width: standard everywhere
    ({"model.kind": "resmlp"}, False),
    ({"model.widths": [64, 32]}, False),
])
def test_which_runs_get_a_prediction(changes, predicted):
    assert (predicted_for({**HE, **changes}) is not None) == predicted


def test_parametrization_read_from_a_file_is_compared_by_value():
    """A report reads the config from config.yaml: its strings are not the interned literals
    the code compares with, so "standard" must match by value (with a base width of 32, any
    other parametrization rescales the init and gets no prediction)."""
    config = flatten(yaml.safe_load(
        "model: {width: 64, depth: 6, activation: linear, parametrization: standard, "
        "base_width: 32}\ninit: {scheme: orthogonal}"))
    assert predicted_for(config) is not None  # orthogonal, linear: a spike, no solve


@pytest.mark.parametrize("mean", [0.5, -0.5])
def test_nonzero_mean_weights_get_no_prediction(mean):
    """The theory is for zero-mean weights (a Gaussian family, as he_normal's above): a normal
    draw of mean +-0.5 is outside it."""
    assert predicted_for({**HE, "init.scheme": "normal", "init.params.std": 0.125,
                          "init.params.mean": mean}) is None


@pytest.mark.parametrize("changes", [
    {"init.scheme": "no_such_scheme"},  # a record of a scheme this winit does not have
    {"init.scheme": "normal", "init.params.std": "0.1"},  # a hand-edited config.yaml's string
    {"init.scheme": "normal", "init.params.std": 1.0, "model.activation": "gelu"},  # q* = inf
    # sigma_w^2 = 64 x 1^2, chi = 32 over 398 layers: E[s^2] = 32^398 = 2^1990, past a float
    {"init.scheme": "normal", "init.params.std": 1.0, "model.depth": 400},
])
def test_configs_the_theory_cannot_answer_get_none_not_an_error(changes):
    """A report reads configs from disk, unvalidated: an unknown scheme, a parameter of the wrong
    type, an activation whose length map diverges (gelu at sigma_w^2 = 64) or a mean square past
    float64 give no prediction, not a crash."""
    assert predicted_for({**HE, **changes}) is None

"""Which runs get a Jacobian-spectrum prediction (diagnosis/spectrum.py) and with which
arguments: a config is mapped by hand here onto the theory's (k = depth - 2 square weight
matrices, sigma_w^2 = width Var(W), the weights' family) and the prediction compared with the
theory's own on those arguments; outside the theory, none."""

from __future__ import annotations

import pytest

from winit_cli.diagnosis.spectrum import predicted_for, weight_family
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

"""Mean-field and random-matrix theory of networks at initialization: pure maths on numpy, with
no import from the rest of winit, so that every prediction can be checked on its own.

    gaussian.py           the one 1-D and the one 2-D Gaussian quadrature
    activations.py        phi, phi' and closed-form moments of each activation
    roots.py              the one root finder (fixed points, the edge of chaos)
    mean_field.py         length map q, chi, q*, critical sigma_w^2, the depth scale xi, and the
                          layer-by-layer prediction for a concrete MLP
    correlation.py        the correlation map, c*, chi_c, xi_c, the ordered/chaotic boundary
    batchnorm.py          BatchNorm's gradient explosion rate (Yang et al. 2019)
    layernorm_dropout.py  LayerNorm's and dropout's mean-field theory
    residual.py           residual MLPs (Yang & Schoenholz 2017; Fixup, SkipInit)
    spectra.py            the Jacobian's singular value spectrum (free probability)

What applies to a run and how its config maps onto these is winit_cli/diagnosis/predict.py's
business, not this package's.
"""

from winit_cli.theory.activations import (
    ACTIVATIONS,
    SELU_ALPHA,
    SELU_SCALE,
    activation_functions,
    derivative_second_moment,
    get_activation,
    second_moment,
)
from winit_cli.theory.gaussian import ArrayFn, bivariate_expect, gauss_expect
from winit_cli.theory.mean_field import (
    LayerPrediction,
    Prediction,
    critical_sigma_w2,
    depth_scale,
    fixed_point_q,
    predict,
)

__all__ = ["ACTIVATIONS", "SELU_ALPHA", "SELU_SCALE", "ArrayFn", "LayerPrediction", "Prediction",
           "activation_functions", "bivariate_expect", "critical_sigma_w2", "depth_scale",
           "derivative_second_moment", "fixed_point_q", "gauss_expect", "get_activation",
           "predict", "second_moment"]

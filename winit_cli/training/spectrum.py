"""The Jacobian spectrum at initialization, for runs with `record.jacobian: true`.

Taken once, before the first update (step 0 is where theory makes exact predictions), never in
the training loop: the map z_1 -> z_{L-1} of each member, at the first `record.jacobian_inputs`
examples of the training split (a fixed random sample, the same for every run). z_1 comes from
a forward `Trace` of the model itself; the weights from its `linears()`. measure/jacobian.py
chooses the method: exact up to width 1024, stochastic Lanczos quadrature beyond.
"""

from __future__ import annotations

import torch

from winit_cli.measure.jacobian import JacobianSpectrum, jacobian_spectrum
from winit_cli.models.base import StackedModel, Trace


def spectrum_reason(model: StackedModel, kind: str) -> str | None:
    """Why this model has no z_1 -> z_{L-1} chain to take the spectrum of, or None."""
    if kind != "mlp":
        return f"model kind {kind!r}: the spectrum is defined here for plain MLPs only"
    if model.norms() or model.noise is not None:  # the chain below has only W and phi'
        return "normalization or dropout layers: the spectrum is defined here for plain MLPs only"
    if model.depth < 3:
        return "fewer than two hidden layers: z_1 -> z_{L-1} is the identity"
    return None


@torch.no_grad()
def init_spectra(model: StackedModel, x_train: torch.Tensor, inputs: int
                 ) -> list[JacobianSpectrum]:
    """One spectrum per member, at x_train[:inputs]."""
    layers = model.linears()
    device, dtype = layers[0].weight.device, layers[0].weight.dtype
    x = x_train[:inputs].to(device, dtype)  # [B, input]
    trace = Trace()
    model(x.expand(model.members, *x.shape), trace)
    hidden = layers[1:-1]  # W_2 .. W_{L-1}
    spectra = []
    for k in range(model.members):
        weights = [layer.weight[k].detach().cpu() for layer in hidden]
        biases = [None if layer.bias is None else layer.bias[k].detach().cpu()
                  for layer in hidden]
        z1 = trace.pre[0][k].cpu()  # [B, n_1]
        spectra.append(jacobian_spectrum(weights, biases, model.activation, z1, seed=k))
    return spectra

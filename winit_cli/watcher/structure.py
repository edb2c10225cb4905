"""What the first recorded step shows about a user's model: the activation after each layer, and
whether the model is an MLP that winit's mean-field theory describes.

It is such an MLP when every recorded layer is an nn.Linear, each one's input is the previous
one's h (the same tensor, so nothing happens in between: no dropout, no residual sum), the
hidden layers share one activation the theory knows (an activation module, or none at all:
"linear"), the output layer's z is used as it is, and no parameter goes unrecorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from winit_cli.watcher.hooks import Call
from winit_cli.watcher.layers import Layer

THEORY_SCOPE = "mean-field theory here covers MLPs of a known activation and init scheme"


@dataclass(frozen=True)
class Structure:
    activations: list[str | None]  # per Linear/Conv layer in order; None: not known
    activation: str  # the hidden layers' one activation, or "mixed" or "unknown"
    mlp_problem: str | None  # why it is not an MLP the theory describes; None: it is one
    bias: bool  # every layer has a bias (else: none has, for an MLP)
    input_second_moment: float | None  # mean of x^2 over the first layer's input


def _activation(i: int, next_layer: int | None, calls: dict[int, list[Call]]) -> str | None:
    """winit's name for what is applied to layer i's z before it is used, if known."""
    own = calls.get(i, [])
    names = {c.activation for c in own}
    if own and all(c.activated for c in own) and len(names) == 1:
        return names.pop()
    feeds_next = next_layer is not None and bool(calls.get(next_layer)) and all(
        c.source == i for c in calls[next_layer])
    if own and not any(c.activated for c in own) and feeds_next:
        return "linear"
    return None


def _summary(hidden: list[str | None]) -> str:
    """The hidden layers' activation as the run's record gives it: the one known name among
    them (a layer followed by a norm layer has none), "mixed" if several, else "unknown"."""
    known = {a for a in hidden if a is not None}
    if len(known) == 1:
        return known.pop()
    return "mixed" if known else "unknown"


def read_structure(layers: list[Layer], order: list[int], calls: dict[int, list[Call]],
                   first_input_moment: float | None, unrecorded: list[str]) -> Structure:
    dz = [i for i in order if layers[i].has_dz]
    acts = [_activation(i, dz[k + 1] if k + 1 < len(dz) else None, calls)
            for k, i in enumerate(dz)]
    hidden = acts[:-1]
    activation = _summary(hidden) if hidden else "linear"  # one layer: no nonlinearity
    biases = {layers[i].bias is not None for i in dz}
    problem = _mlp_problem(layers, order, dz, calls, unrecorded, hidden, biases)
    return Structure(acts, activation, problem, biases == {True}, first_input_moment)


def _mlp_problem(layers: list[Layer], order: list[int], dz: list[int],
                 calls: dict[int, list[Call]], unrecorded: list[str],
                 hidden: list[str | None], biases: set[bool]) -> str | None:
    counts = {len(calls.get(i, [])) for i in dz}
    if unrecorded:
        return "the model has parameters winit does not record"
    if any(layers[i].kind != "linear" for i in order):
        return "the model has Conv or normalization layers"
    if not dz or 0 in counts or len(counts) > 1:
        return "its layers did not all run, or ran different numbers of times, in a step"
    if any(c.source != dz[k - 1] for k in range(1, len(dz)) for c in calls[dz[k]]):
        return "its Linear layers do not feed each other directly, in sequence"
    if any(c.activated for c in calls[dz[-1]]):
        return "its output layer is followed by an activation"
    if len(dz) > 1 and (None in hidden or len(set(hidden)) > 1):
        return "its hidden activation is not one winit knows, or differs between layers"
    if len(biases) > 1:
        return "some of its layers have biases and others do not"
    return None

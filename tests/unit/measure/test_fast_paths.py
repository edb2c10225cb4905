"""The shortcuts that make training and recording fast give the same bits as the plain way.

Each test runs the fast path and the straightforward one on the same weights and batch and
requires equality, not closeness: these shortcuts change how the work is done, never what is
computed (measure/norms.py, measure/probes.py, measure/recorder.py, training/step.py,
models/base.py's ACTIVATIONS_IN_PLACE).
"""

from __future__ import annotations

import pytest
import torch
from test_probes import batch, make_model

from winit_cli.measure.norms import AbsStats
from winit_cli.measure.probes import Probe
from winit_cli.measure.quantities import columns
from winit_cli.models import ACTIVATIONS, Trace
from winit_cli.models.base import ACTIVATIONS_IN_PLACE
from winit_cli.training import step as training_step


def backward_plainly(model, x, y) -> None:
    """The members' batch means summed, then backward: what the fast path must equal."""
    logits = model(x, None)
    losses, _ = training_step.member_losses(logits, y)
    losses.sum().backward()


def grads(model) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return grads


def record_with(model, x, y, trace) -> torch.Tensor:
    probe = Probe(model)
    logits = model(x, trace)
    losses, _ = training_step.member_losses(logits, y)
    losses.sum().backward()
    values = probe.before_step(trace, will_update=False)
    model.zero_grad(set_to_none=True)
    return values


@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_live_record_is_the_record_of_a_plain_trace(activation, members):
    """Protects the hook that keeps dL/dz by reference: recording during the step gives the
    same bits as measuring a plain Trace (gradients retained) afterwards; with several members
    dL/dz's norm is summed in another memory order (measure/recorder.py), to float32 rounding."""
    model = make_model(activation, members)
    x, y = batch(members)
    live = record_with(model, x, y, Probe(model).trace())
    plain = record_with(model, x, y, Trace())
    layout = [columns().index("act_grad_norm")] if members > 1 else []
    same = [j for j in range(len(columns())) if j not in layout]
    assert torch.equal(live[..., same].nan_to_num(-1.0), plain[..., same].nan_to_num(-1.0))
    assert torch.allclose(live[..., layout], plain[..., layout], rtol=1e-6, atol=0)
    assert live.isfinite().sum() > live.numel() // 2  # not vacuous: most cells hold numbers


def test_records_are_right_when_the_probe_reuses_its_buffers():
    """Protects the buffers kept between records: a second record, of other gradients, is what
    a fresh probe measures; none of the first record's values leaks into it."""
    model = make_model("relu", 2)
    probe = Probe(model)
    for seed in (1, 2):
        x, y = batch(2, seed=seed)
        trace = probe.trace()
        losses, _ = training_step.member_losses(model(x, trace), y)
        losses.sum().backward()
        reused = probe.before_step(trace, will_update=False)
        model.zero_grad(set_to_none=True)
        fresh = record_with(model, x, y, Probe(model).trace())
        assert torch.equal(reused.nan_to_num(-1.0), fresh.nan_to_num(-1.0)), seed


def test_abs_stats_against_their_definition_across_shapes():
    """Sums and largest |x| per member, when the buffer is first made, reused, and grown for
    a larger tensor; each against float64 sums and exact maxima."""
    stats = AbsStats()
    g = torch.Generator().manual_seed(0)
    for shapes in ([(3, 7, 5), (3, 4)], [(3, 7, 5), (3, 4)], [(3, 4), (3, 9, 9)]):
        tensors = [torch.randn(s, generator=g) * 10 ** torch.randint(-3, 3, (), generator=g)
                   for s in shapes]
        sums, largest = stats(tensors, members=3)
        for i, t in enumerate(tensors):
            flat = t.reshape(3, -1).double()
            assert torch.allclose(sums[3 * i:3 * i + 3].double(), flat.abs().sum(1), rtol=1e-6)
            assert torch.equal(largest[3 * i:3 * i + 3].double(), flat.abs().amax(1))


@pytest.mark.parametrize("members, examples", [(1, 64), (3, 77)])
def test_backward_from_the_examples_equals_the_sum_of_the_members_means(members, examples):
    """Protects the step's backward: starting from each example's loss with the gradient the
    members' batch means and their sum would pass down gives the same gradients, bit for bit
    (an odd batch size too, where 1/B is not exact)."""
    model = make_model("tanh", members)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(members, examples, 12, generator=g)
    y = torch.randint(0, 5, (members, examples), generator=g)
    losses, accuracies = training_step._forward_backward(model, torch.optim.SGD(
        model.parameters(), lr=0.1), x, y, None)
    fast = grads(model)
    backward_plainly(model, x, y)
    plain_losses, plain_accuracies = training_step.member_losses(model(x, None), y)
    assert all(torch.equal(a, b) for a, b in zip(fast, grads(model), strict=True))
    assert torch.equal(losses, plain_losses.detach())
    assert torch.equal(accuracies, plain_accuracies)


@pytest.mark.parametrize("members, shared", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_an_in_place_activation_trains_as_the_plain_one(activation, members, shared,
                                                        monkeypatch):
    """Protects the unrecorded step's in-place activation: the same gradients as the
    out-of-place one, for every activation (those without an in-place form fall back), alone,
    stacked, and stacked on one shared batch (the first layer's GEMM shared)."""
    model = make_model(activation, members)
    x, y = batch(members)
    if shared:
        x, y = x[:1].expand_as(x), y[:1].expand_as(y)
    backward_plainly(model, x, y)
    in_place = grads(model)
    monkeypatch.setattr(model, "phi_in_place", ACTIVATIONS[activation])
    backward_plainly(model, x, y)
    assert all(torch.equal(a, b) for a, b in zip(in_place, grads(model), strict=True))
    assert set(ACTIVATIONS_IN_PLACE) == set(ACTIVATIONS)

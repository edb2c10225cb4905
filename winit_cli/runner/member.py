"""A member's records once it has trained: layers.csv's frame, the verdict, the theory beside
step 0, the Jacobian spectrum and histograms, as the final run record and tables (`assemble`),
or what can be kept of them when that fails (`salvage`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from winit_cli.diagnosis.predict import predict_run
from winit_cli.diagnosis.predict_families import explain
from winit_cli.diagnosis.spectrum import predicted_for
from winit_cli.diagnosis.verdict import (
    NO_HIDDEN_LAYER,
    Verdict,
    diagnose,
    measured_first_to_last_hidden,
    zero_gradient_layers,
)
from winit_cli.measure.histograms import histogram_frame
from winit_cli.records.files import finite, finite_values
from winit_cli.records.layers import layers_frame as frame_of
from winit_cli.records.reader import flatten
from winit_cli.records.schema import (
    FinalRecord,
    JacobianRecord,
    RunRecord,
    TheoryRecord,
    VerdictRecord,
)
from winit_cli.status import Status
from winit_cli.training.loop import MemberLog


@dataclass
class RunResult:
    """One member's records, in memory: what a run directory holds."""

    record: RunRecord
    layers: pd.DataFrame
    metrics: pd.DataFrame
    spectrum: pd.DataFrame | None = None  # spectrum.csv, with record.jacobian
    histograms: pd.DataFrame | None = None  # histograms.csv, with record.histograms


def layers_frame(log: MemberLog) -> pd.DataFrame:
    """The member's layers.csv (records/layers.py) from what its log kept."""
    return frame_of(log.layer_steps, [v.numpy() for v in log.layer_values], log.layer_shapes,
                    log.layer_columns)


def verdict_of(log: MemberLog, layers: pd.DataFrame) -> Verdict:
    d = log.config.diagnose
    return diagnose(layers, vanish_decades=d.vanish_decades, explode_decades=d.explode_decades,
                    diverged_step=log.diverged_step, diverged_layer=log.diverged_layer,
                    diverged_cause=log.diverged_cause)


def verdict_record(verdict: Verdict, layers: pd.DataFrame) -> VerdictRecord:
    """summary.json's verdict block: the verdict and the gradient ratios the views show (also
    for runs of `winit.watch`, from their Linear and Conv layers)."""
    step0 = layers[layers.step == 0].sort_values("layer")
    end = layers[layers.step == layers.step.max()] if len(layers) else step0
    return VerdictRecord(
        **finite_values(verdict.to_dict()),
        log10_first_to_last=finite(measured_first_to_last_hidden(step0)) if len(step0) else None,
        log10_first_to_last_end=finite(measured_first_to_last_hidden(end)) if len(end) else None,
        zero_grad_layers_init=zero_gradient_layers(step0) if len(step0) else None)


def jacobian_record(log: MemberLog, theory: dict) -> tuple[JacobianRecord | None,
                                                              pd.DataFrame | None]:
    """summary.json's `jacobian` block and spectrum.csv (value, weight: one row per singular
    value, weights summing to 1), or (None, None) when the run did not ask for them."""
    config = log.config.record
    if not config.jacobian:
        return None, None
    if log.jacobian is None:
        reason = log.jacobian_reason or "not measured (the run stopped before step 0)"
        return JacobianRecord(method="none", inputs=config.jacobian_inputs, reason=reason), None
    summary = log.jacobian
    ratio = theory.get("predicted_log10_ratio")
    # predicted log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| is half the sum of log10 chi_l, l = 1..L-2
    predicted = 10.0 ** (2 * ratio) if ratio is not None else None
    theory_spectrum = predicted_for(flatten(log.config.to_dict()))
    record = JacobianRecord(**finite_values({
        "mean_sq": summary.mean_sq, "max": summary.max, "spread": summary.spread,
        "spread_uncertainty": summary.spread_uncertainty,
        "zero_fraction": summary.zero_fraction, "spread_zero_rtol": summary.zero_rtol,
        "var_ratio": summary.var_ratio,
        **{f"sv_{k}": v for k, v in summary.quantiles.items()},
        "predicted_mean_sq": predicted,
        "predicted_var_ratio": theory_spectrum.var_sq if theory_spectrum else None}),
        method=summary.method, inputs=config.jacobian_inputs)
    frame = pd.DataFrame({"value": summary.singular_values.numpy(),
                          "weight": summary.weights.numpy()})
    return record, frame


def assemble(log: MemberLog, start: RunRecord, input_moment: float,
             error: str | None = None) -> RunResult:
    """A member's final record and tables: its verdict and the theory beside its step 0."""
    layers, theory = predict_run(log.config, layers_frame(log), input_moment)
    final = log.final or {"steps": log.layer_steps[-1][0] if log.layer_steps else 0}
    jacobian, spectrum = jacobian_record(log, theory)
    environment = start.environment.model_copy(update=log.threads)  # what training used
    record = start.model_copy(update={
        "status": log.status, **_verdict_fields(log, layers, log.status, error, theory),
        "theory": TheoryRecord(**finite_values(theory)), "jacobian": jacobian,
        "environment": environment,
        "final": FinalRecord(**finite_values(final)),
        "error": None if log.status is Status.DIVERGED else error})
    return RunResult(record, layers, pd.DataFrame(log.metrics), spectrum, histograms_of(log))


def histograms_of(log: MemberLog) -> pd.DataFrame | None:
    """histograms.csv's table, with record.histograms (measure/histograms.py)."""
    if not log.config.record.histograms:
        return None
    return histogram_frame(log.layer_steps[:len(log.histograms)], log.histograms)


def _verdict_fields(log: MemberLog, layers: pd.DataFrame, status: Status,
                    error: str | None, theory: dict) -> dict:
    """The verdict, or none: a failed run's measurements stop wherever the error struck, and a
    run that recorded nothing has nothing to judge, so neither is called healthy. The family's
    theory is appended where it explains the verdict (e.g. BatchNorm named for its explosion)."""
    if status is Status.FAILED:
        return {"verdict": None, "verdict_text": f"no verdict: the run failed ({error})"}
    if not len(layers):
        return {"verdict": None, "verdict_text": "no verdict: nothing was recorded (stopped "
                                                 "before the gradients at step 0 were measured)"}
    if layers.layer.nunique() < 2:
        return {"verdict": None, "verdict_text": NO_HIDDEN_LAYER}
    found = verdict_of(log, layers)
    verdict = verdict_record(found, layers)
    return {"verdict": verdict,
            "verdict_text": found.describe() + explain(verdict.verdict, verdict.step, theory)}


def salvage(log: MemberLog, start: RunRecord, error: str) -> RunResult:
    """What `assemble` could not finish: the tables as measured, no verdict, no theory, and
    the status failed, so that no run is left saying it is still running."""
    steps = log.layer_steps[-1][0] if log.layer_steps else 0
    record = start.model_copy(update={
        "status": Status.FAILED, "verdict": None, "error": error,
        "verdict_text": f"no verdict: the run failed ({error})",
        "final": FinalRecord(steps=steps)})
    return RunResult(record, layers_frame(log), pd.DataFrame(log.metrics))

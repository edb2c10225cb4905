"""The run record: what summary.json holds, as one typed model that the runner writes and that
`compare`, `report` and the terminal read. Nothing reads summary.json by string key.

    summary.json  {schema_version, run_id, name, config_hash, started_at, finished_at, status,
                   scheme, activation, depth, width, seed, dataset, model_kind,
                   verdict: {...}, verdict_text, theory: {...}, final: {...},
                   environment: {...}, data_source, error}

`schema_version` says which layout a file has; a reader meeting a newer one says so rather than
guess. Numbers that could not be measured (NaN, inf) are null: JSON has neither.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from winit_cli.errors import ResultsError
from winit_cli.status import Status

SCHEMA_VERSION = 2


class _Block(BaseModel):
    # Tolerate keys written by a newer winit in nested blocks; the top level is strict.
    model_config = ConfigDict(extra="allow")

    @field_validator("*", mode="before")
    @classmethod
    def _unmeasured(cls, v: Any) -> Any:
        """NaN and inf are numbers that could not be measured: null, as JSON (which has
        neither) writes them; a NaN handed to `probe.close` once failed the write and left the
        run 'running'."""
        return None if isinstance(v, float) and not math.isfinite(v) else v


class VerdictRecord(_Block):
    """diagnosis.verdict.Verdict, plus the step-0 gradient summary the views show."""

    verdict: str  # healthy | vanishing | exploding | diverged
    layer: int | None = None
    step: int | None = None
    fraction_of_steps: Fraction | None = None
    log10_ratio_init: float | None = None
    log10_ratio_end: float | None = None
    # log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| at step 0 (first over last hidden layer), measured
    log10_first_to_last: float | None = None
    log10_first_to_last_end: float | None = None  # the same at the last recorded step
    zero_grad_layers_init: int | None = None  # layers whose dL/dz underflowed to exactly 0


class TheoryRecord(_Block):
    """The mean-field prediction for the run, or why there is none."""

    applicable: bool
    reason: str | None = None
    variance_source: str | None = None
    input_second_moment: float | None = None
    chi: float | None = None
    q_fixed_point: float | None = None
    depth_scale: float | None = None
    predicted_log10_ratio: float | None = None
    measured_log10_ratio: float | None = None
    difference: float | None = None
    # The verdict rule (diagnose.*_decades) on the predicted ratios: healthy | vanishing |
    # exploding, and the layer where it starts; None where theory leaves a ratio undefined.
    predicted_verdict: str | None = None
    predicted_verdict_layer: int | None = None


Fraction = Annotated[float, Field(ge=0, le=1)]  # an accuracy: a test accuracy of 7.0 is no result
Count = Annotated[int, Field(ge=0)]
NotNegative = Annotated[float, Field(ge=0)]  # seconds, rates


class FinalRecord(_Block):
    train_loss: float | None = None
    train_accuracy: Fraction | None = None
    train_window_steps: Count | None = None
    val_loss: float | None = None
    val_accuracy: Fraction | None = None
    test_loss: float | None = None
    test_accuracy: Fraction | None = None
    steps: Count = 0
    group_size: Annotated[int, Field(ge=1)] | None = None
    group_seconds: NotNegative | None = None
    train_seconds: NotNegative | None = None
    samples_per_second: NotNegative | None = None


class JacobianRecord(_Block):
    """The singular values of dz_{L-1}/dz_1 at step 0 (measure/jacobian.py; all of them are in
    spectrum.csv), beside the mean-field product of chi that their mean square should equal."""

    method: str  # exact | lanczos
    inputs: int  # training inputs the Jacobian was taken at (values pooled over them)
    mean_sq: float | None = None  # mean of s^2, zeros included
    max: float | None = None
    spread: float | None = None  # std of ln s over s > spread_zero_rtol * max
    spread_uncertainty: float | None = None  # 0 for the exact method
    zero_fraction: float | None = None  # s <= spread_zero_rtol * max
    spread_zero_rtol: float | None = None  # the cutoff of spread and zero_fraction
    # needing no cutoff: var(s^2) / mean(s^2)^2 and percentiles of s, zeros included
    var_ratio: float | None = None
    sv_q10: float | None = None
    sv_q50: float | None = None
    sv_q90: float | None = None
    predicted_mean_sq: float | None = None  # prod_{l=1}^{L-2} chi_l from the run's theory
    predicted_var_ratio: float | None = None  # free probability's, where its theory applies
    reason: str | None = None  # why nothing was measured


class Environment(_Block):
    python: str
    torch: str
    winit: str
    platform: str
    device: str
    threads: int  # the CPU threads most steps ran with
    flush_subnormals: bool
    command: str = ""
    threads_auto: bool | None = None  # chosen by winit (train.threads: auto), or configured
    thread_changes: list[list[int]] = Field(default_factory=list)  # [step, threads] from then on


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    name: str
    config_hash: str
    started_at: str
    finished_at: str | None = None
    status: Status
    scheme: str
    activation: str
    depth: int
    width: int | list[int]
    seed: int
    dataset: str = "mnist"
    model_kind: str = "mlp"
    verdict: VerdictRecord | None = None  # None while running, and for runs with no record
    verdict_text: str | None = None
    theory: TheoryRecord | None = None
    jacobian: JacobianRecord | None = None  # only with record.jacobian
    final: FinalRecord = Field(default_factory=FinalRecord)
    environment: Environment
    data_source: str | None = None  # the folder the dataset was read from
    error: str | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(f"schema version {v} is newer than this winit's ({SCHEMA_VERSION})")
        return v

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def width_label(self) -> str:
        """`256`, or `512-256-128` for per-layer widths."""
        return "-".join(map(str, self.width)) if isinstance(self.width, list) else str(self.width)


_V1_ENVIRONMENT = ("python", "torch", "winit", "platform", "device", "threads",
                   "flush_subnormals", "command")


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (winit 0.1's first runs): the environment at the top level, the measured
    first-to-last ratio only in the theory block."""
    data = dict(data)
    data["environment"] = {k: data.pop(k) for k in _V1_ENVIRONMENT if k in data}
    data["schema_version"] = SCHEMA_VERSION
    verdict, theory = data.get("verdict"), data.get("theory")
    if isinstance(verdict, dict) and isinstance(theory, dict):
        verdict.setdefault("log10_first_to_last", theory.get("measured_log10_ratio"))
    return data


def parse_record(data: Any, where: str) -> RunRecord:
    """A summary.json's content as a RunRecord, or a ResultsError naming the first bad key."""
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: not a JSON object")
    if "schema_version" not in data:
        data = _from_v1(data)
    try:
        return RunRecord.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise ResultsError(f"{where}: {key}: {message}") from None

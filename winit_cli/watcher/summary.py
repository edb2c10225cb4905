"""A watched run's records: layers.csv as a frame, the verdict, and the theory beside step 0,
computed exactly as for a CLI run (diagnosis/verdict.py, diagnosis/predict.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from winit_cli.config import Config, InitConfig, ModelConfig
from winit_cli.diagnosis.predict import PREDICTED, predict_run
from winit_cli.diagnosis.verdict import Verdict, diagnose
from winit_cli.errors import ConfigError
from winit_cli.inits import check_scheme
from winit_cli.records.files import finite_values
from winit_cli.records.layers import layers_frame as frame_of
from winit_cli.records.schema import TheoryRecord, VerdictRecord
from winit_cli.runner.member import verdict_record
from winit_cli.watcher.layers import Layer
from winit_cli.watcher.structure import THEORY_SCOPE, Structure

UNKNOWN = "unknown"


@dataclass
class Recorded:
    """One recorded step: a row per layer of `order[:len(values)]` (layers that first ran on a
    later step have rows from then on)."""

    step: int
    epoch: int | None
    values: np.ndarray  # [L, len(columns)] float64; update_ratio filled in later
    measured: np.ndarray  # [L, len(columns)] bool: False where nothing could be read


def layers_frame(layers: list[Layer], order: list[int], records: list[Recorded],
                 columns: tuple[str, ...]) -> pd.DataFrame:
    """layers.csv: the CLI's frame (records/layers.py), plus the module's name after the layer
    number."""
    frame = frame_of([(r.step, r.epoch) for r in records], [r.values for r in records],
                     [layers[i].fans() for i in order], columns)
    names = np.array([layers[i].name for i in order], dtype=object)
    frame.insert(3, "name", names[frame.layer.to_numpy(dtype=int) - 1])
    return frame


def dz_layers(layers: list[Layer], order: list[int]) -> list[int]:
    """Layer numbers (1-based, layers.csv's) of the Linear and Conv layers."""
    return [n for n, i in enumerate(order, start=1) if layers[i].has_dz]


def verdict(frame: pd.DataFrame, dz: list[int], vanish_decades: float, explode_decades: float,
            diverged: tuple[int, int | None] | None) -> tuple[Verdict, VerdictRecord]:
    """The CLI's verdict, from the Linear and Conv layers' dL/dz (the highest-numbered one is
    the output layer)."""
    rows = frame[frame.layer.isin(dz)]
    step, layer = diverged if diverged is not None else (None, None)
    found = diagnose(rows, vanish_decades=vanish_decades, explode_decades=explode_decades,
                     diverged_step=step, diverged_layer=layer)
    return found, verdict_record(found, rows)


def describe(found: Verdict, frame: pd.DataFrame) -> str:
    """The verdict in words, naming the module where it starts."""
    text = found.describe()
    names = frame.drop_duplicates("layer").set_index("layer")["name"]
    if found.layer is not None and found.layer in names.index:
        text += f" (layer {found.layer} is {names[found.layer]})"
    return text


def not_applicable(frame: pd.DataFrame, why: str) -> tuple[pd.DataFrame, TheoryRecord]:
    frame = frame.copy()
    for column in PREDICTED:
        frame[column] = np.nan
    return frame, TheoryRecord(applicable=False, reason=f"not applicable: {why}")


def theory(frame: pd.DataFrame, structure: Structure | None, scheme: str,
           params: dict, input_second_moment: float | None
           ) -> tuple[pd.DataFrame, TheoryRecord]:
    """The mean-field prediction beside step 0, where the model is an MLP winit's theory
    describes and the init scheme is known; else why not."""
    if structure is None or not (frame.step == 0).any():
        return not_applicable(frame, "step 0 was not recorded")
    if structure.mlp_problem is not None:
        return not_applicable(frame, f"{structure.mlp_problem}; {THEORY_SCOPE}")
    if scheme == UNKNOWN:
        return not_applicable(frame, "the init scheme is unknown (give winit.watch scheme=...)")
    moment = input_second_moment if input_second_moment is not None \
        else structure.input_second_moment
    widths = frame[frame.step == 0].sort_values("layer").fan_out.astype(int).tolist()
    try:
        check_scheme(scheme, params, structure.activation)
        config = Config(model=ModelConfig(depth=len(widths), widths=widths[:-1],
                                          activation=structure.activation, bias=structure.bias),
                        init=InitConfig(scheme=scheme, params=params))
    except ConfigError as e:
        return not_applicable(frame, str(e))
    frame, summary = predict_run(config, frame, moment)
    return frame, TheoryRecord(**finite_values(summary))

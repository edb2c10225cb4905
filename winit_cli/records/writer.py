"""Run directories: everything needed to understand a run later, written atomically.

    results/<run-id>/config.yaml    the resolved config
                     metrics.csv    step, epoch, train/val loss and accuracy
                     layers.csv     one row per recorded step and layer (see measure/probes.py)
                     summary.json   the run record (records/schema.py)
                     spectrum.csv   with record.jacobian: value, weight per singular value
    results/runs.csv                one line per run, appended

summary.json says `"status": "running"` until the run ends; the CSVs are rewritten whole at
checkpoints and at the end, so a crash leaves complete-looking files only for what was really
measured, and a status that says the run did not finish.
"""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from winit_cli import __version__
from winit_cli.config import Config, dump_yaml
from winit_cli.errors import ResultsError
from winit_cli.records.files import atomic_write, write_csv, write_json
from winit_cli.records.index import append_index
from winit_cli.records.schema import Environment, RunRecord, Status


def environment(device: str, flushed: bool) -> Environment:
    import torch

    return Environment(python=platform.python_version(), torch=torch.__version__,
                       winit=__version__, platform=platform.platform(), device=device,
                       threads=torch.get_num_threads(), flush_subnormals=flushed,
                       command=" ".join(sys.argv))


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_run_dir(config: Config, started: datetime) -> Path:
    """<output_dir>/<time>_<name>_<hash6>, with a numeric suffix if that exists already."""
    root = Path(config.output_dir)
    stem = f"{started:%Y%m%d-%H%M%S}_{config.name}_{config.content_hash()[:6]}"
    for n in range(1000):
        path = root / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise ResultsError(f"{root}: cannot create a run directory named {stem}")


def first_record(config: Config, run_id: str, started: datetime, env: Environment,
                 data_source: str | None) -> RunRecord:
    """The record of a run that has just started: who it is, where, on what."""
    c = config
    return RunRecord(
        run_id=run_id, name=c.name, config_hash=c.content_hash(),
        started_at=started.isoformat(timespec="seconds"), status=Status.RUNNING,
        scheme=c.init.scheme, activation=c.model.activation, depth=c.model.depth,
        width=c.model.width if c.model.widths is None else list(c.model.widths),
        seed=c.train.seed, dataset=c.data.dataset, model_kind=getattr(c.model, "kind", "mlp"),
        environment=env, data_source=data_source,
    )


class RunWriter:
    """One run directory, from creation (status running) to the final record and index line."""

    def __init__(self, config: Config, env: Environment, data_source: str | None,
                 run_dir: Path | None = None):
        self.config = config
        started = utcnow()
        self.dir = run_dir if run_dir is not None else new_run_dir(config, started)
        self.record = first_record(config, self.dir.name, started, env, data_source)
        atomic_write(self.dir / "config.yaml", dump_yaml(config))
        self.write_summary(self.record)

    def write_summary(self, record: RunRecord) -> None:
        write_json(self.dir / "summary.json", record.to_json())

    def write_tables(self, layers: pd.DataFrame, metrics: pd.DataFrame) -> None:
        write_csv(self.dir / "layers.csv", layers)
        write_csv(self.dir / "metrics.csv", metrics)

    def finish(self, record: RunRecord, layers: pd.DataFrame, metrics: pd.DataFrame,
               spectrum: pd.DataFrame | None = None) -> None:
        """The tables, then the record (so a record never points at tables not yet written),
        then the index line. spectrum.csv: the step-0 Jacobian's singular values, if taken."""
        self.write_tables(layers, metrics)
        if spectrum is not None:
            write_csv(self.dir / "spectrum.csv", spectrum)
        record = record.model_copy(update={"finished_at": utcnow().isoformat(timespec="seconds")})
        self.record = record
        self.write_summary(record)
        append_index(self.config.output_dir, record, self.dir)

"""Run directories: everything needed to understand a run later, written atomically.

    results/<run-id>/config.yaml    the resolved config
                     metrics.csv    step, epoch, train/val loss and accuracy
                     layers.csv     one row per recorded step and layer (see measure/quantities.py)
                     summary.json   the run record (records/schema.py)
                     spectrum.csv   with record.jacobian: value, weight per singular value
                     histograms.csv with record.histograms: per-layer weight and gradient
                                    histograms at recorded steps (measure/histograms.py)
    results/runs.csv                one line per run, appended

A `winit.watch` run's folder is made by the same writer, with the first four files (its
config.yaml says what was watched: watcher/run_config.py).

summary.json says `"status": "running"` until the run ends; the CSVs are rewritten whole at
checkpoints and at the end, so a crash leaves complete-looking files only for what was really
measured, and a status that says the run did not finish.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from winit_cli._version import __version__
from winit_cli.config import Config, dump_yaml
from winit_cli.errors import ResultsError
from winit_cli.records.files import atomic_write, write_csv, write_json
from winit_cli.records.folders import private_folder
from winit_cli.records.index import append_index
from winit_cli.records.schema import Environment, RunRecord
from winit_cli.status import Status


def environment(device: str, flushed: bool) -> Environment:
    import torch

    return Environment(python=platform.python_version(), torch=torch.__version__,
                       winit=__version__, platform=platform.platform(), device=device,
                       threads=torch.get_num_threads(), flush_subnormals=flushed,
                       command=" ".join(sys.argv))


def utcnow() -> datetime:
    return datetime.now(UTC)


NAME_CHARS = 64  # of the run's name in its folder's name (the record keeps it whole)


def make_run_dir(root: Path, name: str, content_hash: str, started: datetime) -> Path:
    """<root>/<time>_<name>_<hash6>, with a numeric suffix if that exists already."""
    stem = f"{started:%Y%m%d-%H%M%S}_{name[:NAME_CHARS]}_{content_hash[:6]}"
    for n in range(1000):
        path = root / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            if not root.is_dir():
                break  # output_dir (or a folder above it) is a file
            continue
        except OSError as e:
            raise ResultsError(f"{root}: cannot create a run folder there "
                               f"({e.strerror or e})") from None
    if not root.is_dir():
        raise ResultsError(f"{root}: output_dir is not a folder (a file of that name exists)")
    raise ResultsError(f"{root}: cannot create a run directory named {stem}")


RESCUE = "winit-rescued"


def rescue_dir(run_id: str) -> Path:
    """Where a finished run's files go when its own folder cannot take them: $TMPDIR is shared,
    so the folder is this user's own, winit-rescued-<uid> (records/folders.py private_folder),
    and the run's folder in it is made fresh."""
    root = private_folder(Path(tempfile.gettempdir()), RESCUE)
    return Path(tempfile.mkdtemp(prefix=f"{run_id}.", dir=root)) if os.path.lexists(
        root / run_id) else root / run_id


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
    """One run directory, from creation (status running) to the final record and index line:
    a CLI run's (`for_config`) and a watched run's alike.

    Creating it either writes config.yaml and the first summary or leaves no folder behind.
    `finish` never loses a finished run to an OS error (disk full, read-only, removed folder):
    its files then go to `rescue_dir`, and `unsaved` says what happened and where they are.
    """

    def __init__(self, root: Path, config_yaml: str, start: RunRecord,
                 run_dir: Path | None = None):
        """A folder <root>/<time>_<name>_<hash6> (or `run_dir`) for the run `start` begins,
        named by its start time, name and config hash; `start`'s run_id becomes the folder's
        name."""
        self.root = Path(root)
        self.config_yaml = config_yaml
        self.unsaved: str | None = None  # set by finish when the files could not be written here
        self.notes: list[str] = []  # what went wrong beside the run (its index line)
        started = datetime.fromisoformat(start.started_at)
        self.dir = run_dir if run_dir is not None else \
            make_run_dir(self.root, start.name, start.config_hash, started)
        self.record = start.model_copy(update={"run_id": self.dir.name})
        try:
            atomic_write(self.dir / "config.yaml", config_yaml, parents=False)
            self.write_summary(self.record)
        except OSError as e:
            if run_dir is None:
                shutil.rmtree(self.dir, ignore_errors=True)
            raise ResultsError(f"{self.dir}: cannot write the run's files "
                               f"({e.strerror or e})") from None

    @classmethod
    def for_config(cls, config: Config, env: Environment, data_source: str | None,
                   run_dir: Path | None = None) -> RunWriter:
        """The run directory of a `winit run` config, under its output_dir."""
        start = first_record(config, "", utcnow(), env, data_source)
        return cls(config.output_dir, dump_yaml(config), start, run_dir)

    def write_summary(self, record: RunRecord) -> None:
        write_json(self.dir / "summary.json", record.to_json(), parents=False)

    def write_tables(self, layers: pd.DataFrame, metrics: pd.DataFrame,
                     histograms: pd.DataFrame | None = None) -> None:
        """The tables that grow while training (at checkpoints, and at the end)."""
        write_csv(self.dir / "layers.csv", layers, parents=False)
        write_csv(self.dir / "metrics.csv", metrics, parents=False)
        if histograms is not None:
            write_csv(self.dir / "histograms.csv", histograms, parents=False)

    def finish(self, record: RunRecord, layers: pd.DataFrame, metrics: pd.DataFrame,
               spectrum: pd.DataFrame | None = None,
               histograms: pd.DataFrame | None = None) -> None:
        """The tables, then the record (so a record never points at tables not yet written),
        then the index line. spectrum.csv: the step-0 Jacobian's singular values, if taken;
        histograms.csv, if recorded."""
        record = record.model_copy(update={"finished_at": utcnow().isoformat(timespec="seconds")})
        self.record = record
        extra = {name: table for name, table in (("spectrum.csv", spectrum),
                                                 ("histograms.csv", histograms))
                 if table is not None}
        try:
            self.write_tables(layers, metrics)
            for name, table in extra.items():
                write_csv(self.dir / name, table)
            self.write_summary(record)
        except OSError as e:
            self.unsaved = self._rescue(record, layers, metrics, extra, e)
            return
        note = append_index(self.root, record, self.dir)
        if note:
            self.notes.append(note)

    def _rescue(self, record: RunRecord, layers: pd.DataFrame, metrics: pd.DataFrame,
                extra: dict[str, pd.DataFrame], error: OSError) -> str:
        why = error.strerror or str(error)
        try:
            rescue = rescue_dir(self.dir.name)
            rescue.mkdir(exist_ok=True)
            atomic_write(rescue / "config.yaml", self.config_yaml)
            write_csv(rescue / "layers.csv", layers)
            write_csv(rescue / "metrics.csv", metrics)
            for name, table in extra.items():
                write_csv(rescue / name, table)
            write_json(rescue / "summary.json", record.to_json())
            where = f"its files are in {rescue}"
        except OSError:
            where = "nor anywhere else: what was measured is only in the output above"
        with suppress(OSError):  # the run's folder says where its files went, if it still can
            self.write_summary(record.model_copy(update={
                "status": Status.FAILED, "verdict": None,
                "verdict_text": "no verdict here: the run's files could not be written",
                "error": f"could not write the run's files here ({why}); {where}"}))
        return f"{self.dir}: could not write the run's files ({why}); {where}"

"""TensorBoard scalars for CLI runs (`record.tensorboard: true`): each member's new layer
records and metrics rows go to event files in its run folder as training adds them, so that
`tensorboard --logdir results` shows the curves while a run trains, and once it has finished
its verdict and hparams. Tags: records/tensorboard.py."""

from __future__ import annotations

from pathlib import Path

from winit_cli.records.schema import RunRecord
from winit_cli.records.tensorboard import EventWriter, cli_layer_names, write_tables
from winit_cli.training.loop import MemberLog


class LiveEvents:
    """One writer per member; `update` writes what its log gained since the last call. The
    writers open at the first update, once training has set each log's columns (the model
    family's columns follow layers.csv's)."""

    def __init__(self, run_dirs: list[Path]):
        self.run_dirs = run_dirs
        self.writers: list[EventWriter] = []
        self._layers = [0] * len(run_dirs)
        self._metrics = [0] * len(run_dirs)

    def update(self, logs: list[MemberLog]) -> None:
        if not self.writers:
            self.writers = [EventWriter(d, log.layer_columns)
                            for d, log in zip(self.run_dirs, logs, strict=True)]
        for k, (writer, log) in enumerate(zip(self.writers, logs, strict=True)):
            names = cli_layer_names(len(log.layer_shapes))
            for (step, _), values in zip(log.layer_steps[self._layers[k]:],
                                         log.layer_values[self._layers[k]:], strict=True):
                writer.layers(step, names, values.numpy())
            for row in log.metrics[self._metrics[k]:]:
                writer.metrics(row)
            self._layers[k], self._metrics[k] = len(log.layer_steps), len(log.metrics)

    def finish(self, logs: list[MemberLog], notes: list[str],
               outcomes: list[tuple[RunRecord, dict]] | None = None) -> None:
        """The last records, each member's verdict and hparams (`outcomes`: its finished
        record and flattened config), then the files closed. Event files are a copy of the
        tables: a failure here is noted and never costs the run its records."""
        try:
            self.update(logs)
            for writer, (record, config) in zip(self.writers, outcomes or [], strict=False):
                writer.outcome(record, config)
        except Exception as e:
            notes.append(f"TensorBoard events not completed ({type(e).__name__}: {e})")
        for writer in self.writers:
            try:
                writer.close()
            except Exception as e:
                notes.append(f"TensorBoard events not closed ({type(e).__name__}: {e})")


def write_events(run_dir: Path, layers, metrics, notes: list[str],
                 record: RunRecord | None = None, config: dict | None = None) -> None:
    """Event files for records computed elsewhere (remote executors), once the run is written;
    with its record and flattened config, its verdict and hparams too."""
    try:
        write_tables(run_dir, layers, metrics, record, config)
    except Exception as e:
        notes.append(f"{run_dir}: TensorBoard events not written ({type(e).__name__}: {e})")


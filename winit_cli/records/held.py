"""Run tables held a batch of runs at a time: a report reads a group's tables from the run
store (records/store.py) when it draws the group and lets go of them after, so that what it
holds follows the largest group drawn, not the number of runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from winit_cli.records.reader import Run

TABLES = ("layers", "metrics")  # the tables the run store serves


def evict(runs: list[Run]) -> None:
    """Let go of these runs' tables (the store reads them again when asked)."""
    for run in runs:
        for t in TABLES:
            run.__dict__.pop(t, None)


class ByGroup(Mapping):
    """Runs by path whose tables are held one batch (a report's group) at a time: asking for a
    run of another batch reads that batch's tables in one query and lets go of the last's."""

    def __init__(self, runs: dict[str, Run], batches: list[list[str]]):
        self._runs, self._batches = runs, batches
        self._batch_of = {p: i for i, batch in enumerate(batches) for p in batch}
        self._held: int | None = None

    def __getitem__(self, path: str) -> Run:
        run = self._runs[path]
        i = self._batch_of.get(path)
        if i is not None and i != self._held and run.store is not None:
            if self._held is not None:
                evict([self._runs[p] for p in self._batches[self._held]])
            run.store.load([self._runs[p] for p in self._batches[i]])
            self._held = i
        return run

    def __iter__(self) -> Iterator[str]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

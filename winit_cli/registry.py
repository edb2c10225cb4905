"""The one registry helper: every extension point (init schemes, per-layer quantities, datasets,
model kinds, sweep executors) is a `Registry` of named entries, after Composer's / llm-foundry's
`registry.py`.

    EXECUTORS: Registry[Callable[[ExecutorOptions], Executor]] = Registry("executor")

    @EXECUTORS.register("local")
    class LocalExecutor(Executor): ...

    MODELS.lookup("mpl", where="model.kind")
    # ConfigError: model.kind: unknown model kind 'mpl'; did you mean 'mlp'? known: mlp, resmlp

A registry reads as a mapping (`MODELS["mlp"]`, `in`, `len`, `.items()`) in registration order,
which some registries show (the scheme list) or write (layers.csv's columns). A name registers
once: a copy-pasted entry would otherwise replace the first without a word.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from winit_cli.errors import ConfigError, shorten

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Entries of one kind by name; `kind` names them in messages ("scheme", "model kind")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

    def add(self, name: str, entry: T) -> T:
        """Register `entry` as `name` and return it; a name taken already is a ValueError (a
        contributor's mistake, not a user's)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated function or class as `name`."""
        return lambda entry: self.add(name, entry)

    def remove(self, name: str) -> T:
        return self._entries.pop(name)

    @contextmanager
    def temporarily(self, name: str, entry: T) -> Iterator[T]:
        """`entry` registered as `name` for the `with` block only (a test's own entry)."""
        self.add(name, entry)
        try:
            yield entry
        finally:
            self.remove(name)

    def lookup(self, name: str, where: str) -> T:
        """The entry `name` names, else a ConfigError from `unknown` with a spelling hint.
        `where` is what the user wrote it in: a config key or an option."""
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(name, self._entries, n=1)
        raise self.unknown(name, where, close[0] if close else None)

    def unknown(self, name: str, where: str, close: str | None = None,
                also: str = "") -> ConfigError:
        """The one-line error for an unknown `name`: `close` as a did-you-mean, then the known
        names sorted, then `also` in brackets (for registries that know more, e.g. aliases)."""
        hint = f"did you mean '{close}'? " if close else ""
        more = f" ({also})" if also else ""
        return ConfigError(f"{where}: unknown {self.kind} {shorten(name)}; {hint}"
                           f"known: {', '.join(sorted(self._entries))}{more}")

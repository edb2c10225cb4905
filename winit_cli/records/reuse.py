"""Figures kept from one report to the next: a group whose runs did not change is not drawn
again, so a report after adding 100 runs to 10,000 draws only the groups they joined.

    <root>/.winit/figures/<key>/made.json   [[alt text, file name], ...] of one group's figures
                               /<files>     the figures, in every format written

The key is a hash of the winit version, of everything the group's figures are drawn from (the
views hand it over as text: rows, labels, colours, output settings) and of the identity of each
member run's files (records/store.identity), so a changed run, a new label or another --dpi
draws anew. Entries are winit's own (written whole, then renamed into place); the oldest beyond
what the last report used and KEEP more are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from winit_cli._version import __version__

KEEP = 200  # entries kept beyond the ones the last report used (other --out, --filter)


class FigureCache:
    def __init__(self, folder: Path, identities: dict[str, str]):
        self.folder = Path(folder)
        self.identities = identities  # run path -> records/store.identity
        self.used: set[str] = set()

    def _key(self, inputs: str, paths: list[str]) -> str:
        text = json.dumps([__version__, inputs, [self.identities.get(p) for p in paths]])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, inputs: str, paths: list[str], plot_dir: Path) -> list[tuple[str, Path]] | None:
        """The group's figures copied into `plot_dir`, if kept from an earlier report."""
        key = self._key(inputs, paths)
        entry = self.folder / key
        try:
            made = json.loads((entry / "made.json").read_text())
            plot_dir.mkdir(parents=True, exist_ok=True)
            for name in os.listdir(entry):
                if name != "made.json":
                    shutil.copyfile(entry / name, plot_dir / name, follow_symlinks=False)
            os.utime(entry)  # recently used: kept by prune
        except (OSError, ValueError):
            return None
        self.used.add(key)
        return [(alt, plot_dir / name) for alt, name in made]

    def put(self, inputs: str, paths: list[str], made: list[tuple[str, Path]]) -> None:
        """Keep a group's freshly drawn figures (PNG and the other formats beside each)."""
        key = self._key(inputs, paths)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=self.folder))
            for _, png in made:
                for sibling in png.parent.glob(f"{png.stem}.*"):
                    shutil.copyfile(sibling, staging / sibling.name)
            (staging / "made.json").write_text(json.dumps([[alt, p.name] for alt, p in made]))
            shutil.rmtree(self.folder / key, ignore_errors=True)
            staging.rename(self.folder / key)
        except OSError:
            return  # figures are kept where they can be; the report is the same without
        self.used.add(key)

    def prune(self) -> None:
        """Remove entries neither used now nor among the KEEP most recently used others."""
        try:
            entries = sorted((e for e in self.folder.iterdir() if e.name not in self.used),
                             key=lambda e: e.stat().st_mtime, reverse=True)
            # another report's half-written entry is left alone; one a crash left, an hour on
            left = [e for e in entries if e.name.startswith(".new-")
                    and e.stat().st_mtime < time.time() - 3600]
        except OSError:
            return
        entries = [e for e in entries if not e.name.startswith(".new-")]
        for entry in entries[KEEP:] + left:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)

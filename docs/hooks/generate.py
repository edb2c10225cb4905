"""MkDocs hook: the reference pages' `<!-- winit:NAME -->` markers replaced by what the code says
(winit_cli/app/reference.py), at every build, so the configs and schemes pages cannot drift."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # this checkout's winit, whichever one the venv was installed from
    sys.path.insert(0, str(ROOT))

from winit_cli.app.reference import fill_markers  # noqa: E402


def on_page_markdown(markdown: str, page, config, files) -> str:
    return fill_markers(markdown)

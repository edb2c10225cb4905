"""Rich tables that fit: numbers never cut, text folded rather than ellipsized.

Every terminal table goes through `new_table`. Number columns never wrap and keep their width;
text columns (labels, verdicts) fold onto more lines when the terminal is narrow. Headers are
short, two lines where needed ("dz\\ninit"), and explained by a legend line under the table.
Tables are designed to fit 80 columns (a pipe's or CI log's width); `wide` says when there is
room for more digits and more columns.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

WIDE = 120  # terminal width from which tables show 3 significant digits and extra columns


def wide(console: Console) -> bool:
    return console.width >= WIDE


def new_table(title: str | None, columns: list[tuple[str, str]], **options) -> Table:
    """`columns`: (header, kind) with kind "num" (right-aligned, never wraps or is cut) or
    "text" (folds onto more lines when space runs short)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  title_justify="left", **options)
    for header, kind in columns:
        longest = max(len(line) for line in header.split("\n"))
        if kind == "num":
            table.add_column(header, justify="right", no_wrap=True, min_width=longest)
        else:
            table.add_column(header, overflow="fold", min_width=min(longest, 12))
    return table

"""`winit report` on the terminal: one table per group (runs ranked only within one), its
recommendation under it, then what was left out and where the report went. Drawn from the
tables app/report.py read from the run files.
"""

from __future__ import annotations

import re

import pandas as pd
from rich.console import Console
from rich.markup import escape

from winit_cli.records.rows import DZ_RATIO
from winit_cli.views.doc import ITALIC
from winit_cli.views.tables import new_table, wide
from winit_cli.views.terminal import VERDICT_STYLE
from winit_cli.views.words import number, pct, signed

COLUMNS = [("init", "text"), ("seed", "num"), ("verdict", "text"), ("where", "num"),
           ("dz\ninit", "num"), ("dz\ntheory", "num"), ("dz\nend", "num"),
           ("test\nacc", "num")]
LEGEND = (f"{DZ_RATIO}; theory: its mean-field prediction; where: L<layer> s<step> at which "
          "the verdict starts. Every column, and more, in summary.csv.")


def _where(r: pd.Series) -> str:
    return "-" if pd.isna(r.verdict_layer) else f"L{r.verdict_layer} s{number(r.verdict_step)}"


def _verdict(r: pd.Series) -> str:
    verdict = r.verdict if isinstance(r.verdict, str) else "?"
    status = "" if r.status in ("complete", verdict) else f" ({r.status})"
    return f"[{VERDICT_STYLE.get(verdict, 'default')}]{escape(verdict)}[/]{status}"


def _row(label: str, r: pd.Series, is_wide: bool) -> list[str]:
    decimals = 2 if is_wide else 1
    cells = [escape(label), number(r.seed), _verdict(r), _where(r),
             signed(r.log10_first_to_last_measured, decimals),
             signed(r.log10_first_to_last_predicted, decimals),
             signed(r.log10_first_to_last_end, decimals), pct(r.test_accuracy)]
    return cells + ([number(r.train_seconds)] if is_wide else [])


def _table(title: str, rows: list[tuple[str, pd.Series]], is_wide: bool):
    columns = COLUMNS + ([("time s", "num")] if is_wide else [])
    table = new_table(title, columns)
    for label, r in rows:
        table.add_row(*_row(label, r, is_wide))
    return table


def report_summary(console: Console, report) -> None:
    """`report` is an `app.report.Report`."""
    summary, is_wide = report.summary, wide(console)
    if not report.groups:
        console.print("[yellow]no finished runs to tabulate[/]")
    for (title, configs), line in zip(report.groups.items(), report.recommendations,
                                      strict=True):
        rows = [(report.labels[i].replace("`", ""), summary.loc[m])
                for i, c in configs.iterrows() for m in c.members]
        console.print(_table(f"{title} ({len(rows)} run{'s' if len(rows) != 1 else ''}, best "
                             "first)", rows, is_wide))
        console.print("recommendation: " + _markdown_inline(line.split(":**", 1)[-1].strip()),
                      highlight=False)
        console.print()
    unranked = summary[~summary.index.isin(
        [m for c in report.groups.values() for ms in c.members for m in ms])]
    if len(unranked):
        console.print(_table("not ranked (unfinished)", [(str(r.scheme), r) for _, r in
                                                          unranked.iterrows()], is_wide))
    if report.groups:
        console.print(f"[dim]{escape(LEGEND)}[/]")
    for s in report.skipped:
        console.print(f"[yellow]not included:[/] {escape(s.path)}: {escape(s.reason)}",
                      highlight=False)
    plots = sum(1 for f in report.files if f.parent.name == "plots")
    console.print(f"report: [bold]{escape(str(report.out))}[/] (summary.csv, aggregate.csv, "
                  f"report.md, report.html, {plots} plots)", highlight=False)


def _markdown_inline(text: str) -> str:
    """`code`, **bold** and *italic* (what a recommendation rests on) from the report's
    Markdown, as Rich markup."""
    text = escape(text)
    text = re.sub(r"`([^`]+)`", r"[cyan]\1[/]", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"[bold]\1[/]", text)
    return ITALIC.sub(r"[italic]\1[/]", text)

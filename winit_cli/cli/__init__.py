"""The command line: one function per command, in four modules (experiment: run; sweeps:
compare, phase; results: report, schemes, index, export; advise) on one Typer app (common.py).
Each parses, calls the application layer (app/), renders with the views (views/) and maps errors
to exit codes. torch is imported inside the commands, so `winit --help` answers at once.
`--json` puts one JSON document on stdout and nothing else (progress goes to stderr); `--quiet`
prints only the result's path.
"""

from __future__ import annotations

from winit_cli.cli import advise, common, experiment, results, sweeps  # noqa: F401  registers them
from winit_cli.cli.common import app

common.tidy_help(app)  # every command registered: their help as paragraphs the terminal wraps

__all__ = ["app", "main"]


def main() -> None:
    import signal

    from winit_cli import interrupts

    # First, before any command's imports (torch: seconds): Ctrl-C, `timeout`, `kill`, batch
    # schedulers and closed terminals stop a run at its next safe point (what was measured is
    # saved, the run is marked interrupted), with exit 130 / 143 / 129 whenever they arrive.
    # Ctrl-C too: Python's own handler raises anywhere, a weakref callback included, where the
    # interruption is printed and dropped. (Before this line the default actions kill the
    # process, which a shell also reports as 130 / 143 / 129.)
    # A signal ignored when winit started stays ignored: `nohup` (SIGHUP), a shell script's
    # background job (SIGINT).
    interrupts.stop_on(*(s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                         if signal.getsignal(s) is not signal.SIG_IGN))
    common.started_by_main = True
    try:
        app()
    except SystemExit as e:
        common.exit_interrupted(e.code)
        raise

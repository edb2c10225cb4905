"""`winit advise`: which init to use for a config's network, from theory, before anything
trains."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from winit_cli.cli import common


@common.app.command()
def advise(
    config: Annotated[Path | None, typer.Argument(
        exists=True, dir_okay=False, readable=True, metavar="CONFIG",
        help="Experiment YAML (default: the built-in default config).", show_default=False)]
    = None,
    set_: common.SetOption = None,
    schemes: Annotated[str | None, typer.Option(
        metavar="A,B", help="Comma-separated schemes (default: every one in `winit schemes`).")]
    = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the advice as JSON on stdout, nothing else.")] = False,
) -> None:
    """Say which init scheme to use for a network, from theory, in a second: nothing trains
    and no data is read.

    For the config's network (kind, depth, width, activation, norm, dropout, branches) and each
    init scheme: the predicted verdict (healthy, vanishing or exploding, by the same rule and
    thresholds as a run's measured verdict), the predicted first-to-last dz ratio in decades (a
    run's log10_first_to_last), the per-layer gradient factor chi, and the trainable depth
    6 xi_c; or why theory cannot say. Then one recommendation with its reason.

    The mean-field length map starts from a standardized input's second moment, 1. For a model
    of your own, winit.advise(model, inputs) measures the same on one batch.
    """
    from winit_cli.app.advise import advise_config

    with common.user_errors():
        advice = advise_config(config, set_ or [], schemes)
        if as_json:
            common.print_json(advice.to_dict())
            return
        from winit_cli.views.advise import advice_table

        advice_table(common.console, advice)

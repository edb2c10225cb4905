"""Tables on the terminal, drawn from what was written: a run's record and layers, a sweep's
comparison rows. Nothing here trains or reads a live model. Every table fits 80 columns with
its numbers whole (views/tables.py) and widens on wide terminals.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from winit_cli.records.rows import (
    DZ_FORMULA,
    DZ_RATIO,
    FINISHED,
    TARGET_ACCURACY,
    aggregate,
    by_group,
    compared_columns,
    group_keys,
    incidental_columns,
    ranked,
)
from winit_cli.views.tables import new_table, wide
from winit_cli.views.words import (
    config_labels,
    depth_scale_words,
    group_title,
    missing,
    number,
    pct,
    sci,
    signed,
)

VERDICT_STYLE = {"healthy": "green", "vanishing": "yellow", "exploding": "red",
                 "diverged": "bold red"}

RUN_LEGEND = ("dz: ||dL/dz_l||, the gradient backpropagated to layer l's pre-activations; dW: "
              "||dL/dW_l||; theory: mean-field dz at init (its ratio to the output layer times "
              "that layer's measured dz); {frac}")
WIDE_LEGEND = ("; |W|: ||W_l||; upd: ||dW_l|| / ||W_l|| of the last recorded update; act std: "
               "of h_l = phi(z_l)")
FRACTION = {"dead": "dead: units off for the whole batch", "sat": "sat: units within 0.01 of "
            "an asymptote (tanh, sigmoid)"}


def _style(verdict: str) -> str:
    return VERDICT_STYLE.get(verdict, "default")


def layer_table(layers: pd.DataFrame, is_wide: bool) -> tuple[Table, str]:
    """Per-layer gradient norms at init and at the end (3 significant digits and more columns
    when `is_wide`), and its legend."""
    digits = 3 if is_wide else 2
    first, last = layers["step"].min(), layers["step"].max()
    init = layers[layers.step == first].set_index("layer")
    end = layers[layers.step == last].set_index("layer")
    predicted = "predicted_log10_grad_ratio" in init and bool(
        init.predicted_log10_grad_ratio.notna().any())
    fraction = "dead" if end.dead_fraction.notna().any() else "sat"
    headers = ["layer", "shape", "dz\ninit", *(["theory\ninit"] if predicted else []),
               "dz\nend", "dW\ninit", "dW\nend", f"{fraction}\nend"]
    extra = ["|W|\nend", "upd\nend", "act std\nend"] if is_wide else []
    table = new_table(f"per-layer gradients: step {first} (init) and step {last} (end)",
                      [(h, "num") for h in [*headers, *extra]])
    output = init.act_grad_norm.iloc[-1]
    # The last step has no update after it: the update ratio is the last one recorded.
    updates = layers[layers.update_ratio.notna()]
    update = updates[updates.step == updates.step.max()].set_index("layer").update_ratio
    for layer in init.index:
        a, b = init.loc[layer], end.loc[layer]
        # theory predicts ratios to the output layer: scaled by its measured norm to compare
        theory = [sci(output * 10 ** a.predicted_log10_grad_ratio, digits)] if predicted else []
        share = b.dead_fraction if fraction == "dead" else b.saturated_fraction
        more = [sci(b.weight_norm, digits), sci(update.get(layer), digits),
                sci(b.act_std, digits)] if is_wide else []
        table.add_row(str(layer), f"{int(a.fan_in)}→{int(a.fan_out)}",
                      sci(a.act_grad_norm, digits), *theory, sci(b.act_grad_norm, digits),
                      sci(a.weight_grad_norm, digits), sci(b.weight_grad_norm, digits),
                      pct(share), *more)
    legend = RUN_LEGEND.format(frac=FRACTION[fraction]) + (WIDE_LEGEND if is_wide else "")
    return table, legend


def run_report(console: Console, outcome, report_dir: Path | None = None) -> None:
    """The per-layer table, the dz ratio beside theory's expectation, the measured verdict,
    accuracy, the run's path, and the command that draws its figures."""
    r = outcome.record
    table, legend = layer_table(outcome.layers, wide(console))
    console.print(table)
    console.print(f"[dim]{escape(legend)}[/]")
    v = r.verdict
    theory = r.theory if r.theory is not None and r.theory.applicable else None
    # Residual, norm and dropout nets: their family's theory says what it predicts in words.
    statement = (theory.model_extra or {}).get("statement") if theory is not None else None
    if v is not None:
        console.print(
            f"dz ratio ({escape(DZ_FORMULA)}, first over last hidden layer): "
            f"{signed(v.log10_first_to_last)} at init"
            + (f" (theory {signed(theory.predicted_log10_ratio)})" if theory else "")
            + f", {signed(getattr(v, 'log10_first_to_last_end', None))} at the end",
            highlight=False)
    if statement:
        console.print(f"theory: {escape(statement)}", highlight=False)
    elif theory is not None:
        words = depth_scale_words(theory.chi, theory.depth_scale, r.depth)
        console.print(f"theory: {words or 'no fixed point'}", highlight=False)
    elif r.theory is not None:
        console.print(f"[dim]theory: not applicable ({escape(str(r.theory.reason))})[/]")
    if v is not None:
        console.print(f"measured verdict: [{_style(v.verdict)}]{escape(r.verdict_text or '')}[/]",
                      highlight=False)
        predicted_line(console, r.theory)
    elif r.verdict_text:
        console.print(f"verdict: [dim]{escape(r.verdict_text)}[/]")
    final = r.final
    console.print(
        f"accuracy: train {pct(final.train_accuracy)}, val {pct(final.val_accuracy)}"
        f", test {pct(final.test_accuracy)}  ({final.steps} step"
        f"{'s' if final.steps != 1 else ''}, {final.samples_per_second or 0:,.0f} samples/s)",
        highlight=False)
    console.print(f"results: [bold]{escape(str(outcome.run_dir))}[/]", highlight=False)
    if report_dir is not None:
        console.print(f"report: [bold]{escape(str(report_dir))}[/]", highlight=False)
    else:
        console.print(f"next: [cyan]winit report {escape(str(outcome.run_dir))}[/]  [dim](its "
                      "figures and a written account)[/]", highlight=False)


def predicted_line(console: Console, theory) -> None:
    """"theory predicted: vanishing from layer 15 (-4.2 decades first to last)", what
    `winit advise` says of this network and scheme, beside the measured verdict; nothing
    where theory made no prediction."""
    predicted = getattr(theory, "predicted_verdict", None) if theory is not None else None
    if predicted is None:
        return
    layer = getattr(theory, "predicted_verdict_layer", None)
    where = f" from layer {layer}" if layer is not None else ""
    ratio = theory.predicted_log10_ratio
    decades = f" ({signed(ratio, 1)} decades first to last)" if ratio is not None else ""
    console.print(f"theory predicted: [{_style(predicted)}]{predicted}{where}[/]{decades}",
                  highlight=False)


def comparison_table(console: Console, frame: pd.DataFrame, grid: list[str]) -> None:
    """A sweep's configurations ranked by mean test accuracy within each group (records/rows:
    the same groups and ranking `winit report` uses), then the members that did not finish."""
    configs = aggregate(frame, grid)
    seeds = frame["seed"].nunique() if "seed" in frame else 1
    keys = group_keys(grid)
    for key, group in by_group(configs, grid).items():
        labels = config_labels(group, compared_columns(grid), incidental_columns(grid), False)
        title = group_title(dict(zip(keys, key, strict=True)))
        table = new_table(f"{title}: ranked by test accuracy" + (
            f" (mean ± std over {seeds} seeds)" if seeds > 1 else ""),
            [("init", "text"), ("verdicts", "text"), ("dz\ninit", "num"),
             ("dz\ntheory", "num"), ("test acc", "num"),
             (f"steps to\n{TARGET_ACCURACY:.0%} val", "num"), ("diverged", "num")])
        for i, r in ranked(group, labels).iterrows():
            spread = "" if seeds < 2 or missing(r.test_accuracy_std) else \
                f" ± {100 * r.test_accuracy_std:.1f}"
            reached = "" if r.reached_target == r.runs else f" ({r.reached_target}/{r.runs})"
            table.add_row(
                escape(labels[i]), f"[{_style(r.verdicts.split(':')[0])}]{r.verdicts}[/]",
                signed(r.log10_first_to_last_measured_mean, 1),
                signed(r.log10_first_to_last_predicted_mean, 1),
                f"{pct(r.test_accuracy_mean)}{spread}",
                (number(r.steps_to_target_mean) + reached) if r.reached_target else "-",
                f"{r.diverged_runs}/{r.runs}")
        console.print(table)
    console.print(f"[dim]{escape(DZ_RATIO)}; theory: its mean-field prediction. Runs are "
                  "ranked only within a group (same data, model and budget).[/]")
    for _, r in frame[~frame.status.isin(FINISHED)].iterrows():
        console.print(f"[red]{r.status}[/]: seed {r.seed} {escape(str(r.get('error') or ''))}")


def sweep_header(console: Console, spec, sweep_plan) -> None:
    done = len(sweep_plan.members) - len(sweep_plan.todo)
    console.print(f"sweep [bold]{escape(spec.name)}[/]: {len(sweep_plan.members)} runs "
                  f"({done} already done, {len(sweep_plan.todo)} to run) in "
                  f"{escape(str(sweep_plan.directory))}", highlight=False)
    if sweep_plan.members and not sweep_plan.todo:
        console.print(f"[green]all {len(sweep_plan.members)} runs are already done[/]: nothing "
                      "to train (delete the sweep folder to train them again)")


def member_line(console: Console, outcome) -> None:
    """One line per member as it finishes: its verdict, or why it failed."""
    record = getattr(outcome, "record", None)
    if record is None:
        console.print(f"[red]failed[/] {escape(outcome.config.name)}: {escape(outcome.error)}")
        return
    v = record.verdict.verdict if record.verdict else record.status.value
    console.print(f"[{_style(v)}]{v:>9}[/] {escape(record.name)}", highlight=False)


def waiting_line(console: Console, configs: list) -> None:
    """Members another live winit process is training: this one waits for them."""
    console.print(f"waiting for {len(configs)} run(s) that another winit process is training")


def executor_note(console: Console, text: str) -> None:
    """One line on what the executor decided (whether --jobs starts helper processes)."""
    console.print(f"[dim]{escape(text)}[/]", highlight=False)


# A dry run's members table shows this many rows, the rest counted: Rich lays a table out over
# all its rows (10,000 took 4-10 s to print, most of a 10,000-member dry run) and nobody reads a
# terminal table that long.
DRY_RUN_ROWS = 40


def dry_run_table(console: Console, spec, sweep_plan, grid_value) -> None:
    """The members a sweep would run, with each one's status: the first DRY_RUN_ROWS of them,
    then how many more and their statuses counted."""
    table = new_table("runs (dry run: nothing trained)",
                      [(k, "text") for k in (*spec.grid, "seed", "status")])
    statuses: Counter[str] = Counter()
    # the plan's hashes, worked out once when it was made (hashing 10,000 configs again here
    # doubled a dry run's time)
    for i, (c, h) in enumerate(zip(sweep_plan.members, sweep_plan.hashes, strict=True)):
        was = sweep_plan.unfinished.get(h)
        status = "done" if h in sweep_plan.done else f"to run (was {was})" if was else "to run"
        if i < DRY_RUN_ROWS:
            table.add_row(*[escape(str(grid_value(c, k))) for k in spec.grid],
                          str(c.train.seed), status)
        else:
            statuses[status] += 1
    console.print(table)
    if statuses:
        counted = ", ".join(f"{n:,} {status}" for status, n in sorted(statuses.items()))
        console.print(f"... and {sum(statuses.values()):,} more runs ({escape(counted)})",
                      highlight=False)


def show_config(console: Console, config, title: str) -> None:
    """A resolved config as the YAML a user would write, under a title."""
    import yaml

    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    console.print(f"[bold]{escape(title)}[/]")
    console.print(escape(text.rstrip()), highlight=False)


def cost_lines(console: Console, cost) -> None:
    """An app.estimate.CostEstimate: one row per group (labelled by what sets it apart), then
    the total and its parts."""
    if not cost.groups:
        console.print("cost: nothing to train")
        return
    table = new_table("cost, measured here just now", [
        ("group", "text"), ("groups", "num"), ("runs", "num"), ("steps\neach", "num"),
        ("ms/step\nplain", "num"), ("ms/step\nrecorded", "num"), ("min", "num")])
    rows: list[list] = []  # alike groups (a grid point split into MAX_GROUP-sized groups) merged
    for g in cost.groups:
        if rows and (rows[-1][0].label, rows[-1][0].members, rows[-1][0].timing) == \
                (g.label, g.members, g.timing):
            rows[-1].append(g)
        else:
            rows.append([g])
    for alike in rows:
        g, mark = alike[0], "*" if alike[0].extrapolated else ""
        table.add_row(escape(g.label), str(len(alike)), str(g.members * len(alike)),
                      f"{g.steps:,}", f"{g.timing.plain * 1000:.1f}{mark}",
                      f"{g.timing.recorded * 1000:.1f}{mark}",
                      f"{sum(a.seconds for a in alike) / 60:.1f}")
    console.print(table)
    runs = sum(g.members for g in cost.groups)
    parts = ", ".join(f"{name} {seconds:,.1f} s" for name, seconds in cost.parts().items()
                      if seconds or name != "start-up")
    notes = []
    if any(g.extrapolated for g in cost.groups):
        notes.append("*: timed at 1 and 2 members, extrapolated linearly")
    if cost.startup is None:
        notes.append("process start-up not measured")
    if cost.missing:
        notes.append(f"not on this machine, download not counted: {', '.join(cost.missing)}")
    notes.append(f"{cost.threads} torch thread{'s' if cost.threads != 1 else ''}")
    if cost.contention is not None:
        c = cost.contention
        notes.append(f"{c.others:.1f} threads of other processes ready to run on {c.cpus} "
                     f"CPUs: a long run gets about {c.fair_share:.0%} of its CPUs, and step "
                     "times are scaled to it")
    console.print(
        f"cost: {runs} run{'s' if runs != 1 else ''} in {len(cost.groups)} group"
        f"{'s' if len(cost.groups) != 1 else ''} (members of a group train together), "
        f"{cost.steps:,} optimizer steps: about [bold]{cost.seconds / 60:.1f} minutes[/] "
        f"({cost.seconds:,.0f} s) [dim]= {parts}; {'; '.join(notes)}[/]", highlight=False)

"""Rerun the classic sweeps of the docs' results page, draw their figures with `winit report`,
and rewrite that page's numbers and docs/*.png from those runs, so that neither can drift from
the code.

    .venv/bin/python scripts/readme_results.py           # all of them: ~20 minutes on 2 cores
    .venv/bin/python scripts/readme_results.py --keep    # reuse runs finished in an earlier call
    ... --only l2 --set train.steps=30 --out /tmp/x --print   # a quick look, nothing rewritten

Every number of the results (docs/results.md) sits between `<!-- results:NAME -->` and
`<!-- /results:NAME -->` and is written here from the runs' own files (summary.csv,
aggregate.csv, layers.csv, metrics.csv); text outside the markers is left alone. Each block is
rewritten in whichever docs page holds its markers (scripts/docblocks.py). The runs go to
results/readme/ (git-ignored). Prints how long each step took, and writes the total into the
page too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import report_browser  # scripts/report_browser.py, beside this script
from docblocks import page_of, results_markers, rewrite_block  # beside this script too

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "readme"  # --out changes it
SWEEPS = ("relu30", "tanh20", "mean1", "l2")
CONFIG = {"relu30": "relu30", "tanh20": "tanh", "mean1": "mean1", "l2": "l2"}
# Model families (issue 11): normalization, residual nets, and whether a norm rescues a bad init.
SWEEPS += ("bn50", "resmlp100", "norm_rescue")
CONFIG |= {"bn50": "bn_depth50", "resmlp100": "resmlp100", "norm_rescue": "norm_rescue"}
# Phase diagrams and Jacobian spectra (issue 12).
SWEEPS += ("phase", "spectra")
# What `winit run` prints, for the README.
SWEEPS += ("quickstart",)
CONFIG |= {"spectra": "spectra"}
# docs/<name>: the report's plot whose name matches the pattern
FIGURES = {"relu30": [("gradient_flow_*", "relu30_gradient_flow.png"),
                      ("curves_*", "relu30_curves.png"),
                      ("grad_flow_bars_*", "relu30_grad_flow_bars.png")],
           "tanh20": [("gradient_flow_*", "tanh20_gradient_flow.png"),
                      ("heatmaps_*", "tanh20_heatmaps.png")],
           "mean1": [("heatmaps_*_d3_*", "mean1_heatmaps.png")],
           "l2": [("curves_*", "l2_curves.png")],
           "bn50": [("gradient_flow_*", "bn50_gradient_flow.png")],
           "resmlp100": [("gradient_flow_*_d100_*", "resmlp100_gradient_flow.png")],
           "norm_rescue": [("gradient_flow_*layernorm*_d20_*",
                            "norm_rescue_layernorm_gradient_flow.png")],
           "phase": [("phase", "phase_tanh.png")],
           "spectra": [("spectra_all", "spectra32_spectrum.png"),
                       ("curves_*_tanh_*", "spectra32_tanh_curves.png")],
           "quickstart": []}
# The phase diagram the docs show (`winit phase`): a few minutes on 2 quiet cores.
PHASE_ARGS = ("--sigma-w2", "0.5,0.75,1,1.25,1.5,2,3,4,6,8", "--depths", "4,8,16,32,64,128",
              "--steps", "300", "--seeds", "2")
# docs/<name>: the report's page in headless Chromium at a window width (scripts/report_browser.py)
SCREENSHOTS = {"relu30": [(1280, "report_relu30_1280px.png"), (800, "report_relu30_800px.png")]}


def winit(*args: str) -> dict:
    """One winit command with --json; its document."""
    proc = subprocess.run([sys.executable, "-m", "winit_cli", *args, "--json"], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"winit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


class Sweep:
    """One sweep's runs and report, read from their files."""

    def __init__(self, name: str, out: Path, overrides: list[str]):
        config = REPO / "configs" / "sweeps" / f"{CONFIG[name]}.yaml"
        sets = [a for item in overrides for a in ("--set", item)]
        data = winit("compare", "schemes", "--sweep", str(config), "--set", f"output_dir={out}",
                     *sets)
        self.dir = Path(data["sweep_dir"])
        self.report = Path(winit("report", str(self.dir), "--out",
                                 str(out / f"report-{name}"))["out"])
        self.summary = pd.read_csv(self.report / "summary.csv")
        self.aggregate = pd.read_csv(self.report / "aggregate.csv")
        # this script's own figures: beside the report, not in it (a report folder holding
        # files winit did not write is refused by the next `winit report`, as with --keep)
        self.figures = out / f"figures-{name}"

    def runs(self, scheme: str, **where) -> pd.DataFrame:
        rows = self.summary[self.summary.scheme == scheme]
        for key, value in where.items():
            rows = rows[rows[key] == value]
        return rows

    def acc(self, scheme: str, **where) -> str:
        """Mean test accuracy over seeds, with the std where there are several."""
        rows = self.aggregate[self.aggregate.scheme == scheme]
        for key, value in where.items():
            rows = rows[rows[key] == value]
        (row,) = rows.itertuples()
        spread = "" if pd.isna(row.test_accuracy_std) else f" ± {100 * row.test_accuracy_std:.1f}"
        return f"{100 * row.test_accuracy_mean:.1f}%{spread}"

    def table(self, row: pd.Series, name: str) -> pd.DataFrame:
        """A run's CSV (summary paths are relative to the sweep folder)."""
        return pd.read_csv(self.dir / row.path / name)


def _dz(rows: pd.DataFrame, column: str = "log10_first_to_last_measured") -> str:
    return " and ".join(f"{x:+.2f}" for x in rows[column])


def _predicted(rows: pd.DataFrame) -> str:
    return f"{rows.log10_first_to_last_predicted.mean():+.2f}"


def _span(layers: pd.DataFrame, column: str) -> float:
    """Decades spanned by a quantity across the hidden layers at step 0."""
    step0 = layers[layers.step == 0].sort_values("layer").iloc[:-1]
    values = step0[column].map(math.log10)
    return float(values.max() - values.min())


def _first_step(metrics: pd.DataFrame, above: float) -> int | None:
    hit = metrics[metrics.val_accuracy >= above]
    return int(hit.step.iloc[0]) if len(hit) else None


def relu30(s: Sweep) -> str:
    xavier, he = s.runs("xavier_normal"), s.runs("he_normal")
    stalls = [_first_step(s.table(r, "metrics.csv"), 0.2) for _, r in xavier.iterrows()]
    stall = "never leaves chance" if None in stalls else (
        f"stays below 20% validation accuracy for the first {min(stalls)}-{max(stalls)} steps"
        if min(stalls) != max(stalls) else f"stays below 20% for the first {stalls[0]} steps")
    dw = max(_span(s.table(r, "layers.csv"), "weight_grad_norm") for _, r in
             pd.concat([xavier, he]).iterrows())
    xi = xavier.theory_depth_scale.iloc[0]
    learns = "does learn, slowly" if xavier.test_accuracy.mean() > 0.2 else "does not learn"
    return (
        "Xavier's variance 2/(fan_in + fan_out) = 1/256 gives chi = 1/2 per ReLU layer, so the "
        f"gradient reaching layer 1 is 10^{xavier.log10_first_to_last_measured.mean():.1f} of "
        f"the last hidden layer's (dz ratio: theory {_predicted(xavier)}, measured "
        f"{_dz(xavier)}); He's 2/fan_in gives chi = 1 and a flat profile (measured {_dz(he)}). "
        f"After 2 epochs He reaches {s.acc('he_normal')}, Xavier {s.acc('xavier_normal')}: it "
        f"{stall} before it starts to learn. Theory's depth scale for Xavier here is xi = "
        f"{xi:.2f}, and it expects nets much deeper than 6 xi = {6 * xi:.1f} layers not to "
        f"train; measured at depth 30, this one {learns}. The right panel shows why the verdict "
        f"reads dL/dz: the weight gradients span at most {dw:.1f} decades across the hidden "
        "layers for both.")


def tanh20(s: Sweep) -> str:
    normal, xavier, torch = (s.runs(n) for n in ("normal", "xavier_uniform", "torch_default"))

    def falls(rows):
        return f"{-rows.log10_first_to_last_measured.mean():.1f}"

    return (
        f"N(0, 0.01^2) has chi* = {normal.theory_chi.iloc[0]:.3g}: the backpropagated gradient "
        f"falls {falls(normal)} decades from the last hidden layer to the first (theory "
        f"{_predicted(normal)}, measured {_dz(normal)}) and the net reaches "
        f"{s.acc('normal')}. PyTorch's default (variance 1/(3 fan_in), chi* = "
        f"{torch.theory_chi.iloc[0]:.2f}) falls {falls(torch)} decades (theory "
        f"{_predicted(torch)}, measured {_dz(torch)}) and reaches {s.acc('torch_default')} "
        f"after 2 epochs. Xavier uniform (chi* = {xavier.theory_chi.iloc[0]:.2f}) loses "
        f"{falls(xavier)} decades over 20 layers (theory {_predicted(xavier)}, measured "
        f"{_dz(xavier)}) and reaches {s.acc('xavier_uniform')}.")


def _verdict(row) -> str:
    """`exploding from layer 1 at step 0`, from a summary row."""
    if pd.isna(row.verdict_layer):
        return str(row.verdict)
    return f"{row.verdict} from layer {int(row.verdict_layer)} at step {int(row.verdict_step)}"


def mean1(s: Sweep) -> str:
    (shallow,), (deep,) = (s.runs("mean1_normal", depth=d).itertuples() for d in (3, 10))
    layers = s.table(pd.Series({"path": shallow.path}), "layers.csv")
    later = layers[(layers.step > 0) & (layers.layer < 3)]
    dead = later.groupby("step").dead_fraction.min()
    zero = later.groupby("step").act_grad_norm.max()
    first_dead = int(dead[dead >= 1].index.min()) if (dead >= 1).any() else None
    after = ("the first update kills every ReLU unit of the hidden layers and the gradient there "
             "is exactly 0 from then on" if first_dead == int(later.step.min())
             and (zero[zero.index >= first_dead] == 0).all() else
             f"the hidden layers' ReLU units are all dead from step {first_dead}"
             if first_dead is not None else "training goes on")
    deep_layers = s.table(pd.Series({"path": deep.path}), "layers.csv")
    dw = math.log10(deep_layers[deep_layers.step == 0].weight_grad_norm.max())
    if deep.verdict == "diverged" and deep.verdict_step >= 1:
        fate = (f"the weight gradients reach 10^{dw:.0f} at step 0 (still finite in float32), "
                f"and the first {'updates send' if deep.verdict_step > 1 else 'update sends'} "
                "the network "
                f"past float32's range: {_verdict(deep)} (non-finite values; no accuracy)")
    else:
        fate = (f"the weight gradients reach 10^{dw:.0f} at step 0 and the run is "
                f"{_verdict(deep)} ({s.acc('mean1_normal', depth=10)})")
    return (
        "With mean-1 weights each unit sums 256 positive terms: at depth 3 the gradient at "
        f"layer 1 is 10^{shallow.log10_first_to_last_measured:.1f} times layer 2's at step 0 "
        f"({_verdict(shallow)}), {after} ({s.acc('mean1_normal', depth=3)}); at depth 10 "
        f"{fate}. He at the same depths: {s.runs('he_normal', depth=3).verdict.iloc[0]} at depth "
        f"3 ({s.acc('he_normal', depth=3)}), {s.runs('he_normal', depth=10).verdict.iloc[0]} at "
        f"depth 10 ({s.acc('he_normal', depth=10)}).")


def l2(s: Sweep) -> str:
    def rows(scheme, std):
        return s.summary[(s.summary.scheme == scheme) & (s.summary.init_params_std == std)]

    def acc(scheme, std):
        return s.acc(scheme, init_params_std=std)

    small, small_l2 = rows("normal", 0.01), rows("normal_l2", 0.01)
    same = all((s.table(a, "layers.csv").query("step == 0").drop(columns="update_ratio")
                .equals(s.table(b, "layers.csv").query("step == 0").drop(columns="update_ratio")))
               for (_, a), (_, b) in zip(small.iterrows(), small_l2.iterrows(), strict=True))
    target = {n: r.steps_to_target.mean() for n, r in (("plain", small), ("l2", small_l2))}
    reach = "" if any(pd.isna(v) for v in target.values()) else (
        f", reaching 90% validation accuracy at step {target['l2']:.0f} vs {target['plain']:.0f}")
    better = "no better" if small_l2.test_accuracy.mean() <= small.test_accuracy.mean() + 0.005 \
        else "a little better"
    return (
        "The init sets the gradient scale at step 0; L2 (weight decay 0.001 added to every "
        "weight gradient) acts only through the updates. With std 0.01 the gradient at layer 1 "
        f"is 10^{small.log10_first_to_last_measured.mean():.1f} of the last hidden layer's "
        f"({small.verdict.iloc[0]}; theory {_predicted(small)}) with or without L2"
        + (": the L2 run's step-0 record is identical, because L2 cannot change the init, "
           if same else "; ")
        + f"and it trains {better} ({acc('normal_l2', 0.01)} with L2 vs {acc('normal', 0.01)} "
        f"without{reach}). A larger init (std 0.05, {rows('normal', 0.05).verdict.iloc[0]}) "
        f"reaches {acc('normal_l2', 0.05)} with L2 and {acc('normal', 0.05)} without; He: "
        f"{s.acc('he_normal')}. L2 regularizes what is learned; it does not repair gradient "
        "flow.")


# --- model families (issue 11) ---------------------------------------------------------------

LABEL = {"he_normal": "He", "xavier_normal": "Xavier", "normal": "N(0, 0.01^2)",
         "mean1_normal": "mean-1", "fixup": "Fixup", "skipinit": "SkipInit"}


def _summary_json(s: Sweep, row) -> dict:
    return json.loads((s.dir / row.path / "summary.json").read_text())


def _range(values) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


def bn50(s: Sweep) -> str:
    rows = {n: s.runs(n).iloc[0] for n in ("he_normal", "xavier_normal", "normal")}
    he = rows["he_normal"]
    per, lam = he.theory_predicted_decades_per_layer, he.theory_chi
    fitted = ", ".join(f"{r.theory_measured_decades_per_layer:+.4f} ({LABEL[n]})"
                       for n, r in rows.items())
    off = max(abs(r.theory_measured_decades_per_layer / per - 1) for r in rows.values())
    total = ", ".join(f"{r.log10_first_to_last_measured:+.2f}" for r in rows.values())
    exploding = [r for r in rows.values() if r.verdict == "exploding"]
    steps = sorted({int(r.verdict_step) for r in exploding})
    layers = _range([int(r.verdict_layer) for r in exploding])
    verdicts = (f"All three are `exploding` from layer {layers} at step {_range(steps)}"
                if len(exploding) == 3 else
                "Verdicts: " + ", ".join(f"{LABEL[n]} {_verdict(r)}" for n, r in rows.items()))
    named = [n for n, r in rows.items() if "theory: BatchNorm" in (
        _summary_json(s, r).get("verdict_text") or "")]
    sentence = (_summary_json(s, he).get("verdict_text") or "").split(" going back")[0]
    return (
        f"Theory: every layer multiplies E||dL/dz||^2 by lambda(128) = {lam:.3f} going back, "
        f"10^{per:+.4f} per layer in norm, the same for every zero-mean init because BatchNorm "
        f"removes the weight scale. Measured at step 0, the growth fitted over layers "
        f"{he.theory_fit_layers}: 10^{fitted}, within {100 * off:.0f}% of the rate; from the "
        f"last hidden layer back to layer 1, predicted 10^{he.log10_first_to_last_predicted:+.2f}"
        f", measured {total} (the first and last layers, where the batch's statistics have not "
        f"settled, grow at other rates; the fit leaves them out). {verdicts}, and the verdict "
        f"names the cause for {len(named)} of 3 (He's: \"{sentence} going back ...\"). After "
        f"{int(he.steps)} steps they reach "
        + ", ".join(f"{s.acc(n)} ({LABEL[n]})" for n in rows) + " test accuracy.")


def resmlp100(s: Sweep) -> str:
    deep = {n: s.runs(n, depth=100).iloc[0] for n in ("he_normal", "fixup", "skipinit")}
    he = deep["he_normal"]
    fate = (f"the run is {_verdict(he)}" if he.verdict == "diverged" else
            f"its verdict: {_verdict(he)}, {s.acc('he_normal', depth=100)} test accuracy")
    identity = " and ".join(f"{deep[n].log10_first_to_last_measured:+.2f} ({LABEL[n]})"
                            for n in ("fixup", "skipinit"))
    shallow = {n: s.acc(n, depth=4) for n in deep}
    best = max(s.runs(n, depth=4).test_accuracy.iloc[0] for n in deep)
    gap = max((100 * (best - deep[n].test_accuracy) for n in ("fixup", "skipinit")),
              default=math.nan)
    return (
        f"Under He with alpha = 1 every block multiplies E||dL/dh||^2 by 1 + alpha^2 chi_branch "
        f"= {he.theory_chi:.3g}: theory puts the stream's gradient at h_0 "
        f"10^{he.log10_first_to_last_predicted:+.2f} above h_B's at step 0, measured "
        f"10^{he.log10_first_to_last_measured:+.2f}; the forward variance grows as fast, and "
        f"{fate}. Fixup (branch_inner x B^(-1/2), branch_out 0) and SkipInit (alpha = 0) make "
        f"every block the identity at init: predicted "
        f"10^{deep['fixup'].log10_first_to_last_predicted:+.2f}, measured {identity}. After "
        f"{int(s.summary.steps.max())} steps they reach {s.acc('fixup', depth=100)} (Fixup) and "
        f"{s.acc('skipinit', depth=100)} (SkipInit) test accuracy at depth 100, against "
        + ", ".join(f"{shallow[n]} ({LABEL[n]})" for n in deep)
        + " for the 4-layer net (one block): "
        + ("no worse than the shallow net's best." if gap <= 0 else
           f"within {gap:.1f} points of the shallow net's best." if gap == gap else
           "no accuracy at depth 100."))


def _cell(s: Sweep, scheme: str, kind: str, depth: int) -> str:
    (row,) = s.runs(scheme, model_kind=kind, depth=depth).itertuples()
    if row.status == "diverged" or pd.isna(row.test_accuracy):
        return _verdict(row)
    acc = f"{100 * row.test_accuracy:.1f}%"
    return acc if row.verdict == "healthy" else f"{acc} ({_verdict(row)})"


def norm_rescue(s: Sweep) -> str:
    schemes = ("normal", "mean1_normal", "he_normal")
    kinds = {"mlp": "no norm", "mlp+batchnorm": "BatchNorm", "mlp+layernorm": "LayerNorm"}
    depths = [int(d) for d in sorted(s.summary.depth.unique())]
    lines = ["| norm | depth | " + " | ".join(LABEL[n] for n in schemes) + " |",
             "|---|---|" + "---|" * len(schemes)]
    for kind, norm in kinds.items():
        for depth in depths:
            cells = [_cell(s, n, kind, depth) for n in schemes]
            lines.append(f"| {norm} | {depth} | " + " | ".join(cells) + " |")
    words = []
    for scheme in schemes[:2]:
        parts = []
        for kind, norm in kinds.items():
            ok = [d for d in depths if _within(s, scheme, kind, d)]
            if ok:
                where = "without a norm" if kind == "mlp" else f"with {norm}"
                parts.append(f"{where} at depth{'s' * (len(ok) > 1)} {' and '.join(map(str, ok))}")
        words.append(f"{LABEL[scheme]} trains as well as He (within 5 points, same norm and "
                     "depth) " + (" and ".join(parts) if parts else "in none of them"))
    picks = re.findall(r"^- \*\*[^,]+, (\S+) \S+, depth (\d+)[^*]*:\*\* use `([^`]+)`",
                       (s.report / "report.md").read_text(), re.M)
    report = "; ".join(f"{kinds.get(k, k)} at depth {d}: {LABEL.get(n, n)}" for k, d, n in picks)
    return ("\n".join(lines) + "\n\n" + ". ".join(words) + ". The report's pick per network "
            f"(highest test accuracy among runs with healthy gradients): {report}.")


def _within(s: Sweep, scheme: str, kind: str, depth: int, points: float = 5.0) -> bool:
    acc = s.runs(scheme, model_kind=kind, depth=depth).test_accuracy.iloc[0]
    he = s.runs("he_normal", model_kind=kind, depth=depth).test_accuracy.iloc[0]
    return bool(pd.notna(acc) and pd.notna(he) and 100 * (he - acc) <= points)


class PhaseSweep:
    """`winit phase` with PHASE_ARGS: its grid (phase.csv) and --json document; the figure is
    copied to <out>/report-phase/plots/phase.png, where main() finds figures."""

    def __init__(self, name: str, out: Path, overrides: list[str]):
        sets = [a for item in overrides for a in ("--set", item)]
        self.doc = winit("phase", *PHASE_ARGS, "--set", f"output_dir={out}", *sets)
        self.dir = Path(self.doc["sweep_dir"])
        self.summary = pd.read_csv(self.doc["grid_csv"])  # one row per cell
        self.report = self.figures = out / f"report-{name}"
        (self.report / "plots").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.doc["figure"], self.report / "plots" / "phase.png")


class QuickstartRun:
    """`winit run configs/quickstart.yaml` as a user sees it in an 80-column terminal: its
    standard output, for the README's "What winit run prints"."""

    def __init__(self, name: str, out: Path, overrides: list[str]):
        sets = [a for item in overrides for a in ("--set", item)]
        folder = (out / name).relative_to(REPO) if out.is_relative_to(REPO) else out / name
        proc = subprocess.run(
            [sys.executable, "-m", "winit_cli", "run", "configs/quickstart.yaml", "--set",
             f"output_dir={folder}", *sets], cwd=REPO, capture_output=True, text=True,
            env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1"})
        if proc.returncode != 0:
            sys.exit(f"winit run configs/quickstart.yaml failed:\n{proc.stderr[-2000:]}")
        self.output = proc.stdout.rstrip()
        self.summary = [self.output]  # one run


def quickstart(run: QuickstartRun) -> str:
    return f"```text\n$ winit run configs/quickstart.yaml\n{run.output}\n```"


# NAMEs not run by `winit compare schemes`
RUNNERS = {"phase": PhaseSweep, "quickstart": QuickstartRun}


def _cells(grid: pd.DataFrame, where) -> str:
    rows = grid[where]
    return ", ".join(f"{r.sigma_w2:g}/{r.depth}" for r in rows.itertuples()) or "none"


def _c_interval(fit) -> str:
    """A fitted c interval (app.phase.BestC, or its --json form) in words."""
    low, high = (fit["low"], fit["high"]) if isinstance(fit, dict) else (fit.low, fit.high)
    return (f"c >= {low:.1f}" if high is None or math.isinf(high)
            else f"c between {low:.1f} and {high:.1f}")


def phase(s: PhaseSweep) -> str:
    from winit_cli.app.phase import best_c

    grid, doc = s.summary, s.doc
    wrong = grid.trained != grid.predicted_trainable
    partial = grid[wrong & grid.trained].test_accuracy
    crit = grid.sigma_w2[grid.chi_1.sub(1).abs().idxmin()]
    near, deepest = grid[grid.sigma_w2 == crit], grid.depth.max()
    strict = grid.assign(trained=grid.test_accuracy > 0.5)
    strict_right = int((strict.trained == strict.predicted_trainable).sum())
    strict_fit = best_c(strict)
    schoenholz = ("nets stop training well near 6 xi_c, and some still learn a little up to "
                  "the lenient fit's c" if strict_fit.low <= 7 and strict_fit.high >= 5 else
                  "this budget and grid put the boundary elsewhere")
    return (
        f"{len(grid)} cells (tanh, width 128, sigma_b2 = 0.05, 300 steps of SGD at lr 0.01 on "
        f"10,000 MNIST examples, {_seeds(grid)}) trained in {_minutes(s)}. A cell counts as "
        "trained when its test accuracy is above 20% (twice chance): depth <= 6 xi_c then "
        f"classifies {doc['right']} of {doc['total']} cells correctly, and the best fit is "
        f"{_c_interval(doc['best_c'])} ({doc['best_c']['right']} of {doc['total']}). The cells it "
        f"gets wrong (sigma_w2/depth) lie along the curve: {_cells(grid, wrong & grid.trained)} "
        f"learned partly beyond it{_accuracy_range(partial)}, "
        f"{_cells(grid, wrong & ~grid.trained)} did not learn "
        f"inside it. Counted as trained only above 50%, 6 xi_c classifies {strict_right} of "
        f"{len(grid)} and the best fit is {_c_interval(strict_fit)} ({strict_fit.right} of "
        f"{len(grid)}; Schoenholz et al. found about 6): {schoenholz}. Nearest the edge of chaos "
        f"(sigma_w2 = {crit:g}, chi_1 = {near.chi_1.iloc[0]:.2f}) the {deepest}-layer net "
        f"reaches {100 * near[near.depth == deepest].test_accuracy.iloc[0]:.1f}%.")


def _seeds(grid: pd.DataFrame) -> str:
    n = int(grid.runs.max())
    return "one seed" if n == 1 else f"{n} seeds per cell, accuracy their mean"


def _accuracy_range(accuracy: pd.Series) -> str:
    if accuracy.empty:
        return ""
    return f" (test accuracy {100 * accuracy.min():.0f}-{100 * accuracy.max():.0f}%)"


def _minutes(s: PhaseSweep) -> str:
    seconds = [json.loads(p.read_text())["final"].get("group_seconds") or 0.0
               for p in s.dir.glob("runs/*/summary.json")]
    # a group's seconds are written into each member; count each group once
    total = sum(set(seconds))
    return f"{total / 60:.0f} minutes" if total >= 90 else f"{total:.0f} seconds"


def _jacobian(s: Sweep, rows: pd.DataFrame, key: str) -> float:
    """Mean over a configuration's seeds of a field of summary.json's `jacobian` block."""
    return float(pd.Series([json.loads((s.dir / p / "summary.json").read_text())["jacobian"][key]
                            for p in rows.path], dtype=float).mean())


def _spectra_figure(s: Sweep, names: dict) -> None:
    """All four configurations' spectra in one figure (the report draws one per activation),
    with the free-probability curve where winit has one, as
    <out>/figures-spectra/spectra_all.png."""
    from winit_cli.app.spectrum_theory import predicted_curve
    from winit_cli.records.reader import flatten
    from winit_cli.views.plots import save
    from winit_cli.views.spectrum_plot import SpectrumLine, spectrum_density
    from winit_cli.yamlfile import read_yaml

    lines = []
    for (activation, orthogonal), (label, color) in names.items():
        rows = s.runs("critical", activation=activation, init_params_orthogonal=orthogonal)
        spectra = [s.table(r, "spectrum.csv") for _, r in rows.iterrows()]
        config = flatten(read_yaml(s.dir / rows.path.iloc[0] / "config.yaml"))
        lines.append(SpectrumLine(label, color, spectra, predicted_curve(config)))
    first = s.summary.iloc[0]
    title = (f"Jacobian singular values at init: depth {first.depth}, width {first.width}, "
             f"critical init (chi = 1 at q*)\n{s.summary.seed.nunique()} seeds x 16 MNIST "
             "inputs each")
    save(spectrum_density(lines, title), s.figures / "spectra_all.png")


SPECTRA = {("tanh", True): ("tanh, orthogonal", "#d62728"),
           ("tanh", False): ("tanh, Gaussian", "#1f77b4"),
           ("relu", False): ("ReLU, Gaussian (He)", "#2ca02c"),
           ("relu", True): ("ReLU, orthogonal", "#9467bd")}


def _val_at(s: Sweep, rows: pd.DataFrame, step: int) -> str:
    """Mean validation accuracy over the seeds at the first evaluation at or after `step`."""
    values = []
    for _, row in rows.iterrows():
        metrics = s.table(row, "metrics.csv").dropna(subset=["val_accuracy"])
        later = metrics[metrics.step >= step].val_accuracy
        if later.empty:  # a run shorter than `step` (a quick look with --set train.steps)
            return "n/a"
        values.append(later.iloc[0])
    return f"{100 * sum(values) / len(values):.0f}%"


def spectra(s: Sweep) -> str:
    from winit_cli.theory import critical_sigma_w2
    from winit_cli.theory.spectra import predicted_spectrum

    _spectra_figure(s, SPECTRA)
    parts = []
    steps = int(s.summary.steps.max())
    for (activation, orthogonal), (label, _) in SPECTRA.items():
        rows = s.runs("critical", activation=activation, init_params_orthogonal=orthogonal)
        theory = predicted_spectrum(30, "orthogonal" if orthogonal else "gaussian", activation,
                                    critical_sigma_w2(activation, 0.001), 0.001)
        target = rows.steps_to_target
        reach = ("never reaches 90%" if target.isna().all() else
                 f"reaches 90% at step {target.mean():.0f}")
        parts.append(
            f"**{label}**: var(s^2)/mean(s^2)^2 {_jacobian(s, rows, 'var_ratio'):.3g} (theory "
            f"at q\\*: {theory.var_sq:.3g}), median s {_jacobian(s, rows, 'sv_q50'):.2g}; "
            f"spread {_jacobian(s, rows, 'spread'):.2f} over s > 1e-6 max (theory at q\\*: "
            f"{theory.spread:.2f}), mean s^2 {_jacobian(s, rows, 'mean_sq'):.3g} (prod chi "
            f"{_jacobian(s, rows, 'predicted_mean_sq'):.3g}), largest s "
            f"{_jacobian(s, rows, 'max'):.2g}; validation accuracy {_val_at(s, rows, 25)} at "
            f"step 25 and {_val_at(s, rows, 100)} at step 100, {reach}, test accuracy after "
            f"{steps} steps "
            f"{s.acc('critical', activation=activation, init_params_orthogonal=orthogonal)}")
    (tanh,) = s.runs("critical", activation="tanh", init_params_orthogonal=True)[
        ["theory_input_second_moment", "theory_q_fixed_point"]].drop_duplicates().itertuples(
        index=False)
    sigma_w2 = critical_sigma_w2("tanh", 0.001)
    return (f"For tanh sigma_w2 = {sigma_w2:.3f}, and the inputs' second moment "
            f"{tanh[0]:.2f} gives q_1 = {sigma_w2 * tanh[0] + 0.001:.2f} against q\\* = "
            f"{tanh[1]:.3f}. " + ". ".join(parts) + ".")


# The README's "Which init should I use?" table: per network, the schemes its sweep compares.
HEADLINE = [("relu30", "ReLU MLP, 30 layers", ("he_normal", "xavier_normal"), {}),
            ("tanh20", "tanh MLP, 20 layers", ("xavier_uniform", "torch_default", "normal"), {}),
            ("mean1", "ReLU MLP, 10 layers", ("he_normal", "mean1_normal"), {"depth": 10}),
            ("resmlp100", "residual ReLU MLP, 100 blocks", ("fixup", "skipinit", "he_normal"),
             {"depth": 100}),
            ("bn50", "ReLU MLP + BatchNorm, 50 layers", ("he_normal", "xavier_normal"), {})]


def _decades(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:+.2f}"


def headline(sweeps: dict[str, Sweep]) -> str:
    """One row per network and scheme: theory's and the measured dz ratio at step 0 (log10 of
    ||dL/dz|| at the first hidden layer over the last), the verdict, the test accuracy; the best
    healthy scheme of each network in bold."""
    lines = ["| network (MNIST, width 256) | scheme | dz ratio at init: theory, measured "
             "(decades) | verdict | test accuracy |", "|---|---|---|---|---|"]
    for name, network, schemes, where in HEADLINE:
        s = sweeps[name]
        rows = {n: s.runs(n, **where) for n in schemes}
        healthy = [n for n in schemes if (rows[n].verdict == "healthy").all()]
        best = max(healthy, key=lambda n: rows[n].test_accuracy.mean(), default=None)
        for n in schemes:
            r = rows[n]
            verdicts = sorted(set(r.verdict.astype(str)))
            accuracy = s.acc(n, **where) if r.test_accuracy.notna().all() else "none"
            label = f"**{n}**" if n == best else n
            theory = _decades(r.log10_first_to_last_predicted.mean())
            measured = _decades(r.log10_first_to_last_measured.mean())
            lines.append(f"| {network} | {label} | {theory}, {measured} | "
                         f"{' / '.join(verdicts)} | {accuracy} |")
    return "\n".join(lines)


def rewrite(texts: dict[str, str]) -> None:
    """Each block NAME of `texts` rewritten, wrapped, in the docs page that holds it."""
    for name, text in texts.items():
        rewrite_block(*results_markers(name), wrap(text))


def wrap(text: str, width: int = 100) -> str:
    """Each paragraph (blank-line separated) filled to `width`; a table's lines kept as they are."""
    if text.startswith("```"):
        return text
    if "\n\n" in text or text.startswith("|"):
        return "\n\n".join(p if p.startswith("|") else wrap(p, width) for p in text.split("\n\n"))
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="reuse runs finished earlier")
    parser.add_argument("--only", choices=SWEEPS, action="append", help="these sweeps only")
    parser.add_argument("--out", type=Path, default=OUT, help=f"runs go here (default {OUT})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override the sweeps' base (for a quick look)")
    parser.add_argument("--print", action="store_true", help="print, rewrite nothing")
    args = parser.parse_args()
    if not args.keep and args.out.exists():
        shutil.rmtree(args.out)
    started = time.perf_counter()
    for name in [*(args.only or SWEEPS), "timing", "headline"]:
        page_of(*results_markers(name))  # every block has its page, before minutes of runs
    texts, sweeps = {}, {}
    for name in args.only or SWEEPS:
        t = time.perf_counter()
        sweep = RUNNERS.get(name, Sweep)(name, args.out, args.overrides)
        texts[name] = text = globals()[name](sweep)
        if args.print:
            print(f"--- {name}\n{wrap(text)}")
        for pattern, target in [] if args.print else FIGURES[name]:
            (plot,) = sorted([*(sweep.report / "plots").glob(f"{pattern}.png"),
                              *sweep.figures.glob(f"{pattern}.png")])
            shutil.copyfile(plot, REPO / "docs" / target)
        for width, target in [] if args.print else SCREENSHOTS.get(name, []):
            report_browser.screenshot(sweep.report / "report.html", width, REPO / "docs" / target)
        print(f"{name}: {len(sweep.summary)} runs and figures in {time.perf_counter() - t:.0f} s",
              flush=True)
        sweeps[name] = sweep
    if all(name in sweeps for name, *_ in HEADLINE):
        texts["headline"] = headline(sweeps)
        if args.print:
            print(f"--- headline\n{texts['headline']}")
    minutes = (time.perf_counter() - started) / 60
    if args.print or args.only:
        print(f"took {minutes:.1f} minutes; docs " + (
            "not rewritten" if args.print else "rewritten for " + ", ".join(args.only)))
        if not args.print:
            rewrite(texts)
        return
    sweeps_run = len(SWEEPS) - 1  # the quickstart is one run, not a sweep
    texts["timing"] = (f"The script reran all {sweeps_run} sweeps and the quickstart and drew "
                       f"their figures in "
                       f"{minutes:.0f} minutes on this machine ({time.strftime('%Y-%m-%d')}).")
    rewrite(texts)
    print(f"docs/results.md and docs/*.png rewritten from {args.out} in {minutes:.1f} minutes")


if __name__ == "__main__":
    main()

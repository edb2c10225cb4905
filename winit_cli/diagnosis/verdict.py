"""The verdict: healthy, vanishing, exploding or diverged, and where and when it starts.

The rule reads the backpropagated gradients dL/dz_l, not the weight gradients: Glorot & Bengio
(2010) saw weight-gradient norms stay flat across layers while dL/dz shrank layer by layer, so a
rule on dL/dW alone would call a vanishing network healthy.

At each recorded step, for every layer l below the output layer L:

    r_l = log10( ||dL/dz_l|| / ||dL/dz_L|| )

- vanishing: some r_l < -vanish_decades (default 2: the gradient reaching layer l is 100x smaller
  than at the output). It starts at the layer nearest the output where that holds.
- exploding: some r_l > +explode_decades, likewise.
- diverged: the loss or a gradient became non-finite (the step and the first layer affected),
  or the training loss rose past LOSS_BLOWUP times its first value (Adam at lr 1e6 reached
  4e20, finite: no gradient ratio says anything about such a run).
- healthy: none of these at any recorded step.
In a residual MLP (layers.csv has stream_grad_norm) the hidden layers read are the residual
stream's, r_b = log10( ||dL/dh_b|| / ||dL/dz_L|| ) on the input projection's row (b = 0) and on
each block's last branch layer's row: the branches' own gradients are zero by design at init
under SkipInit (alpha = 0), Fixup and zero_last, which says nothing about propagation.
The verdict is the first condition met, scanning recorded steps in order; `fraction_of_steps`
says how persistent it was. The ratio is scale-free, so a network that has simply learned (small
gradients everywhere) is not called vanishing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

STREAM = "stream_grad_norm"  # measure/family_probes.py: ||dL/dh_b|| of a residual stream
# diagnosis/predict_families.py: theory's log10 ||dL/dh_b|| / ||dL/dz_L|| of a residual stream
STREAM_RATIO = "predicted_log10_stream_ratio"
_LARGEST_DECADE = 300.0  # 10^r stays a finite float64 up to here (a measured inf is overflow)


@dataclass(frozen=True)
class Verdict:
    verdict: str  # healthy | vanishing | exploding | diverged
    layer: int | None  # where it starts (1 = input side)
    step: int | None  # when it starts
    fraction_of_steps: float | None  # of recorded steps showing it
    log10_ratio_init: float | None  # the most extreme finite r_l (largest |r_l|) at step 0
    log10_ratio_end: float | None  # the same at the last recorded step
    cause: str | None = None  # for a divergence that is not a non-finite value: what happened

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.verdict == "healthy":
            return "healthy: backpropagated gradients stay within the thresholds at every layer"
        where = f"from layer {self.layer}" if self.layer else "at an unknown layer"
        if self.verdict == "diverged":
            return f"diverged at step {self.step}: {self.cause or f'non-finite values {where}'}"
        return f"{self.verdict} {where}, from step {self.step}"


def log10_ratios(layers: pd.DataFrame) -> pd.DataFrame:
    """r_l per step (rows) and layer (columns 1..L-1), from layers.csv's act_grad_norm; for
    residual kinds, the stream's gradient (stream_grad_norm) on the layers that carry it."""
    wide = layers.pivot(index="step", columns="layer", values="act_grad_norm").sort_index()
    output = wide.columns.max()
    hidden = wide.drop(columns=output)
    if STREAM in layers.columns:
        stream = layers.pivot(index="step", columns="layer", values=STREAM).sort_index()
        hidden = stream[[c for c in stream.columns if c != output and stream[c].notna().any()]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log10(hidden.div(wide[output], axis=0))
    return ratios


def measured_first_to_last_hidden(step0: pd.DataFrame) -> float:
    """log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| at step 0 (0 when there is one hidden layer or none);
    for residual kinds the stream's log10 ||dL/dh_0|| / ||dL/dh_B||."""
    if STREAM in step0.columns:
        norms = step0.sort_values("layer")[STREAM].dropna().to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.log10(norms[0] / norms[-1])) if len(norms) > 1 else 0.0
    norms = step0.sort_values("layer").act_grad_norm.to_numpy()
    if len(norms) < 3:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log10(norms[0] / norms[-2]))


def zero_gradient_layers(step0: pd.DataFrame) -> int:
    """Layers whose gradient underflowed to exactly 0, among those the verdict reads (for
    residual kinds the stream's: their branches may be zero by design, see the module doc)."""
    if STREAM in step0.columns:
        return int((step0[STREAM].dropna() == 0).sum())
    return int((step0.act_grad_norm == 0).sum())


# A training loss this many times its first is a run that diverged, finite or not: cross-entropy
# starts near ln(classes), and 10,000 times that is no longer learning anything.
LOSS_BLOWUP = 1e4
NO_HIDDEN_LAYER = ("no verdict: there is no hidden layer to compare with the output layer "
                   "(a single layer), so nothing can vanish or explode")


def diagnose(layers: pd.DataFrame, *, vanish_decades: float = 2.0, explode_decades: float = 2.0,
             diverged_step: int | None = None, diverged_layer: int | None = None,
             diverged_cause: str | None = None) -> Verdict:
    ratios = log10_ratios(layers) if len(layers) else pd.DataFrame()
    finite = ratios.replace([np.inf, -np.inf], np.nan) if len(ratios) else ratios
    # A zero gradient (flushed to 0 from a subnormal) is the extreme of vanishing: r = -inf.
    vanish = (ratios < -vanish_decades) if len(ratios.columns) else ratios
    explode = (ratios > explode_decades) & np.isfinite(ratios) if len(ratios.columns) else ratios
    init_ratio = _summary_ratio(finite, first=True)
    end_ratio = _summary_ratio(finite.dropna(how="all"), first=False)
    if diverged_step is not None:
        return Verdict("diverged", diverged_layer, diverged_step, None, init_ratio, end_ratio,
                       diverged_cause)
    for step in ratios.index:
        for name, hits in (("vanishing", vanish), ("exploding", explode)):
            row = hits.loc[step]
            if row.any():
                layer = int(row[row].index.max())
                fraction = float(hits.any(axis=1).mean())
                return Verdict(name, layer, int(step), fraction, init_ratio, end_ratio)
    return Verdict("healthy", None, None, 0.0 if len(ratios) else None, init_ratio, end_ratio)


def _summary_ratio(ratios: pd.DataFrame, first: bool) -> float | None:
    """The most extreme r_l at the first (or last) recorded step, signed."""
    if not len(ratios) or not len(ratios.columns):
        return None
    row = ratios.iloc[0 if first else -1]
    row = row[~row.isna()]
    if not len(row):
        return None
    return float(row.loc[row.abs().idxmax()])


def predicted_verdict(rows: pd.DataFrame, *, vanish_decades: float = 2.0,
                      explode_decades: float = 2.0) -> Verdict | None:
    """The verdict theory predicts: `diagnose`'s rule and thresholds, at step 0, on theory's
    per-layer log10 ratios to the output layer (rows indexed by layer 1..L, as diagnosis.predict
    gives them) rather than on measured norms; None where theory leaves a ratio undefined (nan).

    The ratios are predicted_log10_grad_ratio, and for a residual net the stream's
    (STREAM_RATIO), which the measured rule reads; where only a per-layer factor is predicted
    (BatchNorm's rate, predicted_chi), r_l = 1/2 sum_{k=l}^{L-1} log10 chi_k, an unpredicted
    factor counting as 1.
    """
    ratio = rows.get("predicted_log10_grad_ratio")
    if ratio is None or ratio.isna().all():
        half_log = 0.5 * np.log10(rows.predicted_chi.astype(float)).fillna(0.0)
        ratio = half_log[::-1].cumsum()[::-1] - half_log.iloc[-1]
    read = [ratio.iloc[:-1]] + ([rows[STREAM_RATIO].dropna()] if STREAM_RATIO in rows else [])
    if any(r.isna().any() for r in read):
        return None
    frame = pd.DataFrame({"layer": rows.index.astype(int), "step": 0,
                          "act_grad_norm": _norms(ratio)})
    if STREAM_RATIO in rows:
        frame[STREAM] = _norms(rows[STREAM_RATIO])
    return diagnose(frame, vanish_decades=vanish_decades, explode_decades=explode_decades)


def _norms(log10_ratio: pd.Series) -> np.ndarray:
    """10^r, capped where 10^r would overflow (-inf gives 0: the extreme of vanishing)."""
    return np.power(10.0, np.minimum(log10_ratio.to_numpy(float), _LARGEST_DECADE))

"""The free-probability prediction beside each measured Jacobian spectrum in a report: the
predicted density of ln s, from the run's config alone (diagnosis/spectrum.py maps a config onto
the theory; where it does not apply there is no curve: the report draws none rather than one
outside the theory).
"""

from __future__ import annotations

import math

import numpy as np

from winit_cli.diagnosis.spectrum import predicted_for


def predicted_curve(config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(log10 s, density per unit log10 s, atoms [A, 2] as (log10 s, mass)) for this run's
    Jacobian z_1 -> z_{L-1}, or None where the theory does not apply, from its flattened
    config. The density leaves the atoms out (orthogonal weights at k = 1, or constant slopes:
    then it is empty); an atom at 0 is in neither."""
    p = predicted_for(config)
    if p is None:
        return None
    atoms = np.array([[math.log10(s), mass] for s, mass in p.atoms]).reshape(-1, 2)
    return p.log_sv / math.log(10), p.density * math.log(10), atoms


def report_curves(runs) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{run path: predicted curve} for the runs that recorded a spectrum and have a prediction."""
    curves = {}
    for run in runs:
        if run.spectrum is not None and len(run.spectrum):
            curve = predicted_curve(run.config)
            if curve is not None:
                curves[run.path] = curve
    return curves

"""winit's probes on anyone's model and training loop: `watch(model, optimizer)` (api.py).

    layers.py     which modules are recorded, and which parameters are not
    hooks.py      forward and tensor hooks, armed only for recorded steps
    measure.py    one step as layers.csv values, with measure/probes.py's quantities
    structure.py  is the model an MLP winit's theory describes?
    summary.py    layers.csv, the verdict and the theory at the end
    folder.py     the run folder (config.yaml, tables, summary.json, runs.csv)
    probe.py      the `Watch` object that `watch` returns: step(), close()
    advise.py     `advise` and `fix_init`: gradient flow at init from one pass, and its fix
"""

from winit_cli.watcher.api import watch
from winit_cli.watcher.probe import Watch, WatchedRun

__all__ = ["Watch", "WatchedRun", "watch"]

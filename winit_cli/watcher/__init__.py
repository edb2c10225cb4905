"""winit's probes on anyone's model and training loop: `watch(model, optimizer)` (api.py).

Hooks find each recorded module's tensors; from there a watched run is recorded as a CLI run is:
the same layer views and assembler (measure/assembler.py), loss window, update ratio, divergence
check, layers.csv frame and run folder.

`advise` and `fix_init` (advise.py): gradient flow at init from one forward and backward pass,
and an LSUV-style fix, for any module.
"""

from winit_cli.watcher.api import watch
from winit_cli.watcher.probe import Watch, WatchedRun

__all__ = ["Watch", "WatchedRun", "watch"]

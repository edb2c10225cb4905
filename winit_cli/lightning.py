"""`winit.watch` for a PyTorch Lightning `Trainer`: the same probe, run folder and verdict,
with the three lines of the plain loop (watch, step, close) done by a callback::

    from winit_cli.lightning import WinitCallback

    callback = WinitCallback(every=10, out="results", scheme="kaiming_normal")
    trainer = lightning.Trainer(max_epochs=3, callbacks=[callback])
    trainer.fit(model, train_loader)
    callback.run.verdict          # healthy, vanishing, ...; callback.run.dir: the run folder

Needs the `lightning` extra (`pip install 'winit[lightning]'`); `lightning.pytorch` is used, or
the older `pytorch_lightning` package where only that is installed.

When what happens (Lightning's hooks, in the order it calls them):

- `on_train_start`: `watch(pl_module, <the first optimizer>, ...)`: the whole LightningModule is
  watched, its Linear/Conv layers recorded from step 0;
- `on_before_backward`: the loss of each (micro-)batch is added up: with gradient accumulation
  Lightning has already divided it by the number of batches accumulated, so the sum is the
  step's mean loss;
- `on_before_optimizer_step`: after the last backward of a step, before the optimizer updates
  the weights: `probe.step(loss)`, as in a plain loop (the update ratio follows the step);
- `on_train_end`: `probe.close(...)`, with the final numbers `final` maps to the logged metrics
  (`{"val_accuracy": "val_acc"}`: summary.json's val_accuracy from `self.log("val_acc", ...)`);
- `on_exception`: the run is closed as failed (or interrupted), its records kept.

Validation and sanity-check passes run under no_grad and are not recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name, where only that is installed
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError("winit_cli.lightning needs PyTorch Lightning: "
                          "pip install 'winit[lightning]'") from None
except RuntimeError as e:  # installed, but a package it imports is broken (a CUDA torchvision)
    raise ImportError(f"winit_cli.lightning: PyTorch Lightning is installed but does not import "
                      f"({e}); reinstall it and torchvision to match torch: pip install "
                      "'winit[lightning]'") from e

from winit_cli.watcher import Watch, WatchedRun, watch


class WinitCallback(Callback):
    """Records winit's per-layer gradient statistics while a `Trainer` fits (see the module's
    docstring). Keyword arguments are `winit.watch`'s (every, out, name, tensorboard, scheme,
    scheme_params, dataset, seed, ...); `final` maps summary.json's final numbers
    (test_accuracy, val_accuracy, val_loss, ...) to the names the module logs them under."""

    def __init__(self, *, final: dict[str, str] | None = None, **watch_args: Any):
        super().__init__()
        self.watch_args = watch_args
        self.final = dict(final or {})
        self.probe: Watch | None = None
        self.run: WatchedRun | None = None
        self._loss: torch.Tensor | float = 0.0

    @property
    def dir(self) -> Path | None:
        """The run folder, once training has started."""
        return self.probe.dir if self.probe is not None else None

    def on_train_start(self, trainer, pl_module) -> None:
        optimizers = trainer.optimizers
        self.probe = watch(pl_module, optimizers[0] if optimizers else None, **self.watch_args)
        self._loss = 0.0

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if self.probe is not None:
            self._loss = self._loss + loss.detach()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.probe is not None and self.run is None:
            self.probe.step(self._loss, epoch=trainer.current_epoch)
            self._loss = 0.0

    def on_train_end(self, trainer, pl_module) -> None:
        if self.probe is None or self.run is not None:
            return
        logged = trainer.callback_metrics
        values = {field: float(logged[name]) for field, name in self.final.items()
                  if name in logged}
        self.run = self.probe.close(**values)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.probe is not None and self.run is None:
            self.probe.__exit__(type(exception), exception, exception.__traceback__)
            self.run = self.probe.run

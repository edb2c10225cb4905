"""winit: a command-line lab for gradient-flow studies of weight initialization, and the same
per-layer probes for anyone's own training loop:

    import winit_cli as winit
    probe = winit.watch(model, optimizer, every=10, out="results")
    print(winit.advise(model, x))       # gradient flow at init, from one pass on a batch
    winit.fix_init(model, x)            # LSUV-style rescaling until it is healthy

`import winit_cli` stays cheap: torch is imported only when `watch`, `advise` or `fix_init`
is first used.
"""

from winit_cli._version import __version__

__all__ = ["__version__", "advise", "fix_init", "watch"]


def __getattr__(name: str):
    # PEP 562: `winit_cli.watch` is looked up on first use, so importing the package (as the
    # CLI does for `winit --help`) never imports torch.
    if name == "watch":
        from winit_cli.watcher import watch

        globals()["watch"] = watch
        return watch
    if name in ("advise", "fix_init"):
        from winit_cli.watcher import advise as module

        globals()["advise"], globals()["fix_init"] = module.advise, module.fix_init
        return globals()[name]
    raise AttributeError(f"module 'winit_cli' has no attribute {name!r}")

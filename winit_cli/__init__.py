"""winit: a command-line lab for gradient-flow studies of weight initialization, and the same
per-layer probes for anyone's own training loop:

    import winit_cli as winit
    probe = winit.watch(model, optimizer, every=10, out="results")

`import winit_cli` stays cheap: torch is imported only when `watch` is first used.
"""

from winit_cli._version import __version__

__all__ = ["__version__", "watch"]


def __getattr__(name: str):
    # PEP 562: `winit_cli.watch` is looked up on first use, so importing the package (as the
    # CLI does for `winit --help`) never imports torch.
    if name == "watch":
        from winit_cli.watcher import watch

        globals()["watch"] = watch
        return watch
    raise AttributeError(f"module 'winit_cli' has no attribute {name!r}")

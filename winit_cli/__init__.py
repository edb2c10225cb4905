"""winit: a command-line lab for gradient-flow studies of weight initialization."""

__version__ = "0.1.0"

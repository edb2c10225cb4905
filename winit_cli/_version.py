"""The package version, in a module of its own so that modules deep in the package can name it
without importing the package root (whose lazy `watch` attribute reaches back down to them)."""

__version__ = "0.1.0"

"""The package version (written into checkpoints)."""

__version__ = "0.1.0"

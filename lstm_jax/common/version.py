"""The package version, read from the installed metadata (``pyproject.toml`` is its one source)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lstm-jax")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

"""Deprecated: the old path of the checkpoint format, moved to
:mod:`lstm_jax.common.checkpoint_format` in 0.2.0. ``import lstm_jax.checkpoint_format`` and
its names keep working, with a ``FutureWarning`` naming each name's new home, until 0.4.0
(the compatibility rule in CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from lstm_jax.common.deprecation import MovedModule

_moved = MovedModule(
    __name__,
    {
        "lstm_jax.common.checkpoint_format": (
            "FORMAT",
            "FORMAT_VERSION",
            "KINDS",
            "DTYPES",
            "METADATA_KEYS",
            "PathLike",
            "CheckpointError",
            "check_fits",
            "common_dtype",
            "tensor_digest",
            "metadata",
            "array_problems",
            "save",
            "write_atomic",
            "load",
        ),
    },
    file=__file__,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)


def __dir__() -> list[str]:
    return _moved.names()

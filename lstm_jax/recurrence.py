"""Deprecated: the old path of the recurrence's options, moved to :mod:`lstm_jax.core.options`,
:mod:`lstm_jax.core.scan`, :mod:`lstm_jax.core.cudnn` in 0.2.0. ``import
lstm_jax.recurrence`` and its names keep working, with a ``FutureWarning`` naming each
name's new home, until 0.4.0 (the compatibility rule in CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from lstm_jax.common.deprecation import MovedModule

_moved = MovedModule(
    __name__,
    {
        "lstm_jax.core.options": (
            "IMPLS",
            "check_options",
        ),
        "lstm_jax.core.scan": ("BACKWARD_ROWS",),
        "lstm_jax.core.cudnn": ("on_cuda",),
    },
    file=__file__,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)


def __dir__() -> list[str]:
    return _moved.names()

"""Deprecated: the old path of nn.LSTM's options, parameter names and shapes, input checks,
moved to :mod:`lstm_jax.common.config` in 0.2.0. ``import lstm_jax.specs`` and its names
keep working, with a ``FutureWarning`` naming each name's new home, until 0.4.0 (the
compatibility rule in CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from lstm_jax.common.deprecation import MovedModule

_moved = MovedModule(
    __name__,
    {
        "lstm_jax.common.config": (
            "DIRECTION_SUFFIXES",
            "LSTM_OPTIONS",
            "LSTMConfig",
            "InputLayout",
            "check_input",
            "check_state",
            "check_seq_lengths_layout",
            "check_seq_lengths",
            "check_param_shapes",
            "modeler_param_shapes",
            "infer_config",
        ),
    },
    file=__file__,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)


def __dir__() -> list[str]:
    return _moved.names()

"""The four recurrent kinds (torch's modes LSTM, GRU, RNN_TANH, RNN_RELU), each described
once: its step, its weights' form, its state, and the ``impl`` values it runs.

The drivers (:mod:`lstm_jax.core.scan`, :mod:`lstm_jax.core.remat`, the stack, streaming)
take a :class:`Kind` and call its functions; the math of each step lives in its own
module (:mod:`~lstm_jax.core.cell`, :mod:`~lstm_jax.core.gru_cell`,
:mod:`~lstm_jax.core.rnn_cell`).

A kind's state is ``LSTMState(h, c)`` for the LSTM and the array ``h`` for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

from lstm_jax.common.config import GATE_COUNTS, MODULE_NAMES
from lstm_jax.core import cell, gru_cell, rnn_cell
from lstm_jax.core.state import CellParams, LSTMState

Array = jax.Array

# (w, state, x_t) -> (state', residual): one step, what the scan stacks besides h
Step = Callable[[Any, Any, Array], tuple[Any, Any]]


@dataclass(frozen=True)
class Kind:
    """One recurrent kind, as the drivers see it.

    Attributes:
        mode: torch's ``RNNBase.mode`` ("LSTM", "GRU", "RNN_TANH", "RNN_RELU").
        weights: torch's :class:`CellParams` -> the step's weights (once per call).
        step: one step from the input ``x_t`` (B, I).
        input_part: ``x`` (…, I) -> the input's share of the pre-activations (…, G*H),
            for one step or every step at once (``impl="hoisted"``).
        update: one step from the input's share of its pre-activations.
        handwritten: whether the kind has a hand-written derivative
            (``impl="custom_vjp"``, the LSTM's :func:`~lstm_jax.core.cell.cell_backward`).
    """

    mode: str
    weights: Callable[[CellParams], Any]
    step: Step
    input_part: Callable[[Any, Array], Array]
    update: Step
    handwritten: bool

    @property
    def name(self) -> str:
        """The torch module: "LSTM", "GRU" or "RNN"."""
        return MODULE_NAMES[self.mode]

    @property
    def gates(self) -> int:
        """G: gates stacked in the weights' rows."""
        return GATE_COUNTS[self.mode]

    @property
    def has_cell(self) -> bool:
        """Whether the state is ``LSTMState(h, c)`` rather than h alone."""
        return self.mode == "LSTM"

    def output(self, state: Any) -> Array:
        """The h of a state (the step's output)."""
        return state.h if self.has_cell else state


LSTM = Kind(
    "LSTM",
    cell.step_weights,
    cell.lstm_scan_step,
    cell.lstm_input_part,
    cell.lstm_update,
    handwritten=True,
)
GRU = Kind(
    "GRU",
    gru_cell.gru_weights,
    gru_cell.gru_cell,
    gru_cell.gru_input_part,
    gru_cell.gru_update,
    handwritten=False,
)
RNN_TANH = Kind(
    "RNN_TANH",
    rnn_cell.rnn_weights,
    rnn_cell.rnn_step("RNN_TANH"),
    rnn_cell.rnn_input_part,
    rnn_cell.rnn_update("RNN_TANH"),
    handwritten=False,
)
RNN_RELU = Kind(
    "RNN_RELU",
    rnn_cell.rnn_weights,
    rnn_cell.rnn_step("RNN_RELU"),
    rnn_cell.rnn_input_part,
    rnn_cell.rnn_update("RNN_RELU"),
    handwritten=False,
)

KINDS: dict[str, Kind] = {k.mode: k for k in (LSTM, GRU, RNN_TANH, RNN_RELU)}


def kind_of(mode: str) -> Kind:
    """The :class:`Kind` of torch's mode name."""
    return KINDS[mode]


def state_map(fn: Callable[..., Array], *states: Any) -> Any:
    """``fn`` applied leaf by leaf to states of one kind (``LSTMState`` or arrays)."""
    return jax.tree.map(fn, *states)


__all__ = ["GRU", "KINDS", "LSTM", "RNN_RELU", "RNN_TANH", "Kind", "LSTMState", "kind_of"]

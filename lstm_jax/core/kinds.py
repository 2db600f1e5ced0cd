"""The four recurrent kinds (torch's modes LSTM, GRU, RNN_TANH, RNN_RELU), each described
once: its step, its weights' form, its state, and its hand-written derivative.

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
from lstm_jax.core.time_chunks import shift_in

Array = jax.Array

# (w, state, x_t) -> (state', residual): one step, what the scan stacks besides h
Step = Callable[[Any, Any, Array], tuple[Any, Any]]


@dataclass(frozen=True)
class Derivative:
    """A kind's hand-written reverse-mode derivative, as the hand-written backward of
    :mod:`lstm_jax.core.scan` takes it. K steps' arrays are stacked on a leading axis.

    Attributes:
        step: ``(w, d_state, residual_t, before_t) -> (d_before, d_pre)``: one step's
            derivative, from the cotangent of its new state (the output's added) and the
            state it started from, to the cotangent of that state and of the step's
            pre-activations ``d_pre`` (the kind's form).
        weight_gradients: ``(w, d_pre, x, before, d_h, residuals) -> gradients`` of K
            steps, in the form of ``w`` (``d_h``: the cotangents of the steps' h).
        input_cotangent: ``(w, d_pre) -> d_x`` (K, B, I).
        states_before: ``(state_0, hs, residuals) -> the state each of K steps started
            from``, from the first state, the steps' h (K, B, H_out) and residuals.
    """

    step: Callable[[Any, Any, Any, Any], tuple[Any, Any]]
    weight_gradients: Callable[..., Any]
    input_cotangent: Callable[[Any, Any], Array]
    states_before: Callable[[Any, Array, Any], Any]


def _h_before(h0: Array, hs: Array, residuals: Any) -> Array:
    """The GRU's and RNN's states before each step: h0, then every h but the last."""
    return shift_in(h0, hs)


def _lstm_states_before(state0: LSTMState, hs: Array, res: cell.Residuals) -> LSTMState:
    return LSTMState(shift_in(state0.h, hs), shift_in(state0.c, res.cells))


def _lstm_step_backward(
    w: cell.StepWeights, d_next: LSTMState, res: cell.Residuals, before: LSTMState
) -> tuple[LSTMState, Array]:
    return cell.cell_backward(w, d_next, res.gates, res.cells, before.c)


def _lstm_weight_gradients(
    w: cell.StepWeights, d_z: Array, x: Array, before: LSTMState, d_h: Array, res: cell.Residuals
) -> cell.StepWeights:
    return cell.weight_gradients(w, d_z, x, before.h, d_h, res.gates, res.cells)


def _without_residuals(gradients: Callable[[Any, Any, Array, Array], Any]) -> Callable[..., Any]:
    """A GRU's or RNN's ``(w, d_pre, x, h_before)`` gradients as :class:`Derivative` takes them."""

    def weight_gradients(w: Any, d_pre: Any, x: Array, before: Array, d_h: Array, res: Any) -> Any:
        return gradients(w, d_pre, x, before)

    return weight_gradients


LSTM_DERIVATIVE = Derivative(
    _lstm_step_backward,
    _lstm_weight_gradients,
    lambda w, d_z: d_z @ w.w_ih_t.T,
    _lstm_states_before,
)
GRU_DERIVATIVE = Derivative(
    gru_cell.gru_backward,
    _without_residuals(gru_cell.gru_weight_gradients),
    gru_cell.gru_input_cotangent,
    _h_before,
)


def rnn_derivative(mode: str) -> Derivative:
    """The plain RNN's :class:`Derivative` for ``mode`` "RNN_TANH" or "RNN_RELU"."""
    return Derivative(
        rnn_cell.rnn_backward(mode),
        _without_residuals(rnn_cell.rnn_weight_gradients),
        rnn_cell.rnn_input_cotangent,
        _h_before,
    )


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
        derivative: the step's hand-written derivative (``impl="custom_vjp"``,
            ``"hoisted"``).
        backward_rows: rows (steps x batch) per chunk of the hand-written backward
            without remat: its weight gradients are taken chunk by chunk while the
            chunk's pre-activations' cotangents are still in cache. Measured per kind
            (the LSTM: ``benchmarks/NOTES.md``; the GRU: 512 rows against 256, a training
            step 5 % faster at the medium shape on the 2-core Intel machine; the RNN: no
            difference).
    """

    mode: str
    weights: Callable[[CellParams], Any]
    step: Step
    input_part: Callable[[Any, Array], Array]
    update: Step
    derivative: Derivative
    backward_rows: int = 256

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

    def add_to_output(self, state: Any, d_h: Array) -> Any:
        """``state`` (a cotangent) with ``d_h`` added to its h."""
        return state._replace(h=state.h + d_h) if self.has_cell else state + d_h


LSTM = Kind(
    "LSTM",
    cell.step_weights,
    cell.lstm_scan_step,
    cell.lstm_input_part,
    cell.lstm_update,
    LSTM_DERIVATIVE,
)
GRU = Kind(
    "GRU",
    gru_cell.gru_weights,
    gru_cell.gru_cell,
    gru_cell.gru_input_part,
    gru_cell.gru_update,
    GRU_DERIVATIVE,
    backward_rows=512,
)
RNN_TANH = Kind(
    "RNN_TANH",
    rnn_cell.rnn_weights,
    rnn_cell.rnn_step("RNN_TANH"),
    rnn_cell.rnn_input_part,
    rnn_cell.rnn_update("RNN_TANH"),
    rnn_derivative("RNN_TANH"),
)
RNN_RELU = Kind(
    "RNN_RELU",
    rnn_cell.rnn_weights,
    rnn_cell.rnn_step("RNN_RELU"),
    rnn_cell.rnn_input_part,
    rnn_cell.rnn_update("RNN_RELU"),
    rnn_derivative("RNN_RELU"),
)

KINDS: dict[str, Kind] = {k.mode: k for k in (LSTM, GRU, RNN_TANH, RNN_RELU)}


def kind_of(mode: str) -> Kind:
    """The :class:`Kind` of torch's mode name."""
    return KINDS[mode]


def state_map(fn: Callable[..., Array], *states: Any) -> Any:
    """``fn`` applied leaf by leaf to states of one kind (``LSTMState`` or arrays)."""
    return jax.tree.map(fn, *states)


__all__ = [
    "GRU",
    "KINDS",
    "LSTM",
    "RNN_RELU",
    "RNN_TANH",
    "Derivative",
    "Kind",
    "LSTMState",
    "kind_of",
]

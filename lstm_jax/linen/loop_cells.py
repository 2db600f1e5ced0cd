"""The package's cells inside Flax's loop transforms: ``nn.RNN`` and ``nn.scan``.

lstm_jax's cells are called as torch's are, ``cell(x, state) -> new state``
(``LSTMState(h, c)`` for the LSTM cell, ``h`` for a GRU or plain RNN cell). Flax's loop
transforms call a cell the other way round, ``cell(carry, x) -> (carry, y)``, and
``nn.RNN`` asks it for ``initialize_carry(rng, input_shape)`` and ``num_feature_axes``
(:class:`flax.linen.RNNCellBase`). :func:`loop_cell` gives, for any lstm_jax cell
class, a subclass that keeps its parameters, names and math and speaks Flax's
protocol::

    from lstm_jax.linen.loop_cells import loop_cell

    rnn = nn.RNN(loop_cell(lstm_jax.LSTMCell)(hidden_size))   # (B, T, I) -> (B, T, H)
    scan = nn.scan(loop_cell(lstm_jax.LSTMCell), variable_broadcast="params",
                   split_rngs={"params": False}, in_axes=1, out_axes=1)

With ``variable_broadcast="params"`` the scanned cell holds one set of parameters,
torch's ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (no stacked time axis),
so transfer, comparison, checkpoints and ``fit`` see the torch cell's keys. The loop
is one ``lax.scan``: compiled once, whatever T (a Python loop over the cell compiles T
copies of it). A loop over several cells with extra steps (autoregressive
predictions) is best written as ``nn.scan`` over a method of one's own module: see
``docs/guides/step-loops.md`` and ``examples/step_loop.py``.

The carry is the cell's own state, zeros by default (``LSTMState(h, c)``: the
project's (h, c) order, not Flax's (c, h)); ``y`` is the new ``h``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.core.state import LSTMState

__all__ = ["loop_cell"]


def step_output(state: Any) -> Any:
    """A cell's per-step output: ``h`` of an ``LSTMState``, the state itself otherwise."""
    return state.h if isinstance(state, LSTMState) else state


@functools.cache
def loop_cell(cell_class: type[nn.Module]) -> type[nn.Module]:
    """A subclass of ``cell_class`` (an lstm_jax linen cell: ``LSTMCell``, and the GRU
    and RNN cells) following Flax's ``RNNCellBase`` protocol.

    Arguments:
        cell_class: a linen module called ``cell(x, state=None) -> new state``.

    Returns:
        the class ``Loop<Name>``: constructed as ``cell_class`` is; called
        ``(carry, x) -> (new carry, h)``; ``initialize_carry(rng, input_shape)`` gives
        the zero state for inputs of ``input_shape`` (..., I); ``num_feature_axes`` 1.
        Its leaf rules are ``cell_class``'s (torch's names).
    """
    if not (isinstance(cell_class, type) and issubclass(cell_class, nn.Module)):
        raise TypeError(f"loop_cell: expected an lstm_jax linen cell class, got {cell_class!r}")

    def __call__(self: Any, carry: Any, x: jax.Array) -> tuple[Any, Any]:
        new = cell_class.__call__(self, x, carry)
        return new, step_output(new)

    @nn.nowrap
    def initialize_carry(self: Any, rng: Any, input_shape: tuple[int, ...]) -> Any:
        del rng  # zeros, as torch's cells start
        dtype = getattr(self, "param_dtype", jnp.float32)
        fields = {f: getattr(self, f) for f in _fields(cell_class)}
        probe = cell_class(**fields, parent=None)  # unbound: a shape probe only
        shapes = jax.eval_shape(
            lambda x: probe.init_with_output(jax.random.key(0), x)[0],
            jax.ShapeDtypeStruct(tuple(input_shape), dtype),
        )
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    namespace = {
        "__call__": __call__,
        "initialize_carry": initialize_carry,
        "num_feature_axes": property(lambda self: 1),
        "__module__": __name__,
        "__doc__": f"{cell_class.__name__} following Flax's RNNCellBase protocol "
        f"(see :func:`lstm_jax.linen.loop_cells.loop_cell`).",
    }
    return type(f"Loop{cell_class.__name__}", (cell_class, nn.RNNCellBase), namespace)


def _fields(cell_class: type) -> list[str]:
    """The dataclass fields a linen module is constructed with (not parent/name)."""
    return [f.name for f in dataclasses.fields(cell_class) if f.name not in ("parent", "name")]

"""The package's NNX cells inside Flax NNX's loop transforms: ``nnx.RNN`` and ``nnx.scan``.

As :mod:`lstm_jax.linen.loop_cells` for linen: :func:`loop_cell` gives, for an
lstm_jax NNX cell class (``lstm_jax.nnx.LSTMCell``, and the GRU and RNN cells), a
subclass called ``(carry, x) -> (carry, h)`` with ``initialize_carry(input_shape,
rngs=None)`` and ``num_feature_axes``, Flax NNX's ``RNNCellBase`` protocol::

    from lstm_jax.nnx.loop_cells import loop_cell

    cell = loop_cell(lstm_jax.nnx.LSTMCell)(input_size, hidden_size, rngs=nnx.Rngs(0))
    rnn = nnx.RNN(cell)          # (B, T, I) -> (B, T, H), one lax.scan

The cell keeps its parameters and torch's names (``rnn.cell.weight_ih``, ...).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax.linen.loop_cells import step_output

__all__ = ["loop_cell"]


@functools.cache
def loop_cell(cell_class: type[nnx.Module]) -> type[nnx.Module]:
    """A subclass of ``cell_class`` (called ``cell(x, state=None) -> new state``)
    following Flax NNX's ``RNNCellBase`` protocol; constructed as ``cell_class`` is."""
    if not (isinstance(cell_class, type) and issubclass(cell_class, nnx.Module)):
        raise TypeError(f"loop_cell: expected an lstm_jax NNX cell class, got {cell_class!r}")

    def __call__(self: Any, carry: Any, x: jax.Array) -> tuple[Any, Any]:
        new = cell_class.__call__(self, x, carry)
        return new, step_output(new)

    def initialize_carry(
        self: Any, input_shape: tuple[int, ...], rngs: Any = None, carry_init: Any = None
    ) -> Any:
        del rngs, carry_init  # zeros, as torch's cells start
        dtype = self.weight_ih.get_value().dtype
        shapes = jax.eval_shape(
            lambda x: cell_class.__call__(self, x), jax.ShapeDtypeStruct(input_shape, dtype)
        )
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    namespace = {
        "__call__": __call__,
        "initialize_carry": initialize_carry,
        "num_feature_axes": property(lambda self: 1),
        "__module__": __name__,
        "__doc__": f"{cell_class.__name__} following Flax NNX's RNNCellBase protocol "
        f"(see :func:`lstm_jax.nnx.loop_cells.loop_cell`).",
    }
    return type(f"Loop{cell_class.__name__}", (cell_class, nnx.RNNCellBase), namespace)

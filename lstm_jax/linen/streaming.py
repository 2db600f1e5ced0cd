"""``lstm_jax.streaming_step(model, variables)``: a linen LSTM or LSTMModeler as a lean
one-step-per-call function, the state carried by the caller (:mod:`lstm_jax.core.streaming`).

    step = lstm_jax.streaming_step(model, variables)
    state = step.zero_state(batch_size)        # or pass None on the first call
    for x_t in stream:                         # x_t (B, I)
        y_t, state = step(x_t, state)          # LSTM: (B, H_out); LSTMModeler: (B, O)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.common.arrays import describe_non_pair, host_call_args, is_pair
from lstm_jax.common.config import LSTMConfig, check_param_shapes
from lstm_jax.common.numbers import check_int
from lstm_jax.core.state import LSTMState
from lstm_jax.core.streaming import check_streamable, linear_head, make_step
from lstm_jax.linen.family import GRU, RNN
from lstm_jax.linen.modules import LSTM, LSTMModeler

Array = jax.Array
WHO = "streaming_step"


class StreamingStep:
    """One time step per call of a unidirectional stack, weights bound at construction.

    Call ``(x_t, state=None)``: ``x_t`` (B, I); ``state`` ``(h, c)`` of (L, B, H_out) and
    (L, B, H), zeros when None. Returns the step's output (the LSTM's (B, H_out), the
    modeler's prediction (B, O)) and the next ``LSTMState``. The state this step returned
    is donated to the next call (its buffers are reused): keep the returned one, not it.
    A state of the caller's own (zeros, a full-sequence apply's ``(h_n, c_n)``) is copied
    first, never consumed. The weights are constants of the compiled step; new weights
    need a new step. It is inference: no dropout, as torch's eval mode.
    """

    def __init__(self, config: LSTMConfig, params: Mapping[str, Any], head: Any = None):
        self.config = config
        self._dtype = jnp.result_type(*jax.tree.leaves(params))
        self._step = make_step(params, config, head, who=WHO)
        self._returned: Any = None  # the one state the step may donate

    def zero_state(self, batch_size: int) -> Any:
        """Zeros of shapes (L, B, H_out) and (L, B, H) (a GRU's or RNN's: h (L, B, H))."""
        batch_size = check_int("batch_size", batch_size, least=0, who=f"{WHO}.zero_state")
        h_shape, c_shape = self.config.state_shapes(batch_size)
        if not self.config.has_cell:
            return jnp.zeros(h_shape, self._dtype)
        return LSTMState(jnp.zeros(h_shape, self._dtype), jnp.zeros(c_shape, self._dtype))

    def __call__(self, x_t: Any, state: Any = None) -> tuple[Array, Any]:
        if state is None or state is not self._returned:
            state = self._copied(x_t, state)
        x_t, _, _ = host_call_args(WHO, x_t, None, None)  # a CPU torch tensor as numpy
        if not hasattr(x_t, "ndim"):  # a Python list
            x_t = np.asarray(x_t)
        if not self.config.has_cell:
            y, self._returned = self._step(x_t, state)
            return y, self._returned
        y, h, c = self._step(x_t, state[0], state[1])
        self._returned = LSTMState(h, c)
        return y, self._returned

    def _copied(self, x_t: Any, state: Any) -> Any:
        """A state of the caller's own (None: zeros), checked and copied: the step
        donates the state it is given."""
        if state is None:
            return self.zero_state(np.shape(x_t)[0])
        if not self.config.has_cell:
            _, h, _ = host_call_args(WHO, None, state, None)
            if isinstance(h, tuple | list) or _donated(h):
                raise (TypeError if isinstance(h, tuple | list) else ValueError)(
                    f"{WHO}: expected the state h of the {self.config.module_name} as one "
                    "array, not donated to an earlier call (pass the state that call returned)"
                )
            return jnp.array(h)
        if not is_pair(state):
            raise TypeError(
                f"{WHO}: expected state as a pair (h, c), got {describe_non_pair(state)}"
            )
        _, state, _ = host_call_args(WHO, None, state, None)  # CPU torch tensors as numpy
        if any(_donated(a) for a in state):
            raise ValueError(
                f"{WHO}: the state was donated to an earlier call (its buffers were "
                "reused): pass the state that call returned"
            )
        return LSTMState(*(jnp.array(a) for a in state))


def _donated(array: Any) -> bool:
    """Whether ``array`` is a concrete JAX array whose buffer was donated (deleted)."""
    concrete = isinstance(array, jax.Array) and not isinstance(array, jax.core.Tracer)
    return concrete and array.is_deleted()


def _params_of(variables: Any) -> Mapping[str, Any]:
    if not isinstance(variables, Mapping) or "params" not in variables:
        got = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise ValueError(f"{WHO}: expected variables as {{'params': ...}}, got {got}")
    return variables["params"]


def streaming_step(
    model: LSTM | LSTMModeler | GRU | RNN, variables: Mapping[str, Any]
) -> StreamingStep:
    """A lean step function of ``model`` with ``variables`` bound (see :class:`StreamingStep`).

    Arguments:
        model: a unidirectional :class:`~lstm_jax.LSTM`, :class:`~lstm_jax.LSTMModeler`,
            :class:`~lstm_jax.GRU` or :class:`~lstm_jax.RNN` (their state: h alone).
        variables: its ``{"params": ...}`` (e.g. from ``init`` or ``params_from_torch``).

    Returns:
        A :class:`StreamingStep`: ``step(x_t, state) -> (y_t, state)`` with x_t (B, I),
        y_t (B, H_out) (the LSTM's output) or (B, O) (the modeler's prediction), and
        ``step.zero_state(B)`` for the first call.
    """
    params = _params_of(variables)
    if isinstance(model, LSTM | LSTMModeler | GRU | RNN):
        check_streamable(model.config, WHO)
    if isinstance(model, LSTMModeler):
        config, head_params = model.config, params.get("linear", {})
        params = params.get("lstm", {})
        check_param_shapes(
            {"weight": (model.output_size, config.output_size)},
            {k: np.shape(v) for k, v in head_params.items() if k == "weight"},
            f"{WHO}: linear",
        )
        head = linear_head(head_params["weight"], head_params.get("bias"))
    elif isinstance(model, LSTM | GRU | RNN):
        config, head = model.config, None
    else:
        raise TypeError(
            f"{WHO}: expected an lstm_jax.LSTM or LSTMModeler (or a GRU or RNN), got "
            f"{type(model).__module__}.{type(model).__qualname__}"
        )
    input_size = config.input_size or int(np.shape(params.get("weight_ih_l0", ((),)))[-1])
    check_param_shapes(
        config.param_shapes(input_size), {k: np.shape(v) for k, v in params.items()}, WHO
    )
    return StreamingStep(config, params, head)

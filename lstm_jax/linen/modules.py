"""Flax linen modules mirroring ``torch.nn.LSTM`` and the lecture's ``LSTMModeler``.

They declare torch-named parameters with ``self.param`` and call
:mod:`lstm_jax.core`; they hold no math of their own. Inputs are checked
before anything is traced, with errors that say what was expected and what came.
"""

from __future__ import annotations

import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core.scope import Scope

from lstm_jax import core
from lstm_jax.common.arrays import host_call_args
from lstm_jax.common.config import (
    LSTMConfig,
    check_input,
    check_params,
    dropout_warning,
    missing_dropout_rng,
    modeler_param_shapes,
    params_of,
)
from lstm_jax.common.numbers import check_positive_int
from lstm_jax.core import LSTMState
from lstm_jax.core.init import linear_init, lstm_init
from lstm_jax.core.layout import (
    StateLike,
    as_state,
    broadcast_hidden_cell,
    check_call,
    check_param_dtype,
    lecture_view,
    run_call,
    uses_dropout,
)
from lstm_jax.core.recurrence import check_options


class _ChecksVariables:
    """``apply`` with the variables checked first (mixed into the linen stacks: LSTM,
    LSTMModeler, GRU, RNN)."""

    def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
        """``flax.linen.Module.apply``, with the variables checked first.

        Args:
            variables: ``{"params": {...}}`` (or empty, for Flax's lazy
                initialisation with ``mutable=["params"]``).
            *args: the call's arguments (``__call__``).
            **kwargs: the call's keywords and ``apply``'s (``rngs=``, ``mutable=``).

        Returns:
            What ``__call__`` returns (with the updated collections when ``mutable``).

        Raises:
            ValueError: ``variables`` without the ``{"params": ...}`` wrapper.
        """
        if variables != {}:
            params_of(variables, f"{type(self).__name__}.apply")
        return super().apply(variables, *args, **kwargs)  # type: ignore[misc]


class LSTM(_ChecksVariables, nn.Module):
    """``torch.nn.LSTM`` in Flax, with torch's parameter names, shapes and gate order.

    Attributes:
        hidden_size: H, the size of the cell state.
        num_layers: L, stacked layers.
        bias: whether each layer has ``bias_ih`` and ``bias_hh`` (two biases, as torch).
        batch_first: inputs and outputs are (B, T, F) instead of (T, B, F).
        dropout: probability of zeroing the outputs of each layer but the last,
            in training mode (``deterministic=False``, a ``'dropout'`` rng).
        bidirectional: D = 2 directions instead of 1.
        proj_size: P > 0 projects h to size P with ``weight_hr``; H_out = P or H.
        param_dtype: dtype of the parameters created by ``init``.
        unroll, impl, remat: how each layer runs over time (speed and memory knobs;
            the results are the same): explained in :mod:`lstm_jax.core.recurrence`.

    The parameters (``variables["params"]``) for layer k and suffix ``""`` or
    ``"_reverse"`` are ``weight_ih_l{k}`` (4H, I or D*H_out), ``weight_hh_l{k}``
    (4H, H_out), ``bias_ih_l{k}`` (4H,), ``bias_hh_l{k}`` (4H,) and ``weight_hr_l{k}``
    (P, H), all drawn from U(-1/sqrt(H), 1/sqrt(H)) as torch does. The call is
    documented at ``__call__`` below.

    Arrays may be JAX or numpy arrays or CPU torch tensors (read as numpy). ``init``
    takes I from ``x``; ``apply`` takes it from the variables' ``weight_ih_l0`` and
    first checks every parameter against the options (``ValueError`` naming each
    torch key and both shapes). ``deterministic=False`` with dropout needs
    ``rngs={"dropout": key}``; dropout with one layer warns, as torch does.
    """

    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    param_dtype: Any = jnp.float32
    unroll: int = 1
    impl: str = "auto"
    remat: int = 0

    def __post_init__(self) -> None:
        self.config  # noqa: B018 - validates the options at construction, as torch does
        check_options(self.impl, self.remat, self.unroll, proj_size=self.proj_size)
        check_param_dtype(self.param_dtype, "LSTM")
        built_by_user = _built_by_user(self)
        super().__post_init__()
        if built_by_user:
            _warn_dropout(self)

    @property
    def config(self) -> LSTMConfig:
        return LSTMConfig.of(self, self.hidden_size)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        initial_state: StateLike | None = None,
        *,
        deterministic: bool = True,
        seq_lengths: jax.Array | None = None,
    ) -> tuple[jax.Array, LSTMState]:
        """Run the stack over a sequence, as ``torch.nn.LSTM.forward``.

        Args:
            x: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
            initial_state: (h_0, c_0) of (D*L, B, H_out) and (D*L, B, H)
                ((D*L, H_out), (D*L, H) unbatched); zeros when None.
            deterministic: no dropout when True; False needs ``rngs={"dropout": key}``
                in ``apply``.
            seq_lengths: optional (B,) valid lengths, padding at the end: the result of
                torch's ``pack_padded_sequence`` -> LSTM -> ``pad_packed_sequence``.

        Returns:
            The pair ``(output, LSTMState(h_n, c_n))``: output (T, B, D*H_out)
            (batch-first or unbatched as the input), the final state shaped as the
            initial state.

        Raises:
            ValueError: a shape that does not fit the options or the parameters, a
                length outside [1, T], dropout without a ``'dropout'`` rng.
            TypeError: a non-floating input or state, a state that is not a pair.
        """
        return call_stack(self, self.config, x, initial_state, deterministic, seq_lengths)


def stack_input_size(module: nn.Module, x: Any, config: LSTMConfig) -> tuple[int, str]:
    """I, and where it comes from: ``x`` at ``init``; else the variables'
    ``weight_ih_l0``, once every parameter is checked against the options."""
    who = config.module_name
    from_input = int(np.shape(x)[-1]) if np.ndim(x) else 0
    if _initializing(module):
        return from_input, ""
    params = params_of(module.variables, who)
    first = params.get("weight_ih_l0")
    if first is None or np.ndim(first) != 2:
        check_params(params, config.param_shapes(from_input), who)
        return from_input, ""  # unreachable: the check names weight_ih_l0
    input_size = int(np.shape(first)[-1])
    check_params(params, config.param_shapes(input_size), who)
    return input_size, f"the variables' weight_ih_l0 of shape {tuple(np.shape(first))}"


def call_stack(
    module: Any,
    config: LSTMConfig,
    x: Any,
    initial_state: Any,
    deterministic: bool,
    seq_lengths: Any,
) -> tuple[jax.Array, Any]:
    """The call of a stack module (:class:`LSTM`, ``GRU``, ``RNN``) inside its compact
    ``__call__``: check the call, declare (or read) the torch-named parameters, run the
    core. ``config``: the module's validated options (computed once per call)."""
    who = config.module_name
    x, initial_state, seq_lengths = host_call_args(who, x, initial_state, seq_lengths)
    input_size, source = stack_input_size(module, x, config)
    call = check_call(config, x, initial_state, seq_lengths, input_size, who, source)
    init = lstm_init(config.hidden_size)
    params = {
        name: module.param(name, init, shape, module.param_dtype)
        for name, shape in config.param_shapes(input_size).items()
    }
    rng = None
    if uses_dropout(config, not deterministic):
        if not module.has_rng("dropout"):
            raise ValueError(missing_dropout_rng(config, who))
        rng = module.make_rng("dropout")
    return run_call(
        params,
        x,
        call,
        config,
        param_dtype=module.param_dtype,
        dropout_rng=rng,
        unroll=module.unroll,
        impl=module.impl,
        remat=module.remat,
    )


class Linear(nn.Module):
    """``torch.nn.Linear`` with torch's layout: ``weight`` (O, F), ``bias`` (O,)."""

    features: int
    use_bias: bool = True
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        init = linear_init(fan_in)
        weight = self.param("weight", init, (self.features, fan_in), self.param_dtype)
        bias = (
            self.param("bias", init, (self.features,), self.param_dtype) if self.use_bias else None
        )
        return core.linear(
            weight.astype(x.dtype), None if bias is None else bias.astype(x.dtype), x
        )


class LSTMModeler(_ChecksVariables, nn.Module):
    """The lecture's ``LSTMModeler`` (``nn.LSTM`` + ``nn.Linear`` head) in Flax.

    Submodules ``lstm`` (:class:`LSTM`) and ``linear`` (head of shape (O, D*H_out)),
    so ``variables["params"]`` flattens on "." to torch's ``state_dict`` keys.
    The LSTM options (and the speed knobs ``unroll``, ``impl``, ``remat``) are
    :class:`LSTM`'s.

    The call is documented at ``__call__`` below. As :class:`LSTM`: arrays or CPU
    torch tensors; ``apply`` checks the whole parameter tree (``lstm.*`` and
    ``linear.*``) against the options first, and ``init`` checks ``x``'s features
    against ``input_size``.
    """

    input_size: int
    hidden_layer_size: int
    output_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    param_dtype: Any = jnp.float32
    unroll: int = 1
    impl: str = "auto"
    remat: int = 0

    def __post_init__(self) -> None:
        self.config  # noqa: B018 - validates the options at construction
        check_options(self.impl, self.remat, self.unroll, "LSTMModeler", self.proj_size)
        check_positive_int("output_size", self.output_size)
        check_param_dtype(self.param_dtype, "LSTMModeler")
        built_by_user = _built_by_user(self)
        super().__post_init__()
        if built_by_user:
            _warn_dropout(self)

    @property
    def config(self) -> LSTMConfig:
        return LSTMConfig.of(self, self.hidden_layer_size, self.input_size)

    def setup(self) -> None:
        self.lstm = LSTM(
            self.hidden_layer_size,
            **self.config.lstm_options(),
            param_dtype=self.param_dtype,
            unroll=self.unroll,
            impl=self.impl,
            remat=self.remat,
        )
        self.linear = Linear(self.output_size, param_dtype=self.param_dtype)

    def __call__(
        self,
        x: jax.Array,
        hidden_cell: StateLike | None = None,
        *,
        deterministic: bool = True,
        seq_lengths: jax.Array | None = None,
    ) -> tuple[jax.Array, LSTMState]:
        """The lecture's ``forward`` with the carry made explicit.

        Args:
            x: as the lecture's ``forward``: a 1-D (T,) or 2-D (T, I) input is one
                sequence of T steps with batch 1 (``x.view(len(x), 1, -1)``); a 3-D
                input is a (T, B, I) batch ((B, T, I) with ``batch_first``).
            hidden_cell: the torch model's stored ``hidden_cell`` made explicit:
                (h, c) of (D*L, B, H_out), (D*L, B, H); zeros when None; a batch of 1
                is broadcast to B (the lecture stores (1, 1, H) zeros).
            deterministic: no dropout when True; False needs ``rngs={"dropout": key}``.
            seq_lengths: optional (B,) lengths; the prediction is taken at each row's
                last valid step.

        Returns:
            The pair ``(prediction, hidden_cell)``: the last step's prediction, (O,)
            for a 1-D/2-D input or (B, O) for a 3-D one, and the new ``hidden_cell``
            (``LSTMState``): pass it back to carry the state across calls, as the
            lecture's model does.

        Raises:
            ValueError: a shape that does not fit the options or the parameters.
            TypeError: a non-floating input or state, a state that is not a pair.
        """
        who = "LSTMModeler"
        config = self.config
        x, hidden_cell, seq_lengths = host_call_args(who, x, hidden_cell, seq_lengths)
        if not _initializing(self):
            expected = modeler_param_shapes(config, self.output_size)
            check_params(params_of(self.variables, who), expected, who)
        single_sequence = np.ndim(x) < 3
        x = lecture_view(x, config, who)
        check_input(config, x.shape, str(x.dtype), True, self.input_size, who)
        if uses_dropout(config, not deterministic) and not self.has_rng("dropout"):
            raise ValueError(missing_dropout_rng(config, who))
        batch = x.shape[0] if config.batch_first else x.shape[1]
        if hidden_cell is not None:
            hidden_cell = broadcast_hidden_cell(as_state(hidden_cell, "LSTMModeler"), batch)
        out, hidden_cell = self.lstm(
            x, hidden_cell, deterministic=deterministic, seq_lengths=seq_lengths
        )
        time_major = jnp.swapaxes(out, 0, 1) if config.batch_first else out
        lengths = None if seq_lengths is None else jnp.atleast_1d(jnp.asarray(seq_lengths))
        y = self.linear(core.last_valid_step(time_major, lengths))
        return (y[0] if single_sequence else y), hidden_cell


def _initializing(module: nn.Module) -> bool:
    """Whether the module creates its parameters now (``init``, or an ``apply`` with
    ``"params"`` mutable and none there yet) rather than reading given ones."""
    return module.is_mutable_collection("params") and not module.variables.get("params")


def _built_by_user(module: nn.Module) -> bool:
    """Called before Flax resolves ``parent``: whether the module is being constructed
    (no ``parent`` given) rather than cloned (``clone``, which ``init``/``apply`` use,
    passes a scope, a module or None)."""
    return not (module.parent is None or isinstance(module.parent, nn.Module | Scope))


def _warn_dropout(module: LSTM | LSTMModeler) -> None:
    """torch's ``UserWarning`` for dropout with one layer, at construction: at top
    level, or inside a user's module while it initializes (it is rebuilt on every
    ``apply``); not for the LSTM an ``LSTMModeler`` builds (the modeler warned)."""
    message = dropout_warning(module.config)
    if message is None:
        return
    parent = module.parent
    if parent is None or (
        isinstance(parent, nn.Module)
        and not isinstance(parent, LSTMModeler)
        and parent.scope is not None
        and parent.is_initializing()
    ):
        warnings.warn(message, UserWarning, stacklevel=5)  # the user's line

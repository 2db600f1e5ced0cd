"""Flax NNX modules mirroring ``torch.nn.LSTM``, ``torch.nn.Linear`` and the lecture's
``LSTMModeler``: built eagerly from torch's constructor arguments, one ``nnx.Param``
per torch parameter under torch's name, and torch's ``state_dict`` methods.

They hold no math: a call is checked and laid out by :mod:`lstm_jax.core.layout` and
computed by :func:`lstm_jax.core.lstm`, as the linen modules are.

Training mode follows NNX's conventions (torch's ``model.train()`` / ``model.eval()``
are NNX's too): a module starts in training mode (``deterministic=False``, as a torch
module starts with ``training=True``); inter-layer dropout draws its masks from the
``dropout`` stream of the ``nnx.Rngs`` given at construction.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax import core
from lstm_jax.common.arrays import describe_non_pair, host_call_args, host_tensor_to_numpy, is_pair
from lstm_jax.common.config import LSTMConfig, dropout_warning, missing_dropout_rng
from lstm_jax.common.numbers import check_positive_int
from lstm_jax.core import LSTMState
from lstm_jax.core.dtypes import check_float64_allowed, is_prng_key
from lstm_jax.core.init import linear_init, lstm_init
from lstm_jax.core.layout import (
    StateLike,
    as_state,
    broadcast_hidden_cell,
    check_call,
    check_param_dtype,
    dtype_of,
    is_floating,
    lecture_view,
    run_call,
    uses_dropout,
)
from lstm_jax.core.options import check_options
from lstm_jax.nnx.state_dict import TorchStateDict

NNX_DROPOUT_REMEDY = (
    "the module is in training mode (as after model.train()) and has no 'dropout' stream: "
    "build it with rngs=nnx.Rngs(0) (its default stream serves both) or "
    "nnx.Rngs(params=0, dropout=1) (an LSTM call also takes rngs=nnx.Rngs(dropout=1)); "
    "model.eval() turns dropout off"
)


def has_stream(rngs: nnx.Rngs, name: str) -> bool:
    """Whether ``rngs`` can draw from stream ``name`` (its own, or the ``default`` one)."""
    streams = dict(rngs.items())
    return name in streams or "default" in streams


def check_rngs(rngs: Any, who: str) -> nnx.Rngs:
    """The constructor's ``rngs``: an ``nnx.Rngs`` that can draw parameters."""
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(
            f"{who}: expected rngs=nnx.Rngs(...), e.g. nnx.Rngs(0), got {type(rngs).__name__}"
        )
    if not has_stream(rngs, "params"):
        raise ValueError(
            f"{who}: expected rngs with a 'params' stream to draw the parameters from "
            f"(nnx.Rngs(0) or nnx.Rngs(params=0)), got nnx.Rngs with streams {sorted(rngs)}"
        )
    return rngs


def check_nnx_param_dtype(param_dtype: Any, who: str) -> None:
    """A floating ``param_dtype`` that JAX can hold now: an NNX module creates its
    parameters at construction, so float64 needs JAX's 64-bit mode already on."""
    check_param_dtype(param_dtype, who)
    check_float64_allowed(
        param_dtype, f"{who}: param_dtype", " before building the module, or use float32"
    )


def dropout_key(
    stream: nnx.RngStream | None,
    rngs: nnx.Rngs | nnx.RngStream | jax.Array | None,
    config: LSTMConfig,
    who: str,
) -> jax.Array:
    """A dropout key: from ``rngs`` given to the call (``nnx.Rngs``, a stream or a key),
    else from the module's own ``dropout`` stream (None: it was built without one)."""
    if isinstance(rngs, nnx.Rngs):
        if not has_stream(rngs, "dropout"):
            message = missing_dropout_rng(config, who, NNX_DROPOUT_REMEDY)
            raise ValueError(f"{message} (the call's rngs has streams {sorted(rngs)})")
        return rngs.dropout()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    if rngs is not None:
        if not is_prng_key(rngs):
            raise TypeError(
                f"{who}: expected rngs as nnx.Rngs, an nnx.RngStream or a PRNG key such as "
                f"jax.random.key(0), got {type(rngs).__name__} of shape {np.shape(rngs)}"
            )
        return jnp.asarray(rngs)
    if stream is None:
        raise ValueError(missing_dropout_rng(config, who, NNX_DROPOUT_REMEDY))
    return stream()


def build_stack(
    module: Any,
    config: LSTMConfig,
    param_dtype: Any,
    unroll: int,
    impl: str,
    remat: int,
    rngs: nnx.Rngs,
) -> None:
    """A stack module's construction (the LSTM's, GRU's, RNN's), called from its
    ``__init__``: the options checked, torch's attributes, one ``nnx.Param`` per torch
    parameter drawn as torch does, training mode, the dropout stream when needed."""
    who = config.module_name
    check_options(impl, remat, unroll, who, config.proj_size, config.mode)
    check_nnx_param_dtype(param_dtype, who)
    check_rngs(rngs, who)
    message = dropout_warning(config)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=3)  # as torch's, at the user's line
    module.config = config
    module.input_size, module.hidden_size = config.input_size, config.hidden_size
    for name, value in config.lstm_options().items():  # torch's attributes (RNNBase's)
        setattr(module, name, value)
    module.unroll, module.impl, module.remat = unroll, impl, remat
    init = lstm_init(config.hidden_size)
    for name, shape in config.param_shapes().items():
        setattr(module, name, nnx.Param(init(rngs.params(), shape, param_dtype)))
    module.deterministic = False  # training mode, as a new torch module
    needs_stream = uses_dropout(config, True) and has_stream(rngs, "dropout")
    module.rngs = rngs.dropout.fork() if needs_stream else nnx.data(None)  # None: see call


def call_module(
    module: Any,
    x: Any,
    hx: Any,
    seq_lengths: Any,
    deterministic: bool | None,
    rngs: nnx.Rngs | nnx.RngStream | jax.Array | None,
) -> Any:
    """A stack module's call (the LSTM's, GRU's, RNN's): the inputs checked against its
    ``config``, its mode or ``deterministic``, its dropout key, then the core's stack."""
    config = module.config
    who = config.module_name
    x, hx, seq_lengths = host_call_args(who, x, hx, seq_lengths)
    call = check_call(config, x, hx, seq_lengths, int(config.input_size or 0), who)
    training = not (module.deterministic if deterministic is None else deterministic)
    key = dropout_key(module.rngs, rngs, config, who) if uses_dropout(config, training) else None
    params = module.params()
    return run_call(
        params,
        x,
        call,
        config,
        param_dtype=params["weight_ih_l0"].dtype,
        dropout_rng=key,
        unroll=module.unroll,
        impl=module.impl,
        remat=module.remat,
    )


class StackModule(TorchStateDict, nnx.Module):
    """What the NNX stacks (LSTM, GRU, RNN) share: their checked ``config`` and their
    parameters as the core takes them (built by :func:`build_stack`).

    Attributes:
        config: the module's options, checked.
        deterministic: the mode: False in training (``train()``, a new module's), True
            in evaluation (``eval()``).
        rngs: the forked ``'dropout'`` stream, or None without dropout.
    """

    config: LSTMConfig
    deterministic: bool
    rngs: Any

    def params(self) -> dict[str, jax.Array]:
        """The parameters, as the core takes them.

        Returns:
            ``{torch name: array}`` (the core's ``params`` mapping).
        """
        return {name: getattr(self, name).get_value() for name in self.config.param_shapes()}


class LSTM(StackModule, TorchStateDict, nnx.Module):
    """``torch.nn.LSTM`` in Flax NNX: torch's constructor, parameters, shapes and gate order.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, *, rngs)``, as torch's, plus the
    keyword-only ``param_dtype`` (storage dtype, float32) and the speed knobs
    ``unroll``, ``impl`` and ``remat`` of :class:`lstm_jax.LSTM` (results do not depend
    on them; see :mod:`lstm_jax.core.recurrence`).

    The parameters (attributes, ``nnx.Param``) for layer k and suffix ``""`` or
    ``"_reverse"`` are ``weight_ih_l{k}`` (4H, I or D*H_out), ``weight_hh_l{k}``
    (4H, H_out), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (4H,) with ``bias``, and
    ``weight_hr_l{k}`` (P, H) with ``proj_size`` P > 0; all drawn from
    U(-1/sqrt(H), 1/sqrt(H)) as torch does, with keys from ``rngs.params``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        param_dtype: Any = jnp.float32,
        unroll: int = 1,
        impl: str = "auto",
        remat: int = 0,
        rngs: nnx.Rngs,
    ) -> None:
        config = LSTMConfig(
            hidden_size=hidden_size,
            input_size=input_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            proj_size=proj_size,
        )
        build_stack(self, config, param_dtype, unroll, impl, remat, rngs)

    def __call__(
        self,
        x: Any,
        hx: StateLike | None = None,
        *,
        seq_lengths: Any = None,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
    ) -> tuple[jax.Array, LSTMState]:
        """Run the stack over a sequence, as ``torch.nn.LSTM.forward``.

        Args:
            x: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
            hx: (h_0, c_0) of (D*L, B, H_out) and (D*L, B, H) ((D*L, H_out), (D*L, H)
                unbatched); zeros when None.
            seq_lengths: optional (B,) valid lengths, padding at the end: the result of
                torch's ``pack_padded_sequence`` -> LSTM -> ``pad_packed_sequence``.
            deterministic: overrides the module's mode (``train()`` / ``eval()``) for
                this call.
            rngs: the dropout keys for this call (``nnx.Rngs``, a stream or a key).

        Returns:
            The pair ``(output, LSTMState(h_n, c_n))``: output (T, B, D*H_out)
            (batch-first or unbatched as the input), the final state shaped as ``hx``.

        Raises:
            ValueError: a shape that does not fit the module, a length outside
                [1, T], dropout in training mode without a ``'dropout'`` stream.
            TypeError: a non-floating input or state, a state that is not a pair.
        """
        return call_module(self, x, hx, seq_lengths, deterministic, rngs)


class Linear(TorchStateDict, nnx.Module):
    """``torch.nn.Linear(in_features, out_features, bias=True)`` in Flax NNX.

    Parameters ``weight`` (O, F) and ``bias`` (O,), torch's layout, drawn from
    U(-1/sqrt(F), 1/sqrt(F)) as torch does. Call: (…, F) -> (…, O).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            check_positive_int(f"Linear: {name}", value)
        if not isinstance(bias, bool):
            raise TypeError(f"Linear: bias should be a bool, got {bias!r}")
        check_nnx_param_dtype(param_dtype, "Linear")
        check_rngs(rngs, "Linear")
        self.in_features, self.out_features = in_features, out_features
        init = linear_init(in_features)
        self.weight = nnx.Param(init(rngs.params(), (out_features, in_features), param_dtype))
        self.bias = nnx.Param(init(rngs.params(), (out_features,), param_dtype)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = host_tensor_to_numpy(x, "Linear", "input")
        if not is_floating(dtype_of(x)):
            raise TypeError(f"Linear: expected a floating point input, got dtype {dtype_of(x)}")
        if np.shape(x)[-1:] != (self.in_features,):
            raise ValueError(
                f"Linear: expected input with last dimension {self.in_features} "
                f"(in_features), got shape {np.shape(x)}"
            )
        x = jnp.asarray(x)
        weight = self.weight.get_value().astype(x.dtype)
        bias = None if self.bias is None else self.bias.get_value().astype(x.dtype)
        return core.linear(weight, bias, x)


class HiddenCell(nnx.Variable):
    """The lecture's stored ``hidden_cell``: module state, not a parameter (as in torch,
    where it is a plain attribute outside ``state_dict``). Its value is an
    ``LSTMState(h, c)`` or None (zeros)."""


def stored_hidden_cell(value: Any) -> LSTMState | None:
    """A value assigned to ``hidden_cell``: None, or a pair (h, c) of floating arrays
    (jax, numpy, torch tensors) -> ``LSTMState`` of JAX arrays."""
    if value is None:
        return None
    if not is_pair(value):
        got = describe_non_pair(value)
        raise TypeError(f"LSTMModeler: expected hidden_cell as a pair (h, c) or None, got {got}")
    h, c = (host_tensor_to_numpy(v, "LSTMModeler", "hidden_cell") for v in value)
    for name, v in (("h", h), ("c", c)):
        if not is_floating(dtype_of(v)):
            raise TypeError(
                f"LSTMModeler: expected a floating point hidden_cell {name}, "
                f"got dtype {dtype_of(v)}"
            )
    return as_state((h, c), "LSTMModeler")


class LSTMModeler(TorchStateDict, nnx.Module):
    """The lecture's ``LSTMModeler`` (``nn.LSTM`` + ``nn.Linear`` head) in Flax NNX.

    ``LSTMModeler(input_size, hidden_layer_size, output_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, *, rngs)``, plus
    :class:`LSTM`'s ``param_dtype``, ``unroll``, ``impl``, ``remat``.

    Attributes:
        lstm: the :class:`LSTM`, so ``state_dict()`` has the torch model's ``lstm.*`` keys.
        linear: the head, a :class:`Linear` (O, D*H_out): ``linear.*``.
        hidden_cell: the stored state, as the lecture's attribute: (h, c) of
            (D*L, 1, H_out) and (D*L, 1, H) zeros at first; assign ``(h, c)`` (or None
            for zeros) before a call and read the new state after it, also inside
            ``nnx.jit`` / ``nnx.grad`` (it is module state, a :class:`HiddenCell`).
    """

    def __init__(
        self,
        input_size: int,
        hidden_layer_size: int,
        output_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        param_dtype: Any = jnp.float32,
        unroll: int = 1,
        impl: str = "auto",
        remat: int = 0,
        rngs: nnx.Rngs,
    ) -> None:
        check_positive_int("output_size", output_size)
        check_options(impl, remat, unroll, "LSTMModeler", proj_size)  # named as the modeler
        check_nnx_param_dtype(param_dtype, "LSTMModeler")
        check_rngs(rngs, "LSTMModeler")
        self.lstm = LSTM(
            input_size,
            hidden_layer_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            param_dtype=param_dtype,
            unroll=unroll,
            impl=impl,
            remat=remat,
            rngs=rngs,
        )
        self.config = self.lstm.config
        self.input_size, self.hidden_layer_size = input_size, hidden_layer_size
        self.output_size = output_size
        features = self.config.num_directions * self.config.output_size
        self.linear = Linear(features, output_size, param_dtype=param_dtype, rngs=rngs)
        self._hidden_cell = HiddenCell(self.zero_hidden_cell())

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "hidden_cell":  # NNX's own __setattr__ would refuse data in an attribute
            object.__setattr__(self, name, value)  # the property's setter
            return
        super().__setattr__(name, value)

    @property
    def hidden_cell(self) -> LSTMState | None:
        """The stored (h, c) (an ``LSTMState``), or None (zeros at the next call)."""
        return self._hidden_cell.get_value()

    @hidden_cell.setter
    def hidden_cell(self, value: Any) -> None:  # the lecture's `model.hidden_cell = (h, c)`
        self._hidden_cell.set_value(stored_hidden_cell(value))

    def zero_hidden_cell(self, batch_size: int = 1) -> LSTMState:
        """Zeros for ``hidden_cell``.

        Args:
            batch_size: B.

        Returns:
            ``LSTMState(h, c)`` of zeros, (D*L, B, H_out) and (D*L, B, H), in the
            parameters' dtype.
        """
        dtype = self.lstm.params()["weight_ih_l0"].dtype
        h_shape, c_shape = self.config.state_shapes(batch_size)
        return LSTMState(jnp.zeros(h_shape, dtype), jnp.zeros(c_shape, dtype))

    def __call__(self, x: Any, *, seq_lengths: Any = None) -> jax.Array:
        """The lecture's ``forward``: from the stored ``hidden_cell``, which it replaces.

        Args:
            x: a 1-D (T,) or 2-D (T, I) input is one sequence of T steps with batch 1
                (``x.view(len(x), 1, -1)``); a 3-D input is a (T, B, I) batch
                ((B, T, I) with ``batch_first``). A stored batch of 1 is broadcast to B.
            seq_lengths: optional (B,) lengths; the prediction is taken at each row's
                last valid step.

        Returns:
            The last step's prediction, (O,) for a 1-D/2-D input or (B, O) for a 3-D
            one; the new state is stored in ``hidden_cell``.

        Raises:
            ValueError: a shape that does not fit the module or the stored state.
            TypeError: a non-floating input.
        """
        config, who = self.config, "LSTMModeler"
        x, _, seq_lengths = host_call_args(who, x, None, seq_lengths)
        single_sequence = np.ndim(x) < 3
        x = lecture_view(x, config, who)
        batch = x.shape[0] if config.batch_first else x.shape[1]
        state = self.hidden_cell
        if state is not None:
            state = broadcast_hidden_cell(state, batch)
        check_call(config, x, state, seq_lengths, self.input_size, who)  # errors name the model
        out, self.hidden_cell = self.lstm(x, state, seq_lengths=seq_lengths)
        time_major = jnp.swapaxes(out, 0, 1) if config.batch_first else out
        lengths = None if seq_lengths is None else jnp.atleast_1d(jnp.asarray(seq_lengths))
        y = self.linear(core.last_valid_step(time_major, lengths))
        return y[0] if single_sequence else y

"""Between linen and NNX: the same model in both APIs, through torch's keys.

Both families name their parameters as torch does, so one model goes across as its
``state_dict``: ``lstm_jax.params_to_torch`` on the linen side,
:func:`lstm_jax.nnx.load_state_dict` on the NNX side (and back with
:func:`lstm_jax.nnx.state_dict` and ``lstm_jax.params_from_torch``), bitwise.

Example::

    nnx_model = lstm_jax.nnx.from_linen(linen_model, variables)      # the NNX twin
    linen_model, variables = lstm_jax.nnx.to_linen(nnx_model)         # and back

For lstm_jax's own models (``LSTM``, ``LSTMModeler``, ``LSTMCell``) the twin is built from the
configuration; for a model of one's own pass the other side's model
(``into=`` an NNX module, or ``linen_model=`` with ``example=`` its init arguments).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flax import nnx

from lstm_jax.interop.transfer import params_from_torch, params_to_torch
from lstm_jax.linen import family as linen_family
from lstm_jax.linen import family_cells as linen_family_cells
from lstm_jax.linen import modules as linen
from lstm_jax.linen.cell import LSTMCell as LinenCell
from lstm_jax.nnx import family, modules
from lstm_jax.nnx.cell import LSTMCell
from lstm_jax.nnx.state_dict import load_state_dict, state_dict

_KNOBS = ("unroll", "impl", "remat")
# the recurrent family's twins, by class name: GRU, RNN, GRUCell, RNNCell
_FAMILY = ("GRU", "RNN", "GRUCell", "RNNCell")
LINEN_FAMILY = (
    linen_family.GRU,
    linen_family.RNN,
    linen_family_cells.GRUCell,
    linen_family_cells.RNNCell,
)
NNX_FAMILY = (family.GRU, family.RNN, family.GRUCell, family.RNNCell)
LINEN_BUILTINS = (linen.LSTM, linen.LSTMModeler, LinenCell, *LINEN_FAMILY)
NNX_BUILTINS = (modules.LSTM, modules.LSTMModeler, LSTMCell, *NNX_FAMILY)


def _family_twin(model: Any, to_nnx: bool, rngs: nnx.Rngs, input_size: int = 0) -> Any:
    """The other API's GRU, RNN or cell of the same options (``to_nnx``: linen -> NNX)."""
    name = type(model).__name__
    options: dict[str, Any] = {"bias": model.bias}
    if name in ("RNN", "RNNCell"):
        options["nonlinearity"] = model.nonlinearity
    if not name.endswith("Cell"):
        options |= {"num_layers": model.num_layers, "batch_first": model.batch_first,
                    "dropout": model.dropout, "bidirectional": model.bidirectional}  # fmt: skip
        options |= {knob: getattr(model, knob) for knob in _KNOBS}
    if to_nnx:
        dtype = model.param_dtype
        return getattr(family, name)(input_size, model.hidden_size, **options,
                                     param_dtype=dtype, rngs=rngs)  # fmt: skip
    dtype = model.state_dict()["weight_ih_l0" if not name.endswith("Cell") else "weight_ih"].dtype
    module = linen_family if not name.endswith("Cell") else linen_family_cells
    return getattr(module, name)(model.hidden_size, **options, param_dtype=dtype)


def _nnx_twin(linen_model: Any, rngs: nnx.Rngs, input_size: int) -> nnx.Module:
    if isinstance(linen_model, LINEN_FAMILY):
        return _family_twin(linen_model, True, rngs, input_size)  # type: ignore[no-any-return]
    if isinstance(linen_model, LinenCell):
        return LSTMCell(
            input_size,
            linen_model.hidden_size,
            linen_model.bias,
            param_dtype=linen_model.param_dtype,
            rngs=rngs,
        )
    knobs = {name: getattr(linen_model, name) for name in _KNOBS}
    options = linen_model.config.lstm_options()
    dtype = linen_model.param_dtype
    if isinstance(linen_model, linen.LSTMModeler):
        return modules.LSTMModeler(
            linen_model.input_size,
            linen_model.hidden_layer_size,
            linen_model.output_size,
            **options,
            param_dtype=dtype,
            rngs=rngs,
            **knobs,
        )
    return modules.LSTM(
        input_size, linen_model.hidden_size, **options, param_dtype=dtype, rngs=rngs, **knobs
    )


def _linen_twin(module: Any) -> Any:
    if isinstance(module, NNX_FAMILY):
        return _family_twin(module, False, nnx.Rngs(0))
    if isinstance(module, LSTMCell):
        dtype = module.state_dict()["weight_ih"].dtype
        return LinenCell(module.hidden_size, module.bias, param_dtype=dtype)
    lstm = module.lstm if isinstance(module, modules.LSTMModeler) else module
    knobs = {name: getattr(lstm, name) for name in _KNOBS}
    dtype = lstm.params()["weight_ih_l0"].dtype
    options = {**module.config.lstm_options(), "param_dtype": dtype}
    if isinstance(module, modules.LSTMModeler):
        return linen.LSTMModeler(
            module.input_size, module.hidden_layer_size, module.output_size, **options, **knobs
        )
    return linen.LSTM(module.hidden_size, **options, **knobs)


def from_linen(
    linen_model: Any,
    variables: Mapping[str, Any],
    *,
    into: nnx.Module | None = None,
    example: Sequence[Any] | None = None,
    rngs: nnx.Rngs | None = None,
) -> nnx.Module:
    """The NNX module holding linen ``variables``, bitwise.

    Arguments:
        linen_model: the linen model ``variables`` belong to.
        variables: ``{"params": ...}``.
        into: an NNX module of the same configuration to load them into (needed for
            a model of one's own); for ``lstm_jax.LSTM`` / ``LSTMModeler`` / ``LSTMCell`` it may be
            left out and the NNX twin is built (``rngs`` only seeds its throwaway init).
        example: the linen model's init arguments, for a model of one's own.

    Returns:
        ``into`` (or the new twin), its parameters replaced (strictly: every key).
    """
    if isinstance(linen_model, LINEN_BUILTINS):
        sd = params_to_torch(variables)
    else:
        sd = params_to_torch(variables, linen_model, example=example)
    if into is None:
        if not isinstance(linen_model, LINEN_BUILTINS):
            raise TypeError(
                f"from_linen: expected into= an NNX module for a {type(linen_model).__name__} "
                f"(only lstm_jax's LSTM, LSTMModeler and LSTMCell have a built-in NNX twin)"
            )
        first = next(k for k in ("lstm.weight_ih_l0", "weight_ih_l0", "weight_ih") if k in sd)
        input_size = sd[first]
        into = _nnx_twin(linen_model, rngs or nnx.Rngs(0), int(input_size.shape[-1]))
    load_state_dict(into, sd, strict=True)
    return into


def to_linen(
    module: nnx.Module, linen_model: Any = None, *, example: Sequence[Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """The linen model and variables of an NNX module, bitwise.

    Arguments:
        module: an NNX module whose attributes carry torch's names.
        linen_model: its linen counterpart; built from the configuration for
            ``lstm_jax.nnx.LSTM`` / ``LSTMModeler`` / ``LSTMCell`` when None.
        example: the linen model's init arguments, for a model of one's own.

    Returns:
        ``(linen_model, variables)`` with ``variables = {"params": ...}``.
    """
    sd = state_dict(module)
    if linen_model is None:
        if not isinstance(module, NNX_BUILTINS):
            raise TypeError(
                f"to_linen: expected linen_model= for a {type(module).__name__} "
                f"(only lstm_jax.nnx.LSTM, LSTMModeler and LSTMCell have a built-in linen twin)"
            )
        linen_model = _linen_twin(module)
    if isinstance(linen_model, LINEN_BUILTINS):
        return linen_model, params_from_torch(sd, linen_model)
    return linen_model, params_from_torch(sd, linen_model, example=example)

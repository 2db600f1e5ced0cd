"""Flax NNX models in :func:`lstm_jax.fit`: split into pure state, trained as one compiled
program as a linen model is, and the result written back into the module (in place).

Generic over ``flax.nnx``: nothing here knows lstm_jax's own NNX modules. The module
is reduced to a :class:`~lstm_jax.train.model.TrainModel` over the variables
``{"params": its nnx.Param values (a pure nnx.State), "nnx_state": the rest}``; each batch merges
them (``nnx.merge``) and calls the module:

- training mode (``module.train()``) with fit's ``rng``, which reseeds the module's rng
  streams for that step (fit folds it with the global step); ``module.eval()`` without;
- a module with a ``hidden_cell`` attribute (the lecture's stored state) has it reset
  to None (zeros) before every batch, as ``lstm_torch.fit`` resets its model's; with
  ``stateful=True`` that attribute is the carry from batch to batch;
- any other module is called ``module(x, **kw)`` (or ``module(x, carry, **kw)`` when
  stateful); its first output is the prediction when it returns a tuple.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.training.train_state import TrainState

from lstm_jax.common.errors import TrainingDiverged
from lstm_jax.train.model import TrainModel, _call_signature

REST = "nnx_state"
_NO_CARRY = object()


def is_nnx_module(model: Any) -> bool:
    return isinstance(model, nnx.Module)


def _layout(module: nnx.Module, batch_first: bool | None) -> bool:
    own = getattr(
        module, "batch_first", getattr(getattr(module, "config", None), "batch_first", None)
    )
    if isinstance(own, bool):
        if batch_first is not None and batch_first != own:
            raise ValueError(
                f"batch_first: {type(module).__name__} sets its own layout (batch_first={own}), "
                f"got batch_first={batch_first}"
            )
        return own
    if batch_first is not None and not isinstance(batch_first, bool):
        raise TypeError(f"batch_first: expected None or a bool, got {batch_first!r}")
    return bool(batch_first)


def _reseed(module: nnx.Module, key: jax.Array) -> None:
    """Reseed every rng stream of ``module`` from ``key`` (a fresh key per step)."""
    tags = {node.tag for _, node in nnx.iter_graph(module) if isinstance(node, nnx.RngStream)}
    if tags:
        nnx.reseed(module, **dict.fromkeys(tags, key))  # type: ignore[arg-type]


def nnx_train_model(
    module: nnx.Module, batch_first: bool | None = None
) -> tuple[TrainModel, dict[str, Any]]:
    """``module`` as a :class:`TrainModel` and its variables ``{"params", "nnx_state"}``."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)  # type: ignore[misc]
    keywords, takes_carry = _call_signature(module)  # type: ignore[arg-type]
    stores_state = hasattr(module, "hidden_cell")
    # the NNX LSTMModeler (not importable here): its stored hidden_cell and sizes; a model
    # of one's own may name its vocabulary input_size
    sizes = ("input_size", "output_size")
    lecture = stores_state and all(isinstance(getattr(module, a, None), int) for a in sizes)

    def apply(variables: dict[str, Any], x: jax.Array, carry: Any = _NO_CARRY, **kw: Any) -> Any:
        # the rest rides in the variables; a TrainState carries params only: the module's
        model: Any = nnx.merge(graphdef, variables["params"], variables.get(REST, rest), copy=True)
        rngs = kw.pop("rngs", None)
        if rngs is None:
            model.eval()
        else:
            model.train()
            _reseed(model, rngs["dropout"])
        if stores_state:
            model.hidden_cell = None if carry is _NO_CARRY else carry
            out = model(x, **kw)
            return out if carry is _NO_CARRY else (out, model.hidden_cell)
        return model(x, **kw) if carry is _NO_CARRY else model(x, carry, **kw)

    train_model = TrainModel(
        identity=graphdef,
        apply=apply,
        batch_first=_layout(module, batch_first),
        keywords=keywords,
        takes_carry=stores_state or takes_carry,
        input_size=getattr(module, "input_size", None) if lecture else None,
        output_size=getattr(module, "output_size", None) if lecture else None,
        dropout=None,
        name=type(module).__name__,
    )
    return train_model, {"params": nnx.as_pure(params), REST: rest}


def _train_state(optimizer: nnx.Optimizer, train_model: TrainModel, params: Any) -> TrainState:
    """An ``nnx.Optimizer``'s transformation, state and step as a TrainState over ``params``."""
    if optimizer.wrt is not nnx.Param:
        raise ValueError(
            f"variables: expected an nnx.Optimizer(model, tx, wrt=nnx.Param), got "
            f"wrt={optimizer.wrt!r}"
        )
    return TrainState(
        step=int(optimizer.step.get_value()),
        apply_fn=train_model.apply,
        params=params,
        tx=optimizer.tx,
        opt_state=nnx.as_pure(optimizer.opt_state),
    )


def _continue(optimizer: nnx.Optimizer, state: TrainState) -> None:
    """Write a TrainState's optimizer state and step back into the ``nnx.Optimizer``."""
    holders = jax.tree.leaves(optimizer.opt_state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    for holder, value in zip(holders, jax.tree.leaves(state.opt_state), strict=True):
        holder.set_value(value)
    optimizer.step.set_value(jnp.asarray(state.step, optimizer.step.get_value().dtype))


def fit_nnx(
    fit: Callable[..., tuple[Any, Any]],
    module: nnx.Module,
    variables: Any,
    xs: Any,
    ys: Any,
    *,
    batch_first: bool | None,
    **options: Any,
) -> tuple[nnx.Module, Any]:
    """:func:`lstm_jax.fit` for an NNX module: trains its parameters in place.

    ``variables``: None (with ``optimizer=`` a spec or an Optax transformation), or an
    ``nnx.Optimizer(module, tx, wrt=nnx.Param)``, whose state and step continue and are
    updated in place (the data order goes on at epoch ``step // steps_per_epoch``, as
    with a TrainState). Returns ``(module, losses)``; on
    :class:`~lstm_jax.common.errors.TrainingDiverged` the module keeps the last finite
    parameters.
    """
    if variables is not None and not isinstance(variables, nnx.Optimizer):
        raise TypeError(
            f"variables: an NNX module holds its own parameters: pass None "
            f"(fit(model, None, xs, ys, optimizer=...)) or its nnx.Optimizer, got "
            f"{type(variables).__name__}"
        )
    train_model, state = nnx_train_model(module, batch_first)
    start: Any = (
        state if variables is None else _train_state(variables, train_model, state["params"])
    )
    try:
        trained, losses = fit(train_model, start, xs, ys, **options)
    except TrainingDiverged as err:
        params = err.variables.params if variables is not None else err.variables["params"]
        nnx.update(module, params)
        raise
    if variables is None:
        nnx.update(module, trained["params"])
    else:
        nnx.update(module, trained.params)
        _continue(variables, trained)
    return module, losses

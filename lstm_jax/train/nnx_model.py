"""Flax NNX models in :func:`lstm_jax.fit`: split into pure state, trained as one compiled
program as a linen model is, and the result written back into the module (in place).

Generic over ``flax.nnx``: nothing here knows lstm_jax's own NNX modules. The module
is reduced to a :class:`~lstm_jax.train.model.TrainModel` over the variables
``{"params": its nnx.Param values (a pure nnx.State), "batch_stats": its nnx.BatchStat
values (BatchNorm's running statistics, when it has any), "nnx_state": the rest}``; each
batch merges them (``nnx.merge``) and calls the module:

- training mode (``module.train()``, the default: BatchNorm's statistics are updated and
  carried as the linen ``batch_stats`` are), fit's ``rng`` reseeding the module's rng
  streams for that step (fit folds it with the global step); a module with dropout
  (``nnx.Dropout``, an LSTM with dropout between layers) needs that ``rng`` and is
  refused without; ``module.eval()`` with ``fit(..., deterministic=True)``;
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
STATS = "batch_stats"
_NO_CARRY = object()


class StatsTrainState(TrainState):
    """A TrainState that also carries the module's batch statistics (None without)."""

    batch_stats: Any = None


class StaticGraph:
    """An ``nnx.GraphDef`` as a static argument of the compiled run, also when the module
    holds unhashable attributes (``nnx.Conv(padding=[(2, 2)])``: lists), as ``nnx.jit``
    accepts them: hashed by its printed form, compared by equality."""

    def __init__(self, graphdef: Any) -> None:
        self.graphdef = graphdef
        try:
            self._hash = hash(graphdef)
        except TypeError:  # a list-valued attribute: its printed form is hashable
            self._hash = hash(repr(graphdef))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StaticGraph) and bool(self.graphdef == other.graphdef)

    def __repr__(self) -> str:
        return repr(self.graphdef)


def has_dropout(module: nnx.Module) -> bool:
    """Whether ``module`` draws dropout in training mode: an ``nnx.Dropout`` of positive
    rate, or a recurrent layer with ``dropout`` between its ``num_layers`` > 1 layers."""
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Dropout) and node.rate > 0:
            return True
        rate, layers = getattr(node, "dropout", None), getattr(node, "num_layers", None)
        if isinstance(rate, int | float) and isinstance(layers, int) and rate > 0 and layers > 1:
            return True
    return False


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
    """``module`` as a :class:`TrainModel` and its variables ``{"params", "batch_stats"
    (when it has any), "nnx_state"}``."""
    split = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    graphdef, params, stats, rest = split  # type: ignore[misc]
    keywords, takes_carry = _call_signature(module)  # type: ignore[arg-type]
    stores_state = hasattr(module, "hidden_cell")
    # the NNX LSTMModeler (not importable here): its stored hidden_cell and sizes; a model
    # of one's own may name its vocabulary input_size
    sizes = ("input_size", "output_size")
    lecture = stores_state and all(isinstance(getattr(module, a, None), int) for a in sizes)

    def apply(
        variables: dict[str, Any],
        x: jax.Array,
        carry: Any = _NO_CARRY,
        *,
        training: bool = False,
        mutable: Any = None,
        **kw: Any,
    ) -> Any:
        # the rest rides in the variables; a TrainState carries params only: the module's
        model: Any = nnx.merge(
            graphdef,
            variables["params"],
            variables.get(STATS, stats),
            variables.get(REST, rest),
            copy=True,
        )
        rngs = kw.pop("rngs", None)
        if training:
            model.train()
            if rngs is not None:
                _reseed(model, rngs["dropout"])
        else:
            model.eval()
        if stores_state:
            model.hidden_cell = None if carry is _NO_CARRY else carry
            out = model(x, **kw)
            out = out if carry is _NO_CARRY else (out, model.hidden_cell)
        else:
            out = model(x, **kw) if carry is _NO_CARRY else model(x, carry, **kw)
        if mutable:
            return out, {STATS: nnx.as_pure(nnx.state(model, nnx.BatchStat))}
        return out

    train_model = TrainModel(
        identity=StaticGraph(graphdef),
        apply=apply,
        batch_first=_layout(module, batch_first),
        keywords=keywords,
        takes_carry=stores_state or takes_carry,
        input_size=getattr(module, "input_size", None) if lecture else None,
        output_size=getattr(module, "output_size", None) if lecture else None,
        dropout=has_dropout(module),
        name=type(module).__name__,
        mode_keyword=True,
    )
    variables = {"params": nnx.as_pure(params), REST: rest}
    if len(jax.tree.leaves(stats)):
        variables[STATS] = nnx.as_pure(stats)
    return train_model, variables


def _train_state(
    optimizer: nnx.Optimizer, train_model: TrainModel, params: Any, batch_stats: Any = None
) -> TrainState:
    """An ``nnx.Optimizer``'s transformation, state and step as a TrainState over ``params``."""
    if optimizer.wrt is not nnx.Param:
        raise ValueError(
            f"variables: expected an nnx.Optimizer(model, tx, wrt=nnx.Param), got "
            f"wrt={optimizer.wrt!r}"
        )
    return StatsTrainState(
        step=int(optimizer.step.get_value()),
        apply_fn=train_model.apply,
        params=params,
        tx=optimizer.tx,
        opt_state=nnx.as_pure(optimizer.opt_state),
        batch_stats=batch_stats,
    )


def _continue(optimizer: nnx.Optimizer, state: TrainState) -> None:
    """Write a TrainState's optimizer state and step back into the ``nnx.Optimizer``."""
    holders = jax.tree.leaves(optimizer.opt_state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    for holder, value in zip(holders, jax.tree.leaves(state.opt_state), strict=True):
        holder.set_value(value)
    optimizer.step.set_value(jnp.asarray(state.step, optimizer.step.get_value().dtype))


def _write_back(module: nnx.Module, trained: Any) -> None:
    """The trained parameters (and batch statistics) into ``module``, in place."""
    if isinstance(trained, TrainState):
        nnx.update(module, trained.params)
        stats = getattr(trained, "batch_stats", None)
    else:
        nnx.update(module, trained["params"])
        stats = trained.get(STATS)
    if stats is not None:
        nnx.update(module, stats)


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
        state
        if variables is None
        else _train_state(variables, train_model, state["params"], state.get(STATS))
    )
    try:
        trained, losses = fit(train_model, start, xs, ys, **options)
    except TrainingDiverged as err:
        _write_back(module, err.variables)
        raise
    _write_back(module, trained)
    if variables is not None:
        _continue(variables, trained)
    return module, losses

"""Where a ``fit`` call starts and what it hands back: Flax variables or a ``TrainState``.

- Flax variables (``{"params": ..., other collections}``) and an optimizer: the
  optimizer state starts fresh, at step 0; ``fit`` returns variables.
- A ``flax.training.train_state.TrainState``: its ``tx``, ``opt_state`` and ``step``
  continue (Adam's moments, the step count, and the data order: the run goes on
  at epoch ``step // steps_per_epoch``); ``fit`` returns the updated TrainState.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from flax.training.train_state import TrainState

from lstm_jax.train.optimizers import as_optax, with_extra_args

PyTree = Any


class RunCarry(NamedTuple):
    """What the compiled run carries from step to step (and from chunk to chunk).

    Attributes:
        params: the parameters (the last finite ones once a step failed).
        opt_state: the optimizer's state.
        step: () int32, the global step: steps done before this call plus this call's.
        ok: () bool, no step has failed yet (later steps are not applied once one has).
        bad_step: () int32, the first failing global step, -1 while none.
        bad_loss: () the loss of that step (NaN while none).
        stats: the collections the model updates in training (``{"batch_stats": ...}``:
            BatchNorm's running statistics), carried from step to step; None without.
    """

    params: PyTree
    opt_state: PyTree
    step: jax.Array
    ok: jax.Array
    bad_step: jax.Array
    bad_loss: jax.Array
    stats: PyTree = None


# the variable collections training updates (in training mode) instead of passing through
UPDATED_COLLECTIONS = ("batch_stats",)


def updated_collections(rest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The collections of ``rest`` that training updates (:data:`UPDATED_COLLECTIONS`), or
    None when it has none."""
    found = {k: rest[k] for k in UPDATED_COLLECTIONS if k in rest}
    return found or None


@dataclass(frozen=True)
class Start:
    """A call's starting point.

    Attributes:
        params: ``variables["params"]`` or ``state.params``.
        rest: the other variable collections (passed through unchanged).
        opt_state: the optimizer state to continue from.
        step: steps already done (0 for variables).
        optimizer: the Optax transformation, its ``update`` taking ``value=``.
        spec: what the caller passed as the optimizer (a spec, an Optax object or
            the TrainState's ``tx``), for the checkpoint fingerprint.
        train_state: the TrainState given, or None.
    """

    params: PyTree
    rest: Mapping[str, Any]
    opt_state: PyTree
    step: int
    optimizer: optax.GradientTransformationExtraArgs
    spec: Any
    train_state: TrainState | None


def start_from(variables: Any, optimizer: Any) -> Start:
    """Read the starting point from ``variables`` (Flax variables or a TrainState)."""
    if isinstance(variables, TrainState):
        # a TrainState subclass with batch_stats (Flax's BatchNorm recipe) carries them
        held = getattr(variables, "batch_stats", None)
        if optimizer is not None and optimizer is not variables.tx:
            raise ValueError(
                "optimizer: a TrainState carries its own optimizer (state.tx); pass "
                "optimizer=None (or state.tx) with it, got another one"
            )
        tx = as_optax(variables.tx)
        step = int(np.asarray(variables.step))
        return Start(
            params=variables.params,
            rest={} if held is None else {"batch_stats": held},
            opt_state=variables.opt_state,
            step=step,
            optimizer=with_extra_args(tx),
            spec=variables.tx,
            train_state=variables,
        )
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise TypeError(
            f"variables: expected Flax variables (a mapping with a 'params' entry) or a "
            f"flax.training.train_state.TrainState, got {type(variables).__name__}"
        )
    if optimizer is None:
        raise TypeError(
            "optimizer: expected an Optax transformation or an lstm_jax.common.optim spec "
            "(required with variables; a TrainState carries its own), got None"
        )
    tx = with_extra_args(as_optax(optimizer))
    params = variables["params"]
    return Start(
        params=params,
        rest={k: v for k, v in variables.items() if k != "params"},
        opt_state=tx.init(params),
        step=0,
        optimizer=tx,
        spec=optimizer,
        train_state=None,
    )


def check_step_variables(variables: Any) -> None:
    """A train step's ``variables``: Flax variables, ``{"params": ...}``."""
    if not isinstance(variables, Mapping) or "params" not in variables:
        got = (
            f"a mapping with keys {sorted(map(str, variables))}"
            if isinstance(variables, Mapping)
            else type(variables).__name__
        )
        raise TypeError(
            f"train_step: expected variables of the form {{'params': ...}} (a TrainState's "
            f"{{'params': state.params}}), got {got}"
        )


def check_opt_state(
    optimizer: optax.GradientTransformation, params: PyTree, opt_state: Any
) -> None:
    """``opt_state`` must be the state ``optimizer.init(params)`` gives (its structure and
    leaf shapes); checked on shapes alone, so also under ``jax.jit``."""
    expected = jax.eval_shape(optimizer.init, params)
    if jax.tree.structure(expected) != jax.tree.structure(opt_state):  # type: ignore[operator]
        want, got = _kind(expected), _kind(opt_state)
        if want == got:  # the same states over another tree (FrozenDict vs dict, other keys)
            got = f"{got} over parameters of another tree structure"
        raise TypeError(
            f"opt_state: expected this optimizer's state (optimizer.init(variables['params']): "
            f"{want}), got {got}"
        )
    for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(opt_state), strict=True):
        if tuple(want.shape) != tuple(np.shape(got)):
            raise ValueError(
                f"opt_state: expected the state of optimizer.init(variables['params']), got "
                f"one of other parameters (a leaf of shape {tuple(np.shape(got))} where these "
                f"parameters give {tuple(want.shape)})"
            )


def _kind(tree: Any) -> str:
    """An optimizer state's kind: its (nested) state classes, e.g. ``(ScaleByAdamState,
    EmptyState)``."""
    if isinstance(tree, tuple) and not hasattr(tree, "_fields"):
        return "(" + ", ".join(_kind(part) for part in tree) + ")"
    return "None" if tree is None else type(tree).__name__


def finish(start: Start, carry: RunCarry) -> Any:
    """What ``fit`` returns: variables, or the TrainState continued."""
    stats = carry.stats or {}
    if start.train_state is not None:
        extra = {"batch_stats": stats["batch_stats"]} if "batch_stats" in stats else {}
        return start.train_state.replace(
            step=int(carry.step), params=carry.params, opt_state=carry.opt_state, **extra
        )
    return {**start.rest, **stats, "params": carry.params}


def first_epoch(start: Start, steps_per_epoch: int) -> int:
    """The epoch a continued run starts at (its order is that epoch's draw)."""
    epoch, partial = divmod(start.step, steps_per_epoch)
    if partial:
        raise ValueError(
            f"variables: the TrainState's step {start.step} is not a whole number of epochs "
            f"of {steps_per_epoch} steps (N / batch_size rounded up), so fit cannot tell which "
            f"epoch's data order comes next; pass state.replace(step=k * {steps_per_epoch})"
        )
    return epoch

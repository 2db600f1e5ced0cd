"""Optax training: one step as a pure function, and a whole in-memory run as one program.

The pieces, each usable alone:

- :func:`step_update` (and :func:`update`, its three-result form) — one optimizer
  step on one batch: loss and gradients, then the Optax update (the batch loss
  passed as ``value=``, for ``optax.contrib.reduce_on_plateau``);
- :func:`make_train_step` — that step jitted, for users writing their own loop;
- :func:`fit` — the driver: the per-epoch orders are drawn with numpy
  (:func:`lstm_jax.common.data.epoch_orders`, shared with ``lstm_torch.fit``) and
  passed in as an (epochs, N) index array; epochs and batches run as nested
  ``lax.scan`` inside ONE ``jax.jit`` (:func:`_train_run`), compiled once per model,
  optimizer, loss, batch size, data shapes and number of epochs (a second call
  with the same ones reuses it). With ``checkpoint_every=k`` (or ``progress=True``)
  the same compiled program runs k epochs at a time, saving between the chunks.

The model is reduced first to a :class:`~lstm_jax.train.model.TrainModel` (its
``apply`` and layout); losses live in :mod:`lstm_jax.train.losses`, the starting
point (variables or a ``TrainState``) in :mod:`lstm_jax.train.state`, checkpoints
in :mod:`lstm_jax.train.checkpointing`.

An epoch of N samples is ``N // B`` full batches, scanned, then one remainder
batch of ``N % B`` samples (a second, static shape in the same program) when
that is not 0, as ``DataLoader(drop_last=False)`` would give.

Divergence: a step whose loss or updated parameters are not finite is not
applied; every later step is skipped too (a flag in the scan's carry), and
:func:`fit` raises :class:`~lstm_jax.common.errors.TrainingDiverged` afterwards with
the last finite variables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from lstm_jax.common.data import (
    BatchPlan,
    batch_plan,
    check_finite_data,
    check_positive_int,
    check_stateful,
    epoch_orders,
    prepare_data,
    prepare_seq_lengths,
)
from lstm_jax.common.disk import check_writable
from lstm_jax.common.errors import (
    CheckpointDirBusy,
    CheckpointWriteError,
    Preempted,
    TrainingDiverged,
    TrainingInterrupted,
    WorkerLost,
)
from lstm_jax.common.numbers import check_flag
from lstm_jax.common.optim import is_spec
from lstm_jax.common.resume import (
    KEEP_CHECKPOINTS,
    check_checkpointing,
    chunks,
    describe,
    digest,
    logger,
    resumed_message,
)
from lstm_jax.common.run_lock import RunLock
from lstm_jax.common.stop_signals import StopRequests
from lstm_jax.core.dtypes import check_float64_allowed, is_prng_key
from lstm_jax.train import parallel
from lstm_jax.train.checkpointing import Checkpoints, describe_tree, key_data
from lstm_jax.train.distributed import lost_workers_reported
from lstm_jax.train.losses import check_jax_loss, loss_and_aux, loss_value
from lstm_jax.train.model import TrainModel, as_train_model, zeros_like_tree
from lstm_jax.train.nnx_model import fit_nnx, is_nnx_module
from lstm_jax.train.optimizers import as_optax, with_extra_args
from lstm_jax.train.state import (
    RunCarry,
    Start,
    check_opt_state,
    check_step_variables,
    finish,
    first_epoch,
    start_from,
    updated_collections,
)

Array = jax.Array
PyTree = Any

# Progress without checkpoints: the bar advances in about this many chunks.
PROGRESS_CHUNKS = 20

__all__ = ["fit", "loss_value", "make_train_step", "step_update", "update"]


class StepResult(NamedTuple):
    """One step's results: new params and optimizer state, the batch loss (before the
    step), the loss's aux (None for a plain loss), the model's new carry (None
    unless stateful) and the collections the step updated (``{"batch_stats": ...}`` in
    training mode; None without)."""

    params: PyTree
    opt_state: PyTree
    loss: Array
    aux: Any
    carry: PyTree
    updates: Any = None


def _floating(a: Any) -> bool:
    return bool(jnp.issubdtype(a.dtype, jnp.floating))


def _forward(
    model: TrainModel,
    compute_dtype: Any,
    params: PyTree,
    rest: Mapping[str, Any],
    x: Array,
    carry: PyTree | None,
    stateful: bool,
    seq_lengths: Array | None,
    rng: Array | None,
) -> tuple[Array, PyTree | None, dict[str, Any] | None]:
    """The prediction (in the parameters' dtype), the new carry and the updated
    collections (training mode: batch_stats) for one batch."""
    if compute_dtype is None:
        return model.prediction_and_updates(
            {**rest, "params": params},
            x,
            carry,
            stateful=stateful,
            seq_lengths=seq_lengths,
            rng=rng,
        )
    master = jax.tree.leaves(params)[0].dtype
    low = jax.tree.map(lambda a: a.astype(compute_dtype) if _floating(a) else a, params)
    forward = model.clone_with_param_dtype(compute_dtype) if model.clone_with_param_dtype else model
    forward = dataclasses.replace(forward, training=model.training)
    prediction, carry, updates = forward.prediction_and_updates(
        {**rest, "params": low},
        x.astype(compute_dtype) if _floating(x) else x,
        carry,
        stateful=stateful,
        seq_lengths=seq_lengths,
        rng=rng,
    )
    return (prediction.astype(master) if _floating(prediction) else prediction), carry, updates


def step_update(
    model: Any,
    optimizer: optax.GradientTransformation,
    loss: Any,
    params: PyTree,
    rest: Mapping[str, Any],
    opt_state: PyTree,
    x: Array,
    y: Array,
    rng: Array | None = None,
    compute_dtype: Any = None,
    *,
    carry: PyTree | None = None,
    stateful: bool = False,
    seq_lengths: Array | None = None,
) -> StepResult:
    """One training step on one batch.

    Arguments:
        model: any ``flax.linen.Module`` (or a :class:`~lstm_jax.train.model.TrainModel`).
        optimizer: an Optax transformation (or a spec); its ``update`` gets the batch
            loss as ``value=``, the gradients as ``grad=`` and the batch's loss function
            of the parameters as ``value_fn=`` when it takes extra arguments
            (``reduce_on_plateau``, ``optax.lbfgs``).
        loss: ``"mse"``, ``"cross_entropy"`` or a callable ``loss(prediction, target)``
            returning a scalar or ``(scalar, aux)``.
        params: ``variables["params"]``; ``rest``: the other collections (unchanged).
        opt_state: ``optimizer``'s state.
        x: one batch in the model's layout: (T, B, ...) ((B, T, ...) with
            ``batch_first``); integer inputs (tokens) as integers.
        y: (B, ...) targets: (B, O) or (B,) labels for the lecture's model.
        rng: a dropout key (training mode), or None (deterministic).
        compute_dtype: None computes in the parameters' dtype. A float dtype (e.g.
            ``jnp.bfloat16``): mixed precision. The forward and backward passes run
            on ``params`` and float inputs cast to it (the model cloned with that
            ``param_dtype`` when it has one); the prediction is cast back to the
            parameters' dtype for the loss, so the gradients arrive in that dtype
            (the cast's transpose) and the optimizer updates the master parameters.
        carry: stateful training: the model's state from the batch before (None: the
            model's zeros); its gradient is stopped (truncated backpropagation).
        stateful: call the model as ``apply(variables, x, carry)`` -> ``(prediction,
            carry)``.
        seq_lengths: (B,) valid lengths, passed to the model as ``seq_lengths=``.

    Returns:
        :class:`StepResult`: new params, new opt_state, the batch loss before the
        step, the loss's aux, the model's new carry (gradient stopped).
    """
    model = as_train_model(model)
    if rng is not None and not is_prng_key(rng):
        raise TypeError(
            f"rng: expected a JAX PRNG key such as jax.random.key(0) or None, got "
            f"{getattr(rng, 'dtype', type(rng).__name__)} of shape {np.shape(rng)}"
        )
    if carry is not None:
        carry = lax.stop_gradient(carry)  # as repackage_hidden: no gradient into the past

    def objective(p: PyTree) -> tuple[Array, tuple[Any, PyTree, Any]]:
        prediction, new_carry, updates = _forward(
            model, compute_dtype, p, rest, x, carry, stateful, seq_lengths, rng
        )
        value, aux = loss_and_aux(loss, prediction, y)
        return value, (aux, new_carry, updates)

    (value, (aux, new_carry, updates)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    param_updates, opt_state = with_extra_args(as_optax(optimizer)).update(
        grads, opt_state, params, value=value, grad=grads, value_fn=lambda p: objective(p)[0]
    )
    if new_carry is not None:
        new_carry = lax.stop_gradient(new_carry)
    new_params = optax.apply_updates(params, param_updates)
    return StepResult(new_params, opt_state, value, aux, new_carry, lax.stop_gradient(updates))


def update(
    model: Any,
    optimizer: optax.GradientTransformation,
    loss: Any,
    params: PyTree,
    rest: Mapping[str, Any],
    opt_state: PyTree,
    x: Array,
    y: Array,
    rng: Array | None = None,
    compute_dtype: Any = None,
) -> tuple[PyTree, PyTree, Array]:
    """:func:`step_update` without carry: (new params, new opt_state, the batch loss).

    Raises:
        TypeError: a model that updates ``batch_stats`` in training (their update would
            be dropped here: :func:`step_update` and :func:`make_train_step` return it).
    """
    result = step_update(model, optimizer, loss, params, rest, opt_state, x, y, rng, compute_dtype)
    if result.updates:
        raise TypeError(
            f"update: {as_train_model(model).name} updates a variable collection in training "
            f"({', '.join(result.updates)}), which update's (params, opt_state, loss) would "
            f"drop: use step_update (its .updates) or make_train_step (its variables)"
        )
    return result.params, result.opt_state, result.loss


def make_train_step(
    model: Any,
    optimizer: Any,
    loss: Any = "mse",
    compute_dtype: Any = None,
    *,
    batch_first: bool | None = None,
    stateful: bool = False,
) -> Callable[..., tuple[Any, ...]]:
    """A jitted ``train_step(variables, opt_state, x, y, rng=None, *, carry=None,
    seq_lengths=None)`` for a hand-written loop (see :func:`step_update` for the shapes).

    ``model``: any ``flax.linen.Module``. ``optimizer``: an Optax transformation (also
    ``optax.MultiSteps``) or an :mod:`lstm_jax.common.optim` spec; start from
    ``opt_state = lstm_jax.as_optax(optimizer).init(variables["params"])``. ``loss``:
    a name or a callable (see :func:`step_update`). ``compute_dtype``: as :func:`fit`'s.
    ``batch_first``: the layout of a model without its own ``batch_first``, used
    only to check it; ``x`` arrives in the model's layout.

    Returns:
        The step function. It returns ``(variables, opt_state, loss)``; ``loss`` is
        ``(loss, aux)`` when the callable loss returns an aux; with ``stateful=True`` the
        model's new carry comes fourth: ``(variables, opt_state, loss, carry)``, to pass
        as ``carry=`` next.
    """
    train_model = as_train_model(model, batch_first)
    opt = with_extra_args(as_optax(optimizer))
    loss = check_jax_loss(loss)
    compute = _compute_dtype(compute_dtype)
    _check_stateful_model(train_model, stateful)

    @jax.jit
    def train_step(
        variables: Mapping[str, Any],
        opt_state: PyTree,
        x: Array,
        y: Array,
        rng: Array | None = None,
        *,
        carry: PyTree | None = None,
        seq_lengths: Array | None = None,
    ) -> tuple[Any, ...]:
        check_step_variables(variables)
        check_opt_state(opt, variables["params"], opt_state)
        rest = {k: v for k, v in variables.items() if k != "params"}
        if stateful and carry is None:
            carry = _zero_carry(train_model, compute, variables["params"], rest, x, seq_lengths)
        result = step_update(
            train_model,
            opt,
            loss,
            variables["params"],
            rest,
            opt_state,
            x,
            y,
            rng,
            compute,
            carry=carry,
            stateful=stateful,
            seq_lengths=seq_lengths,
        )
        value = result.loss if result.aux is None else (result.loss, result.aux)
        out = ({**rest, **(result.updates or {}), "params": result.params}, result.opt_state, value)
        return (*out, result.carry) if stateful else out

    return train_step


def _check_stateful_model(model: TrainModel, stateful: bool) -> None:
    if check_flag("stateful", stateful) and not model.takes_carry:
        raise TypeError(
            f"stateful=True: expected {model.name}.__call__ to take a carry after x "
            f"(apply(variables, x, carry) -> (prediction, carry)), got a call without one"
        )


def _zero_carry(
    model: TrainModel,
    compute_dtype: Any,
    params: PyTree,
    rest: Mapping[str, Any],
    x: Array,
    seq_lengths: Array | None,
) -> PyTree:
    """Zeros shaped as the carry the model returns for ``x`` when called with None
    (asked in eval mode: the shape is the same, and training mode would need the
    dropout rng that only the steps get)."""
    model = dataclasses.replace(model, training=False)

    def carry_of(p: PyTree, batch: Array, lengths: Array | None) -> PyTree:
        return _forward(model, compute_dtype, p, rest, batch, None, True, lengths, None)[1]

    return zeros_like_tree(jax.eval_shape(carry_of, params, x, seq_lengths))


def _all_finite(tree: PyTree) -> Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree) if _floating(leaf)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(keep_new: Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(keep_new, a, b), new, old)


class RunData(NamedTuple):
    """The arrays a run reads: ``rest`` collections, xs (N, ...), ys (N, ...),
    seq_lengths (N,) or None, the dropout key or None."""

    rest: Mapping[str, Any]
    xs: Array | np.ndarray  # numpy until placed on the devices
    ys: Array | np.ndarray
    seq_lengths: Array | np.ndarray | None
    rng: Array | None


class BatchCarry(NamedTuple):
    """The carry across the batches of one epoch: the run's, the model's state
    (stateful runs; None otherwise) and the epoch's loss so far."""

    run: RunCarry
    model_state: PyTree
    total: Array


class LoopState(NamedTuple):
    """What :func:`_train_run` carries from one window of steps to the next: the
    run's carry, the model's state within the current epoch (stateful runs; None
    otherwise), the current epoch's loss so far, and the call's (E,) per-epoch losses
    (each written when its epoch ends)."""

    run: RunCarry
    model_state: PyTree
    total: Array
    losses: Array


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "optimizer",
        "loss",
        "batch_size",
        "mesh",
        "compute_dtype",
        "stateful",
    ),
)
def _train_run(
    model: TrainModel,
    optimizer: optax.GradientTransformationExtraArgs,
    loss: Any,
    batch_size: int,
    state: LoopState,
    data: RunData,
    orders: Array,
    begin: Array,
    count: Array,
    mesh: parallel.DataParallel | None = None,
    compute_dtype: np.dtype | None = None,
    stateful: bool = False,
) -> LoopState:
    """A window of a call's steps as one program: steps ``begin`` to ``begin + count``
    of the call's epochs, whose orders are ``orders`` (E, N); returns the state after
    them.

    A step is one batch: an epoch's U steps are its ``N // B`` full batches, then its
    remainder batch when ``N % B`` is not 0; step ``i`` is batch ``i % U`` of epoch
    ``i // U``. ``begin`` and ``count`` are traced (a loop with a traced trip count):
    one compiled program serves every window, so ``fit`` can cut a run anywhere (into
    chunks of about a second, to see a stop request; at its checkpoints) without
    compiling again, and any cut computes the same bits as one window of all steps.

    With a ``mesh``, every batch is split over its batch axis (the rest is
    replicated, see :mod:`lstm_jax.train.parallel`). Stateful runs start each epoch
    from the model's zero carry and pass each batch's final carry to the next.
    """
    carry = state.run
    xs, ys, seq_lengths = jnp.asarray(data.xs), jnp.asarray(data.ys), data.seq_lengths
    lengths_all = None if seq_lengths is None else jnp.asarray(seq_lengths)  # traced here
    n = orders.shape[1]
    full_batches, remainder = divmod(n, batch_size)
    total_dtype = jax.tree.leaves(carry.params)[0].dtype

    def batch(index: Array) -> tuple[Array, Array, Array | None]:
        if mesh is None:
            x, y = xs[index], ys[index]
            lengths = None if lengths_all is None else lengths_all[index]
        else:
            x, y, lengths = mesh.take((xs, ys, lengths_all), index)
        if not model.batch_first and x.ndim >= 2:
            x = jnp.swapaxes(x, 0, 1)
        return x, y, lengths

    def guarded_step(c: BatchCarry, index: Array) -> BatchCarry:
        run = c.run
        x, y, lengths = batch(index)
        key = None if data.rng is None else jax.random.fold_in(data.rng, run.step)
        result = step_update(
            model,
            optimizer,
            loss,
            run.params,
            {**data.rest, **(run.stats or {})},
            run.opt_state,
            x,
            y,
            key,
            compute_dtype,
            carry=c.model_state,
            stateful=stateful,
            seq_lengths=lengths,
        )
        structure = jax.tree.structure(result.carry)
        # jax's stubs declare no __ne__ on PyTreeDef; the comparison is jax's own
        if stateful and structure != jax.tree.structure(c.model_state):  # type: ignore[operator]
            raise TypeError(
                f"stateful training: {model.name} returned a carry of structure "
                f"{jax.tree.structure(result.carry)}, expected the structure it returns for "
                f"carry=None ({jax.tree.structure(c.model_state)})"
            )
        good = jnp.isfinite(result.loss) & _all_finite(result.params)
        first_bad = run.ok & ~good
        ok = run.ok & good
        new_run = RunCarry(
            params=_select(ok, result.params, run.params),
            opt_state=_select(ok, result.opt_state, run.opt_state),
            step=run.step + 1,
            ok=ok,
            bad_step=jnp.where(first_bad, run.step, run.bad_step),
            bad_loss=jnp.where(first_bad, result.loss.astype(run.bad_loss.dtype), run.bad_loss),
            stats=run.stats if result.updates is None else _select(ok, result.updates, run.stats),
        )
        return BatchCarry(new_run, result.carry, c.total + jnp.where(ok, result.loss, 0))

    units = full_batches + (1 if remainder else 0)

    def full_step(c: BatchCarry, order: Array, j: Array) -> BatchCarry:
        return guarded_step(c, lax.dynamic_slice_in_dim(order, j * batch_size, batch_size))

    def remainder_step(c: BatchCarry, order: Array, j: Array) -> BatchCarry:
        return guarded_step(c, order[full_batches * batch_size :])

    def one_step(i: Array, s: LoopState) -> LoopState:
        e, j = i // units, i % units
        order = lax.dynamic_index_in_dim(orders, e, keepdims=False)
        c = BatchCarry(s.run, s.model_state, s.total)
        if full_batches and remainder:
            c = lax.cond(j < full_batches, full_step, remainder_step, c, order, j)
        else:
            c = (full_step if full_batches else remainder_step)(c, order, j)
        ends = j == units - 1
        losses = jnp.where(ends, s.losses.at[e].set(c.total), s.losses)
        model_state = c.model_state
        if stateful:  # each epoch starts from the model's zeros
            model_state = jax.tree.map(
                lambda a: jnp.where(ends, jnp.zeros_like(a), a), c.model_state
            )
        return LoopState(
            c.run, model_state, jnp.where(ends, 0, c.total).astype(total_dtype), losses
        )

    state = lax.fori_loop(begin, begin + count, one_step, state)
    if mesh is not None:
        run = state.run
        state = state._replace(run=run._replace(params=mesh.keep_replicated(run.params)))
    return state


def _check_class_labels(
    model: TrainModel,
    params: PyTree,
    data: RunData,
    batch_size: int,
    stateful: bool,
    compute_dtype: np.dtype | None,
) -> None:
    """``"cross_entropy"`` labels must lie in [0, C), C the model's outputs (the last axis
    of its prediction, found by tracing it on the first batch): beyond, Optax's loss is
    NaN and the run would stop as if it diverged."""
    b = min(check_positive_int("batch_size", batch_size), len(data.xs))
    x = jax.ShapeDtypeStruct((b, *data.xs.shape[1:]), data.xs.dtype)
    if not model.batch_first and len(x.shape) >= 2:
        x = jax.ShapeDtypeStruct((x.shape[1], b, *x.shape[2:]), x.dtype)
    lengths = None if data.seq_lengths is None else jnp.asarray(data.seq_lengths[:b])

    def predict(p: PyTree, batch: Array) -> Array:
        return _forward(
            model, compute_dtype, p, data.rest, batch, None, stateful, lengths, data.rng
        )[0]

    classes = jax.eval_shape(predict, params, x).shape[-1:]
    if classes and data.ys.size and int(data.ys.max()) >= classes[0]:
        raise ValueError(
            f"ys: class labels must lie in [0, {classes[0]}) ({model.name}'s prediction has "
            f"{classes[0]} classes on its last axis), got values in "
            f"[{int(data.ys.min())}, {int(data.ys.max())}]"
        )


def _param_dtype(params: PyTree) -> np.dtype:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("variables['params'] holds no arrays")
    dtype = np.dtype(leaves[0].dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"expected floating point parameters, got dtype {dtype}")
    check_float64_allowed(dtype, "variables['params']")
    return dtype


def _compute_dtype(compute_dtype: Any, param_dtype: np.dtype | None = None) -> np.dtype | None:
    """None, or a float dtype other than the parameters' (theirs is None: plain training)."""
    if compute_dtype is None:
        return None
    try:
        dtype = np.dtype(compute_dtype)
    except TypeError as error:
        raise TypeError(f"compute_dtype: expected a dtype, got {compute_dtype!r}") from error
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"compute_dtype: expected a floating point dtype, got {dtype}")
    return None if dtype == param_dtype else dtype


def _on_mesh(
    mesh: Mesh | None,
    batch_axis: str | None,
    process_local: bool,
    batch_size: int,
    carry: RunCarry,
    data: RunData,
) -> tuple[parallel.DataParallel | None, RunCarry, RunData, int]:
    """All of fit's mesh handling: check the mesh and the batch axis, check that every
    process passed the same values, replicate ``carry`` and the rest of ``data`` over
    the mesh and place the data set (replicated, or each process's own samples with
    ``process_local``; see :mod:`lstm_jax.train.parallel`).

    Returns:
        (the run's :class:`~lstm_jax.train.parallel.DataParallel` or None, carry, data,
        N: the number of samples of an epoch, all processes' with ``process_local``).
    """
    if mesh is None:
        if process_local:
            raise ValueError(
                "process_local=True: expected a mesh= to spread the processes' samples "
                "over (e.g. lstm_jax.train.parallel.batch_mesh()), got mesh=None"
            )
        if batch_axis is not None:
            raise ValueError(f"batch_axis: expected None without a mesh, got {batch_axis!r}")
        return None, carry, data, len(data.xs)
    if not isinstance(process_local, bool):
        raise TypeError(f"process_local: expected True or False, got {process_local!r}")
    with lost_workers_reported():  # the steps below talk to the other processes
        dp = parallel.DataParallel.over(mesh, batch_axis, process_local, len(data.xs))
        n = len(data.xs) if dp.shares is None else dp.shares.samples
        batch_size = check_positive_int("batch_size", batch_size)
        parallel.check_divisible(n, batch_size, dp.shards, dp.axis)
        held = (data.xs, data.ys, data.seq_lengths)
        same: dict[str, Any] = {"variables": {**data.rest, "params": carry.params}}
        same.update({"optimizer state": carry.opt_state, "rng": data.rng})
        if not process_local:
            same.update(xs=data.xs, ys=data.ys, seq_lengths=data.seq_lengths)
        parallel.check_same_everywhere(same)
        carry, rest, rng = dp.replicate((carry, data.rest, data.rng))
        xs, ys, lengths = dp.place_data(held)
    return dp, carry, data._replace(rest=rest, xs=xs, ys=ys, seq_lengths=lengths, rng=rng), n


def _fingerprint(
    model: TrainModel,
    start: Start,
    loss: Any,
    data: RunData,
    plan: BatchPlan,
    mesh: parallel.DataParallel | None,
    *,
    shuffle_seed: int | None,
    stateful: bool,
    compute_dtype: Any,
    checkpoint_every: int | None,
) -> dict[str, Any]:
    """The facts a checkpoint must share with this call to be resumed from."""
    return {
        "backend": "lstm_jax",
        "model": describe(model.identity),
        "batch_first": model.batch_first,
        "params": describe_tree(start.params),
        "opt_state": describe_tree(start.opt_state),
        "optimizer": describe(start.spec) if is_spec(start.spec) else "optax",
        "loss": loss if isinstance(loss, str) else describe(loss),
        # the data set's shapes: N samples, not the padded rows process_local stores
        "xs": [[plan.n, *data.xs.shape[1:]], str(data.xs.dtype)],
        "ys": [[plan.n, *data.ys.shape[1:]], str(data.ys.dtype)],
        "data": parallel.data_digest(digest, (data.xs, data.ys, data.seq_lengths), mesh),
        "batch_size": plan.batch_size,
        "shuffle_seed": None if shuffle_seed is None else int(shuffle_seed),
        "stateful": stateful,
        "compute_dtype": None if compute_dtype is None else str(np.dtype(compute_dtype)),
        "checkpoint_every": checkpoint_every,
        "rng": None if data.rng is None else digest(np.asarray(key_data(data.rng))),
        "start_step": start.step,
    }


def _saved_state(carry: RunCarry, rng: Array | None) -> dict[str, Any]:
    state = {"params": carry.params, "opt_state": carry.opt_state, "step": carry.step}
    if carry.stats is not None:  # BatchNorm's running statistics resume too
        state["stats"] = carry.stats
    if rng is not None:
        state["rng"] = key_data(rng)
    return state


def _initial_carry(start: Start, dtype: np.dtype) -> RunCarry:
    return RunCarry(
        params=start.params,
        opt_state=start.opt_state,
        # numpy scalars: the compiled run takes them as they are (no eager JAX dispatch
        # per value, which costs a quarter of a short run's call); typed as the arrays
        # they become inside it
        step=cast(Array, np.asarray(start.step, np.int32)),
        ok=cast(Array, np.asarray(True)),
        bad_step=cast(Array, np.asarray(-1, np.int32)),
        bad_loss=cast(Array, np.asarray(np.nan, dtype)),
        stats=updated_collections(start.rest),
    )


def _progress_every(epochs: int, checkpoint_every: int | None, progress: bool) -> int | None:
    if checkpoint_every is not None:
        return checkpoint_every
    return math.ceil(epochs / PROGRESS_CHUNKS) if progress else None


def fit(
    model: Any,
    variables: Any,
    xs: Any,
    ys: Any,
    *,
    optimizer: Any = None,
    epochs: int,
    batch_size: int = 1,
    shuffle_seed: int | None = None,
    loss: Any = "mse",
    rng: Array | None = None,
    mesh: Mesh | None = None,
    batch_axis: str | None = None,
    process_local: bool = False,
    compute_dtype: Any = None,
    batch_first: bool | None = None,
    seq_lengths: Any = None,
    stateful: bool = False,
    checkpoint_dir: Any = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = KEEP_CHECKPOINTS,
    progress: bool = False,
    deterministic: bool = False,
) -> tuple[Any, np.ndarray]:
    """Train any Flax linen model with Optax; in-memory data, compiled epochs.

    Arguments:
        model: an ``lstm_jax.LSTMModeler`` (its ``input_size``, ``output_size`` and
            ``batch_first`` are read and the data checked against them), or any
            ``flax.linen.Module``: called as ``model.apply(variables, x)`` (plus
            ``deterministic=``/``seq_lengths=``/``rngs=`` when it takes them, see
            :mod:`lstm_jax.train.model`); its first output is the prediction when
            it returns a tuple. A Flax NNX module (``nnx.Module``) is trained in place,
            with ``variables=None``, and returned in place of the variables (see
            :mod:`lstm_jax.train.nnx_model`).
        variables: ``{"params": ...}`` (e.g. ``lstm_jax.params_from_torch``; other
            collections pass through unchanged), or a
            ``flax.training.train_state.TrainState``: its optimizer (``tx``), state
            and step continue, and the data order goes on at epoch
            ``step // steps_per_epoch`` (3 + 3 epochs are 6 epochs).
        xs: the lecture's model: (N, T, I) sequences, or (N, I) samples of one step
            each (-> (N, 1, I)), cast to the parameters' dtype. Any other model:
            (N, T, ...) samples; floats cast to the parameters' dtype, integers
            (tokens) kept as int32.
        ys: (N, O) targets for ``"mse"`` ((N,) when O = 1), (N,) integer labels for
            ``"cross_entropy"``; any (N, ...) for another model or a callable loss.
            A batch's targets are the rows ``ys[index]``, (B, ...), in every layout.
        optimizer: an :mod:`lstm_jax.common.optim` spec (``SGD``, ``Adam``, ``AdamW``;
            the same value configures ``lstm_torch.fit``), an Optax
            ``GradientTransformation`` (its ``update`` gets ``value=`` the batch loss:
            ``optax.contrib.reduce_on_plateau`` works) or an ``optax.MultiSteps``.
            None with a TrainState. Pass the same object again to reuse the compiled
            run (equal specs give the same Optax object).
        epochs: passes over the data in this call.
        batch_size: B; batches are (T, B, ...) ((B, T, ...) with ``batch_first``);
            the last batch of an epoch has N % B samples when that is not 0.
        shuffle_seed: None keeps the data order; an int draws one permutation per
            epoch with ``numpy.random.default_rng(shuffle_seed)`` (as ``lstm_torch.fit``).
        loss: ``"mse"`` or ``"cross_entropy"`` (means, as torch's), or a callable
            ``loss(prediction, target) -> scalar`` or ``-> (scalar, aux)`` (the aux is
            dropped here; :func:`make_train_step` returns it).
        rng: a key for dropout (training mode), folded with the global step; None
            trains deterministically (required for a model with dropout between layers).
        mesh: None trains on one device. A ``jax.sharding.Mesh``
            (``lstm_jax.train.parallel.batch_mesh()``, ``jax.make_mesh((n,), ("data",))``,
            any mesh over the devices of every process): data-parallel training, every
            batch split over the batch axis, parameters and optimizer state replicated
            (also over the mesh's other axes), gradients all-reduced by XLA (see
            :mod:`lstm_jax.train.parallel`). Every batch, the remainder batch too, must
            divide among the batch axis' devices.
        batch_axis: the mesh axis to split batches over; None: ``"batch"`` if the mesh
            has it, else ``"data"``, else the mesh's only axis.
        process_local: False: every process passes the same, whole data set. True
            (with a mesh): each process passes only its own samples; the data set is
            the processes' samples concatenated in process order (process 0's first),
            N their total, and the run is the one of a process holding all of them
            (same batches, same order); each device keeps only its share of the rows.
        compute_dtype: None computes in the parameters' dtype. ``jnp.bfloat16`` (any
            float dtype): mixed precision; forward and backward in that dtype, loss,
            gradients, optimizer state and the returned (master) parameters in the
            parameters' dtype (see :func:`step_update`).
        batch_first: for a model without its own ``batch_first`` attribute: True
            gives it (B, T, ...) batches; default time-major (T, B, ...).
        seq_lengths: (N,) valid lengths per sample; each batch passes its rows' to
            the model as ``seq_lengths=`` (the lecture's model predicts at each row's
            last valid step).
        stateful: carry the model's state across the batches of an epoch (truncated
            backpropagation through time, as pytorch/examples' ``repackage_hidden``):
            the model is called as ``apply(variables, x, carry)`` -> ``(prediction,
            carry)``; batch k + 1 starts from batch k's carry, its gradient stopped;
            each epoch starts from zeros. Needs ``shuffle_seed=None`` and N a multiple
            of B (:func:`lstm_jax.common.data.stateful_windows` cuts a long sequence so).
        checkpoint_dir: save checkpoints there (Orbax ``CheckpointManager``, see
            :mod:`lstm_jax.train.checkpointing`); when it already holds one of this
            run, training resumes from the latest (logged at INFO: ``resumed from
            epoch 8 of 120``) and ends bitwise as an uninterrupted run. A checkpoint
            of another run (model, optimizer state, loss, data, options) is refused.
        checkpoint_every: save every k epochs (and after the last); default 1 with a
            checkpoint_dir. The compiled program runs k epochs per call.
        keep_checkpoints: how many of the latest checkpoints to keep.
        progress: a tqdm bar over epochs, advancing per chunk of epochs
            (``checkpoint_every``, or about 1/20 of the run), with the last loss.
        deterministic: False (default): training mode, as torch's ``model.train()``:
            the model gets ``deterministic=False`` / ``train=True`` (an NNX module
            ``.train()``), BatchNorm normalizes with batch statistics and its running
            statistics (``batch_stats``) are updated and returned; a model that draws
            dropout needs ``rng`` and is refused without. True: eval mode on purpose
            (no dropout, running statistics used and kept).

    Returns:
        (trained variables, or the TrainState continued; (epochs,) float64 per-epoch
        losses of this call, each the sum of its batch losses).

    Raises:
        TrainingDiverged: a step gave a non-finite loss or non-finite parameters;
            it carries the last finite variables and the completed epochs' losses.
        Preempted: SIGTERM arrived; the run stopped at the next step boundary (a window
            of about :data:`STOP_CHECK_SECONDS` of steps), saved that step with a
            checkpoint_dir, and carries ``.variables`` and ``.losses``. A
            ``SystemExit`` with code 143. The same call resumes bitwise.
        TrainingInterrupted: the same for Ctrl-C (SIGINT); a ``KeyboardInterrupt``.
        CheckpointWriteError: the checkpoint_dir cannot be written (before training),
            or a save failed (a full disk); it carries the variables and losses.
        CheckpointDirBusy: another run holds the checkpoint_dir (its lock file).

    See ``docs/guides/faults.md``.
    """
    if is_nnx_module(model):  # trained in place: nnx.split, this same run, nnx.update
        return fit_nnx(
            fit,
            model,
            variables,
            xs,
            ys,
            batch_first=batch_first,
            optimizer=optimizer,
            epochs=epochs,
            batch_size=batch_size,
            shuffle_seed=shuffle_seed,
            loss=loss,
            rng=rng,
            mesh=mesh,
            batch_axis=batch_axis,
            process_local=process_local,
            compute_dtype=compute_dtype,
            seq_lengths=seq_lengths,
            stateful=stateful,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints,
            progress=progress,
            deterministic=deterministic,
        )
    directory, checkpoint_every, keep = check_checkpointing(
        checkpoint_dir, checkpoint_every, keep_checkpoints
    )
    with _directory_held(directory):  # first: a busy directory is refused at once
        return _fit_held(
            model,
            variables,
            xs,
            ys,
            optimizer=optimizer,
            epochs=epochs,
            batch_size=batch_size,
            shuffle_seed=shuffle_seed,
            loss=loss,
            rng=rng,
            mesh=mesh,
            batch_axis=batch_axis,
            process_local=process_local,
            compute_dtype=compute_dtype,
            batch_first=batch_first,
            seq_lengths=seq_lengths,
            stateful=stateful,
            directory=directory,
            checkpoint_every=checkpoint_every,
            keep=keep,
            progress=progress,
            deterministic=deterministic,
        )


@contextlib.contextmanager
def _directory_held(directory: str | None) -> Iterator[None]:
    """``directory`` checked writable (a probe file) and locked for the body (process
    0 holds the lock for every process of a run); nothing without a directory."""
    if directory is None:
        yield
        return
    check_writable(directory)  # refused before anything trains
    lock = _lock(directory)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _fit_held(
    model: Any,
    variables: Any,
    xs: Any,
    ys: Any,
    *,
    optimizer: Any,
    epochs: int,
    batch_size: int,
    shuffle_seed: int | None,
    loss: Any,
    rng: Array | None,
    mesh: Mesh | None,
    batch_axis: str | None,
    process_local: bool,
    compute_dtype: Any,
    batch_first: bool | None,
    seq_lengths: Any,
    stateful: bool,
    directory: str | None,
    checkpoint_every: int | None,
    keep: int,
    progress: bool,
    deterministic: bool,
) -> tuple[Any, np.ndarray]:
    """:func:`fit` (its arguments; ``checkpoint_dir`` checked, writable and locked)."""
    train_model = as_train_model(model, batch_first)
    # training mode (dropout, BatchNorm's batch statistics updated) unless asked otherwise
    train_model = dataclasses.replace(
        train_model, training=not check_flag("deterministic", deterministic)
    )
    start = start_from(variables, optimizer)
    epochs = check_positive_int("epochs", epochs)
    loss = check_jax_loss(loss)
    _check_stateful_model(train_model, stateful)
    progress = check_flag("progress", progress)
    dtype = _param_dtype(start.params)
    parallel.check_host_data(xs=xs, ys=ys, seq_lengths=seq_lengths)
    x, y = prepare_data(
        xs,
        ys,
        loss=loss,
        input_size=train_model.input_size,
        output_size=train_model.output_size,
        dtype=dtype,
    )
    if seq_lengths is not None:
        if x.ndim < 2:
            raise ValueError(f"seq_lengths: expected xs of (N, T, ...) sequences, got {x.shape}")
        if not train_model.takes("seq_lengths"):
            raise TypeError(
                f"seq_lengths: {train_model.name}.__call__ takes no seq_lengths argument "
                f"(fit passes the batch's lengths as seq_lengths=...: name the parameter so)"
            )
    lengths = prepare_seq_lengths(seq_lengths, len(x), x.shape[1] if x.ndim > 1 else 1)
    check_finite_data(x, y, lengths)
    if rng is not None and not is_prng_key(rng):
        raise TypeError(
            f"rng: expected a JAX PRNG key such as jax.random.key(0), got "
            f"{type(rng).__name__} of shape {np.shape(rng)}"
        )
    if rng is None and train_model.dropout and not deterministic:
        raise ValueError(
            "the model has dropout: pass rng=jax.random.key(...) to train with it (training "
            "mode, as torch's model.train()), or fit(..., deterministic=True) to train in "
            "eval mode on purpose"
        )
    compute_dtype = _compute_dtype(compute_dtype, dtype)
    data = RunData(start.rest, x, y, lengths, rng if train_model.uses_rng(rng) else None)
    if loss == "cross_entropy" and train_model.output_size is None:
        _check_class_labels(train_model, start.params, data, batch_size, stateful, compute_dtype)
    carry = _initial_carry(start, dtype)
    spread, carry, data, n = _on_mesh(mesh, batch_axis, process_local, batch_size, carry, data)
    plan = batch_plan(n, batch_size)
    if stateful:
        check_stateful(plan, shuffle_seed)
    first = first_epoch(start, plan.steps_per_epoch)
    orders = epoch_orders(plan.n, epochs, shuffle_seed, first).astype(np.int32)
    orders = orders if spread is None else spread.global_order(orders)

    end = first + epochs
    units = plan.steps_per_epoch
    state = LoopState(
        carry,
        _zero_model_state(train_model, compute_dtype, start, data, plan, spread)
        if stateful
        else None,
        cast(Array, np.zeros((), dtype)),
        cast(Array, np.full(epochs, np.nan, dtype)),
    )
    if spread is not None:
        state = state._replace(
            total=spread.replicate(state.total), losses=spread.replicate(state.losses)
        )
    checkpoints = None
    position = 0
    stops = StopRequests().__enter__()  # from here on, SIGTERM and Ctrl-C stop cleanly
    try:
        if directory is not None:
            fingerprint = _fingerprint(
                train_model,
                start,
                loss,
                data,
                plan,
                spread,
                shuffle_seed=shuffle_seed,
                stateful=stateful,
                compute_dtype=compute_dtype,
                checkpoint_every=checkpoint_every,
            )
            checkpoints = Checkpoints(directory, fingerprint, keep)
            state, position = _resume(checkpoints, state, data, spread, first, end, units)
        run: Callable[..., Any] = functools.partial(
            _train_run,
            train_model,
            start.optimizer,
            loss,
            plan.batch_size,
            mesh=spread,
            compute_dtype=compute_dtype,
            stateful=stateful,
        )
        run = run if spread is None else spread.under_mesh(run)
        orders = orders if spread is None else spread.replicate(orders)
        saves = [
            b for _, b in chunks(first, end, _progress_every(epochs, checkpoint_every, progress))
        ]
        if spread is None:  # as the windows hand it on: else the second compiles again
            state = jax.device_put(state, _device_of(state.run.params))
        state = _run_windows(
            run,
            state,
            data,
            orders,
            checkpoints,
            RunPlan(first, epochs, units, saves, progress, position),
            lambda s: finish(start, s.run if spread is None else spread.hand_back(s.run)),
            place=(lambda a: a) if spread is None else spread.replicate,
            stops=stops,
        )
    finally:
        stops.__exit__(None, None, None)
    carry = state.run if spread is None else spread.hand_back(state.run)
    losses = np.asarray(state.losses, np.float64)
    bad = int(carry.bad_step)
    if bad >= 0:
        epoch, step = divmod(bad - start.step, plan.steps_per_epoch)
        raise TrainingDiverged(
            epoch=epoch,
            step=step,
            global_step=bad - start.step,
            loss=float(carry.bad_loss),
            losses=losses[:epoch],
            variables=finish(start, carry),
        )
    return finish(start, carry), losses


def _device_of(params: PyTree) -> Any:
    """The device a one-device run's outputs land on: that of the parameters when they
    were placed on one, else JAX's default device."""
    for leaf in jax.tree.leaves(params):
        if isinstance(leaf, jax.Array) and getattr(leaf, "committed", False):
            return next(iter(leaf.devices()))
    return getattr(jax.config, "jax_default_device", None) or jax.local_devices()[0]


class RunPlan(NamedTuple):
    """Where a call's windows may end: ``first`` (its first epoch, counted over the
    run), ``epochs`` (this call's), ``units`` (steps per epoch), ``saves`` (the
    epochs, over the run, after which to save and report progress) and ``progress``
    (a tqdm bar), ``position`` (the call's step index to start at: past the steps of
    a checkpoint resumed from)."""

    first: int
    epochs: int
    units: int
    saves: list[int]
    progress: bool
    position: int


def _run_windows(
    run: Callable[..., LoopState],
    state: LoopState,
    data: RunData,
    orders: Any,
    checkpoints: Checkpoints | None,
    plan: RunPlan,
    result: Callable[[LoopState], Any],
    place: Callable[[Any], Any],
    stops: StopRequests,
) -> LoopState:
    """Run a call's steps in windows of about :data:`STOP_CHECK_SECONDS`, saving at
    ``plan.saves`` and stopping cleanly on SIGTERM or Ctrl-C (see :func:`fit`).

    ``result(state)`` gives what ``fit`` would return at ``state`` (handed to the
    exceptions that stop a run); ``place`` puts a host value where the run's inputs
    live (replicated over a mesh); ``stops``: the stop requests (installed). Returns
    the state after the last step (or after a diverged step's window)."""
    total = plan.epochs * plan.units
    position = plan.position
    targets = [(b - plan.first) * plan.units for b in plan.saves]
    window = 1  # the first call may compile: its time says nothing about a step's
    timed = False
    bar = tqdm(
        total=plan.epochs,
        initial=position // plan.units,
        desc="jax fit",
        unit="epoch",
        disable=not plan.progress,
    )
    peer_lost = False
    failed = False
    try:
        while position < total:
            target = min(t for t in targets if t > position)
            count = min(window, target - position)
            began = time.monotonic()
            with lost_workers_reported():
                state = run(state, data, orders, *place((np.int32(position), np.int32(count))))
                diverged = int(state.run.bad_step) >= 0  # waits for the window
            elapsed = time.monotonic() - began
            position += count
            if timed or count > 1:
                window = _window_for(elapsed / count)
            timed = True
            if diverged:
                break
            if position == target:
                epoch = position // plan.units
                losses = np.asarray(state.losses[:epoch], np.float64)
                if checkpoints is not None:
                    with lost_workers_reported():
                        checkpoints.save(
                            plan.first + epoch, _saved_state(state.run, data.rng), losses
                        )
                bar.update(epoch - bar.n)
                bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
                logger.info("epoch %d of %d: loss %.6g", epoch, plan.epochs, losses[-1])
            with lost_workers_reported():
                requested, window = _agree(stops.requested, window)
            if requested is not None:  # also after the last step: the signal is honoured
                _stop(requested, stops, state, data, checkpoints, plan, position, result)
        if checkpoints is not None:
            checkpoints.finish()  # the last save's failure is raised here, in the try
    except WorkerLost:
        peer_lost = True
        raise
    except (Preempted, TrainingInterrupted):
        raise  # its checkpoint is complete: closing waits for nothing
    except CheckpointWriteError as error:
        failed = True
        epoch = position // plan.units
        losses = np.asarray(state.losses[:epoch], np.float64)
        raise error.with_state(result(state), losses) from error.cause
    except BaseException:
        failed = True
        raise
    finally:
        bar.close()
        if checkpoints is not None:
            # Closing waits in a barrier of all processes: for a lost one, in vain.
            checkpoints.close(wait=not (peer_lost or failed))
    return state


# A running fit looks for a stop request (SIGTERM, Ctrl-C) about this often: the
# compiled run is cut into windows of steps that take about this long (measured).
STOP_CHECK_SECONDS = 1.0


def _window_for(seconds_per_step: float) -> int:
    """Steps per window: about :data:`STOP_CHECK_SECONDS` of them, at least one."""
    return max(1, int(STOP_CHECK_SECONDS / max(seconds_per_step, 1e-9)))


def _agree(requested: int | None, window: int) -> tuple[int | None, int]:
    """Over several processes: a stop requested anywhere stops every process at the
    same step (the first process's signal that asked for it), and every process
    runs the first process's window next (a window is a collective program). One
    tiny all-gather per window; nothing with one process."""
    if jax.process_count() == 1:
        return requested, window
    from jax.experimental import multihost_utils

    mine = np.asarray([requested or 0, window], np.int32)
    rows = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)
    signals = [int(r) for r in rows[:, 0] if r]
    return (signals[0] if signals else None), int(rows[0, 1])


def _stop(
    requested: int,
    stops: StopRequests,
    state: LoopState,
    data: RunData,
    checkpoints: Checkpoints | None,
    plan: RunPlan,
    position: int,
    result: Callable[[LoopState], Any],
) -> None:
    """Save the step reached (with a checkpoint_dir) and raise the stop's exception."""
    epoch, unit = divmod(position, plan.units)
    losses = np.asarray(state.losses[:epoch], np.float64)
    path = None
    if checkpoints is not None and position == plan.epochs * plan.units:
        checkpoints.finish()  # the run's end, saved already
        path = checkpoints.last_complete()
    elif checkpoints is not None:
        saved = _saved_state(state.run, data.rng)
        if state.model_state is not None:
            saved["model_state"] = state.model_state
        with lost_workers_reported():
            path = checkpoints.save_stopped(
                int(state.run.step),
                plan.first + epoch,
                unit,
                saved,
                losses,
                float(state.total),
            )
    waited = time.monotonic() - (stops.received_at or time.monotonic())
    kind = "SIGTERM" if requested == signal.SIGTERM else "SIGINT"
    logger.warning(
        "%s: stopped at epoch %d, batch %d (global step %d), %.2f s after the signal%s",
        kind,
        epoch,
        unit,
        int(state.run.step),
        waited,
        f"; saved in {path}" if path else "",
    )
    stop = Preempted if requested == signal.SIGTERM else TrainingInterrupted
    raise stop(
        variables=result(state), losses=losses, checkpoint=path, global_step=int(state.run.step)
    )


def _lock(directory: str) -> RunLock | None:
    """``directory``'s run lock, taken by process 0 for every process of a run; the
    others learn whether it was taken (and fail with the same error when not)."""
    lock = RunLock(directory) if jax.process_index() == 0 else None
    error: CheckpointDirBusy | None = None
    if lock is not None:
        try:
            lock.acquire()
        except CheckpointDirBusy as busy:
            error = busy
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        flags = np.asarray(multihost_utils.process_allgather(np.int32(error is not None)))
        if int(flags.reshape(-1)[0]) and error is None:
            raise CheckpointDirBusy(directory, {"host": "(see process 0)"}, "process 0's lock")
    if error is not None:
        raise error
    return lock


def _zero_model_state(
    model: TrainModel,
    compute_dtype: np.dtype | None,
    start: Start,
    data: RunData,
    plan: BatchPlan,
    mesh: parallel.DataParallel | None,
) -> PyTree:
    """A stateful run's carry at an epoch's start: the model's zeros for one batch."""
    b = plan.batch_size
    x = jax.ShapeDtypeStruct((b, *data.xs.shape[1:]), data.xs.dtype)
    if not model.batch_first and len(x.shape) >= 2:
        x = jax.ShapeDtypeStruct((x.shape[1], b, *x.shape[2:]), x.dtype)
    lengths = None
    if data.seq_lengths is not None:
        lengths = jax.ShapeDtypeStruct((b,), data.seq_lengths.dtype)
    # shapes only: _zero_carry traces the model with them (jax.eval_shape)
    zeros = _zero_carry(
        model, compute_dtype, start.params, data.rest, cast(Array, x), cast(Any, lengths)
    )
    return zeros if mesh is None else mesh.replicate(zeros)


def _resume(
    checkpoints: Checkpoints,
    state: LoopState,
    data: RunData,
    mesh: parallel.DataParallel | None,
    first: int,
    end: int,
    units: int,
) -> tuple[LoopState, int]:
    """The state to go on from: the latest checkpoint's (an epoch's, or a stop's
    within an epoch), or ``state`` itself; its step index within the call is
    and the step index within the call to go on from."""
    like = _saved_state(state.run, data.rng)
    stopped_like = like if state.model_state is None else {**like, "model_state": state.model_state}
    found = checkpoints.latest(like, stopped_like)
    if found is None:
        return state, 0
    if found.epoch > end or (found.epoch == end and found.unit):
        raise ValueError(
            f"checkpoint_dir {checkpoints.directory!r}: its latest checkpoint is at epoch "
            f"{found.epoch - first}, past this call's {end - first} epochs; pass epochs >= "
            f"{found.epoch - first} or another checkpoint_dir"
        )
    saved = found.state
    run = state.run._replace(
        params=saved["params"],
        opt_state=saved["opt_state"],
        step=saved["step"],
        stats=saved.get("stats", state.run.stats),  # BatchNorm's running statistics
    )
    model_state = saved.get("model_state", state.model_state) if found.unit else state.model_state
    restored: Any = (run, model_state)
    if mesh is not None:
        restored = mesh.replicate(restored)
    else:  # Orbax restores a mesh run's checkpoint onto that mesh's devices: onto one
        restored = jax.device_put(jax.device_get(restored))
    losses = np.asarray(state.losses).copy()
    losses[: len(found.losses)] = found.losses
    dtype = losses.dtype
    resumed = LoopState(
        restored[0],
        restored[1],
        cast(Array, np.asarray(found.total, dtype)),
        cast(Array, losses),
    )
    if mesh is not None:
        resumed = resumed._replace(
            total=mesh.replicate(resumed.total), losses=mesh.replicate(resumed.losses)
        )
    epoch_text = resumed_message(found.epoch, end, first, checkpoints.directory)
    if found.unit:
        epoch_text += f", batch {found.unit} of its next epoch"
    logger.info(epoch_text)
    return resumed, (found.epoch - first) * units + found.unit

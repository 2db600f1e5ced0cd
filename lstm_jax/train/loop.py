"""Optax training: one step as a pure function, and a whole in-memory run as one program.

The pieces, each usable alone:

- :func:`loss_value` — the batch loss, ``"mse"`` (mean, as ``nn.MSELoss``) or
  ``"cross_entropy"`` (mean, as ``nn.CrossEntropyLoss``; integer labels);
- :func:`update` — one optimizer step on one batch (``hidden_cell`` starts at
  zeros): loss and gradients, then the Optax update;
- :func:`make_train_step` — :func:`update` jitted, for users writing their own loop;
- :func:`fit` — the driver: the per-epoch orders are drawn with numpy
  (:func:`lstm_jax.common.data.epoch_orders`, shared with ``lstm_torch.fit``) and
  passed in as an (epochs, N) index array; epochs and batches run as nested
  ``lax.scan`` inside ONE ``jax.jit``, compiled once per model, optimizer, loss,
  batch size and data shapes (a second call with the same ones reuses it).

An epoch of N samples is ``N // B`` full batches, scanned, then one remainder
batch of ``N % B`` samples (a second, static shape in the same program) when
that is not 0, as ``DataLoader(drop_last=False)`` would give.

Divergence: a step whose loss or updated parameters are not finite is not
applied; every later step is skipped too (a flag in the scan's carry), and
:func:`fit` raises :class:`~lstm_jax.common.errors.TrainingDiverged` afterwards with
the last finite variables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh

from lstm_jax.common.data import batch_plan, check_loss, epoch_orders, prepare_data
from lstm_jax.common.errors import TrainingDiverged
from lstm_jax.train import parallel
from lstm_jax.train.optimizers import as_optax

Array = jax.Array
PyTree = Any


def loss_value(loss: str, prediction: Array, target: Array) -> Array:
    """The batch loss, a scalar.

    Arguments:
        loss: ``"mse"``: ``mean((prediction - target)**2)`` over (B, O);
            ``"cross_entropy"``: mean over B of ``-log_softmax(prediction)[target]``.
        prediction: (B, O).
        target: (B, O) floats, or (B,) integer labels for ``"cross_entropy"``.
    """
    if loss == "mse":
        if target.shape != prediction.shape:
            raise ValueError(
                f"mse: expected targets of the predictions' shape {prediction.shape}, "
                f"got {target.shape}"
            )
        return jnp.mean(jnp.square(prediction - target))
    if target.shape != prediction.shape[:1]:
        raise ValueError(
            f"cross_entropy: expected {prediction.shape[:1]} integer labels for predictions "
            f"of shape {prediction.shape}, got {target.shape}"
        )
    return optax.losses.softmax_cross_entropy_with_integer_labels(prediction, target).mean()


def predict(
    model: nn.Module, params: PyTree, rest: Mapping[str, Any], x: Array, rng: Array | None
) -> Array:
    """The model's (B, O) prediction for a batch, ``hidden_cell`` starting at zeros."""
    rngs = None if rng is None else {"dropout": rng}
    out = model.apply({**rest, "params": params}, x, deterministic=rng is None, rngs=rngs)
    return out[0] if isinstance(out, tuple) else out


def update(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    loss: str,
    params: PyTree,
    rest: Mapping[str, Any],
    opt_state: PyTree,
    x: Array,
    y: Array,
    rng: Array | None = None,
    compute_dtype: Any = None,
) -> tuple[PyTree, PyTree, Array]:
    """One training step on one batch.

    Arguments:
        model: e.g. an ``lstm_jax.LSTMModeler``; called as ``model.apply(variables, x)``.
        params: ``variables["params"]``; ``rest``: the other collections (unchanged).
        opt_state: ``optimizer``'s state.
        x: (T, B, I) batch ((B, T, I) with ``batch_first``); y: (B, O) or (B,) labels.
        rng: a dropout key (training mode), or None (deterministic).
        compute_dtype: None computes in the parameters' dtype. A float dtype (e.g.
            ``jnp.bfloat16``): mixed precision. The forward and backward passes run
            on ``params`` and ``x`` cast to it (the model cloned with that
            ``param_dtype``); the prediction is cast back to the parameters'
            dtype for the loss, so the gradients arrive in that dtype (the cast's
            transpose) and the optimizer updates the master parameters in it.

    Returns:
        (new params, new opt_state, the batch loss before the step).
    """

    def objective(p: PyTree) -> Array:
        if compute_dtype is None:
            return loss_value(loss, predict(model, p, rest, x, rng), y)
        master = jax.tree.leaves(p)[0].dtype
        low = jax.tree.map(lambda a: a.astype(compute_dtype), p)
        forward = model.clone(param_dtype=compute_dtype)
        prediction = predict(forward, low, rest, x.astype(compute_dtype), rng)
        return loss_value(loss, prediction.astype(master), y)

    value, grads = jax.value_and_grad(objective)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


def make_train_step(
    model: nn.Module, optimizer: Any, loss: str = "mse", compute_dtype: Any = None
) -> Callable[..., tuple[PyTree, PyTree, Array]]:
    """A jitted ``train_step(variables, opt_state, x, y, rng=None) -> (variables,
    opt_state, loss)`` for a hand-written loop (see :func:`update` for the shapes).

    ``optimizer`` is an Optax transformation or an :mod:`lstm_jax.common.optim` spec; start
    from ``opt_state = lstm_jax.as_optax(optimizer).init(variables["params"])``.
    ``compute_dtype``: as :func:`fit`'s (e.g. ``jnp.bfloat16``: mixed precision).
    """
    opt = as_optax(optimizer)
    loss = check_loss(loss)
    compute = _compute_dtype(compute_dtype)

    @jax.jit
    def train_step(
        variables: Mapping[str, Any],
        opt_state: PyTree,
        x: Array,
        y: Array,
        rng: Array | None = None,
    ) -> tuple[PyTree, PyTree, Array]:
        rest = {k: v for k, v in variables.items() if k != "params"}
        params, opt_state, value = update(
            model, opt, loss, variables["params"], rest, opt_state, x, y, rng, compute
        )
        return {**rest, "params": params}, opt_state, value

    return train_step


def _all_finite(tree: PyTree) -> Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(keep_new: Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(keep_new, a, b), new, old)


@functools.partial(
    jax.jit,
    static_argnames=("model", "optimizer", "loss", "batch_size", "mesh", "compute_dtype"),
)
def _train_run(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    loss: str,
    batch_size: int,
    params: PyTree,
    rest: Mapping[str, Any],
    xs: Array,
    ys: Array,
    orders: Array,
    rng: Array | None,
    mesh: Mesh | None = None,
    compute_dtype: np.dtype | None = None,
) -> tuple[PyTree, Array, Array, Array]:
    """All epochs of training as one program.

    xs (N, T, I), ys (N, O) or (N,), orders (E, N). Returns the last finite params,
    the (E,) per-epoch losses, and the first failing global step (-1: none) and its loss.
    With a ``mesh``, every batch is split over its ``"batch"`` axis (the rest is
    replicated, see :mod:`lstm_jax.train.parallel`).
    """
    n = xs.shape[0]
    full_batches, remainder = divmod(n, batch_size)
    steps_per_epoch = full_batches + (1 if remainder else 0)
    batch_first = bool(getattr(model, "batch_first", False))
    step_type = jnp.int32

    def guarded_step(carry: tuple, index: Array, global_step: Array) -> tuple:
        params, opt_state, ok, bad_step, bad_loss, total = carry
        x, y = xs[index], ys[index]
        if mesh is not None:
            x, y = parallel.shard_batch(x, mesh, 0), parallel.shard_batch(y, mesh, 0)
        x = x if batch_first else jnp.swapaxes(x, 0, 1)
        key = None if rng is None else jax.random.fold_in(rng, global_step)
        new_params, new_state, value = update(
            model, optimizer, loss, params, rest, opt_state, x, y, key, compute_dtype
        )
        good = jnp.isfinite(value) & _all_finite(new_params)
        first_bad = ok & ~good
        ok = ok & good
        return (
            _select(ok, new_params, params),
            _select(ok, new_state, opt_state),
            ok,
            jnp.where(first_bad, global_step, bad_step),
            jnp.where(first_bad, value, bad_loss),
            total + jnp.where(ok, value, 0),
        )

    def epoch(carry: tuple, inputs: tuple[Array, Array]) -> tuple[tuple, Array]:
        order, e = inputs
        first_step = e * steps_per_epoch
        carry = (*carry, jnp.zeros((), xs.dtype))
        if full_batches:
            batches = order[: full_batches * batch_size].reshape(full_batches, batch_size)
            steps = first_step + jnp.arange(full_batches, dtype=step_type)

            def body(c: tuple, inp: tuple[Array, Array]) -> tuple[tuple, None]:
                return guarded_step(c, *inp), None

            carry, _ = lax.scan(body, carry, (batches, steps))
        if remainder:
            carry = guarded_step(
                carry, order[full_batches * batch_size :], first_step + full_batches
            )
        return carry[:-1], carry[-1]

    init = (
        params,
        optimizer.init(params),
        jnp.array(True),
        jnp.array(-1, step_type),
        jnp.array(jnp.nan, xs.dtype),
    )
    epochs = jnp.arange(orders.shape[0], dtype=step_type)
    (params, _, _, bad_step, bad_loss), losses = lax.scan(epoch, init, (orders, epochs))
    if mesh is not None:
        params = jax.lax.with_sharding_constraint(params, parallel.replicated(mesh))
    return params, losses, bad_step, bad_loss


def _param_dtype(params: PyTree) -> np.dtype:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("variables['params'] holds no arrays")
    dtype = np.dtype(leaves[0].dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"expected floating point parameters, got dtype {dtype}")
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "the parameters are float64 but JAX runs in 32-bit mode: enable float64 "
            "(jax.config.update('jax_enable_x64', True) or `with jax.enable_x64(True):`)"
        )
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


def fit(
    model: nn.Module,
    variables: Mapping[str, Any],
    xs: Any,
    ys: Any,
    *,
    optimizer: Any,
    epochs: int,
    batch_size: int = 1,
    shuffle_seed: int | None = None,
    loss: str = "mse",
    rng: Array | None = None,
    mesh: Mesh | None = None,
    compute_dtype: Any = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Train an ``lstm_jax.LSTMModeler``; the whole run is one compiled program.

    Arguments:
        model: the Flax model (``input_size``, ``output_size`` and ``batch_first``
            are read from it).
        variables: ``{"params": ...}`` (e.g. ``lstm_jax.params_from_torch``); other
            collections pass through unchanged.
        xs: (N, T, I) sequences, or (N, I) samples of one step each (-> (N, 1, I)).
        ys: (N, O) targets for ``"mse"`` ((N,) when O = 1), or (N,) integer labels
            for ``"cross_entropy"``.
        optimizer: an :mod:`lstm_jax.common.optim` spec (``SGD``, ``Adam``, ``AdamW``; the
            same value configures ``lstm_torch.fit``) or an Optax
            ``GradientTransformation``. Pass the same object again to reuse the
            compiled run (equal specs give the same Optax object).
        epochs: passes over the data.
        batch_size: B; batches are (T, B, I) ((B, T, I) with ``batch_first``); the
            last batch of an epoch has N % B samples when that is not 0.
        shuffle_seed: None keeps the data order; an int draws one permutation per
            epoch with ``numpy.random.default_rng(shuffle_seed)`` (as ``lstm_torch.fit``).
        loss: ``"mse"`` or ``"cross_entropy"``, means over the batch as torch's.
        rng: a key for dropout (training mode), folded with the global step; None
            trains deterministically (required for a model with dropout between layers).
        mesh: None trains on one device. A ``jax.sharding.Mesh`` with an axis named
            ``"batch"`` (``lstm_jax.train.parallel.batch_mesh()``, or
            ``jax.make_mesh((n,), ("batch",))``): data-parallel training, every batch
            split over that axis, parameters, optimizer state and data replicated,
            gradients all-reduced by XLA (see :mod:`lstm_jax.train.parallel`). Every batch,
            the remainder batch too, must divide among the axis' devices.
        compute_dtype: None computes in the parameters' dtype. ``jnp.bfloat16`` (any
            float dtype): mixed precision; forward and backward in that dtype, loss,
            gradients, optimizer state and the returned (master) parameters in the
            parameters' dtype (see :func:`update`).

    Returns:
        (trained variables, (epochs,) float64 per-epoch losses, each the sum of
        its batch losses).

    Raises:
        TrainingDiverged: a step gave a non-finite loss or non-finite parameters;
            it carries the last finite variables and the completed epochs' losses.
    """
    if not isinstance(model, nn.Module) or not all(
        hasattr(model, a) for a in ("input_size", "output_size")
    ):
        raise TypeError(
            f"model: expected an lstm_jax.LSTMModeler (a Flax module with input_size and "
            f"output_size), got {type(model).__name__}"
        )
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise TypeError("variables: expected Flax variables, a mapping with a 'params' entry")
    opt = as_optax(optimizer)
    params = variables["params"]
    dtype = _param_dtype(params)
    x, y = prepare_data(
        xs,
        ys,
        loss=loss,
        input_size=model.input_size,
        output_size=model.output_size,
        dtype=dtype,
    )
    plan = batch_plan(len(x), batch_size)
    orders = epoch_orders(plan.n, epochs, shuffle_seed)
    dropout = float(getattr(model, "dropout", 0.0)) > 0 and getattr(model, "num_layers", 1) > 1
    if rng is None and dropout:
        raise ValueError(
            "the model has dropout between layers: pass rng=jax.random.key(...) to train "
            "with it (training mode, as torch's model.train())"
        )
    rest = {k: v for k, v in variables.items() if k != "params"}
    compute_dtype = _compute_dtype(compute_dtype, dtype)
    data = (params, rest, x, y, orders.astype(np.int32), rng if dropout else None)
    if mesh is not None:
        parallel.check_divisible(plan.n, plan.batch_size, parallel.check_mesh(mesh))
        mesh = parallel.auto_mesh(mesh)
        data = parallel.replicate(data, mesh)
    new_params, losses, bad_step, bad_loss = _train_run(
        model,
        opt,
        loss,
        plan.batch_size,
        *data,
        mesh,
        compute_dtype,
    )
    trained = {**rest, "params": new_params}
    losses = np.asarray(losses, dtype=np.float64)
    bad = int(bad_step)
    if bad >= 0:
        epoch, step = divmod(bad, plan.steps_per_epoch)
        raise TrainingDiverged(
            epoch=epoch,
            step=step,
            global_step=bad,
            loss=float(bad_loss),
            losses=losses[:epoch],
            variables=trained,
        )
    return trained, losses

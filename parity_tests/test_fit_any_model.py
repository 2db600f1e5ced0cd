"""``lstm_jax.fit`` / ``make_train_step`` beyond the lecture's model (issue 13).

The references are written out here, independently of ``fit``: a hand-written
Optax loop (``jax.value_and_grad`` + ``optimizer.update`` per batch, the same data
order) for any Flax model and a callable loss; one longer run for a TrainState
continued over two calls; Adam on doubled batches for ``optax.MultiSteps``.
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax.training.train_state import TrainState

import lstm_jax
from lstm_jax.common.data import epoch_orders, stateful_windows
from lstm_jax.common.tolerances import TRAINING, assert_close, scaled_error

F32 = np.dtype(np.float32)
VOCAB = 11


class TokenTagger(nn.Module):
    """Integer tokens (T, B) -> embedding -> the project's LSTM -> (B, VOCAB) logits of
    the last step; asserts its input stays integer."""

    hidden: int = 8

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        assert jnp.issubdtype(tokens.dtype, jnp.integer), tokens.dtype
        x = nn.Embed(VOCAB, 5)(tokens)  # (T, B, 5)
        out, _ = lstm_jax.LSTM(self.hidden)(x)
        return nn.Dense(VOCAB)(out[-1])


class Regressor(nn.Module):
    """(B, T, F) -> a Dense per step, mean over time -> (B, 2) and a second output."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.tanh(nn.Dense(6)(x)).mean(axis=1)
        return nn.Dense(2)(h), h


def smooth_l1(prediction: jax.Array, target: jax.Array) -> tuple[jax.Array, dict]:
    """A loss fit has no name for, with an aux."""
    value = optax.losses.huber_loss(prediction, target, delta=0.5).mean()
    return value, {"max_error": jnp.max(jnp.abs(prediction - target))}


def token_data(n: int = 12, steps: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, (n, steps))
    return tokens, (tokens.sum(axis=1) % VOCAB)


def regression_data(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 4, 3)).astype(np.float32)
    return x, np.stack([x[:, :, 0].sum(1), x[:, -1, 1]], axis=1).astype(np.float32)


def optax_loop(
    model: nn.Module,
    params: Any,
    optimizer: optax.GradientTransformation,
    loss: Any,
    xs: np.ndarray,
    ys: np.ndarray,
    orders: np.ndarray,
    batch_size: int,
    time_major: bool,
) -> tuple[Any, list[float]]:
    """The reference: a plain Optax loop over the same batches."""
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple:
        def objective(p: Any) -> jax.Array:
            out = model.apply({"params": p}, x)
            prediction = out[0] if isinstance(out, tuple) else out
            value = loss(prediction, y)
            return value[0] if isinstance(value, tuple) else value

        value, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    losses = []
    for order in orders:
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x = xs[index].swapaxes(0, 1) if time_major else xs[index]
            params, opt_state, value = step(params, opt_state, x, ys[index])
            total += float(value)
        losses.append(total)
    return params, losses


def params_error(a: Any, b: Any) -> float:
    return max(
        scaled_error(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def cross_entropy(prediction: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.losses.softmax_cross_entropy_with_integer_labels(prediction, labels).mean()


@pytest.mark.slow  # over 10 s on 2 cores (16 s of CPU measured)
def test_callable_loss_on_a_token_model_is_an_optax_loop() -> None:
    """Time-major (T, B) integer tokens (N=12, B=5: a remainder batch of 2), a callable loss."""
    tokens, labels = token_data()
    model = TokenTagger()
    variables = model.init(jax.random.key(0), tokens[:2].T)
    optimizer = optax.adam(0.02)
    trained, losses = lstm_jax.fit(
        model,
        variables,
        tokens,
        labels,
        optimizer=optimizer,
        epochs=4,
        batch_size=5,
        shuffle_seed=3,
        loss=cross_entropy,
    )
    reference, expected = optax_loop(
        model,
        variables["params"],
        optimizer,
        cross_entropy,
        tokens,
        labels.astype(np.int32),
        epoch_orders(12, 4, 3),
        5,
        time_major=True,
    )
    assert_close(losses, expected, TRAINING[F32], "token model: losses")
    assert params_error(trained["params"], reference) <= TRAINING[F32]
    assert losses[-1] < losses[0]
    # The named loss is the same function.
    _, named = lstm_jax.fit(
        model,
        variables,
        tokens,
        labels,
        optimizer=optimizer,
        epochs=4,
        batch_size=5,
        shuffle_seed=3,
        loss="cross_entropy",
    )
    assert_close(named, losses, TRAINING[F32], "named cross_entropy")


def test_batch_first_model_with_aux_loss_and_tuple_output() -> None:
    xs, ys = regression_data()
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    optimizer = optax.sgd(0.05, momentum=0.9)
    options = dict(optimizer=optimizer, epochs=3, batch_size=4, loss=smooth_l1)
    trained, losses = lstm_jax.fit(model, variables, xs, ys, batch_first=True, **options)
    reference, expected = optax_loop(
        model, variables["params"], optimizer, smooth_l1, xs, ys, epoch_orders(10, 3), 4, False
    )
    assert_close(losses, expected, TRAINING[F32], "batch_first model: losses")
    assert params_error(trained["params"], reference) <= TRAINING[F32]


def test_make_train_step_returns_the_aux() -> None:
    xs, ys = regression_data()
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    step = lstm_jax.make_train_step(model, optax.sgd(0.1), loss=smooth_l1)
    opt_state = optax.sgd(0.1).init(variables["params"])
    _, _, (value, aux) = step(variables, opt_state, xs[:4], ys[:4])
    prediction = model.apply(variables, xs[:4])[0]
    np.testing.assert_allclose(aux["max_error"], np.max(np.abs(prediction - ys[:4])), rtol=1e-6)
    assert float(value) == pytest.approx(float(smooth_l1(prediction, ys[:4])[0]), rel=1e-6)


def test_train_state_continued_equals_one_longer_call() -> None:
    """3 + 3 epochs = 6 epochs, bitwise: Adam's moments, the step count and the data
    order (epoch e's order is the e-th draw) carry over; N=10, B=4 (remainder)."""
    xs, ys = regression_data()
    model = lstm_jax.LSTMModeler(3, 6, 2)
    params = model.init(jax.random.key(2), xs[0])["params"]
    state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(0.01))
    options = dict(epochs=3, batch_size=4, shuffle_seed=5)
    once, losses6 = lstm_jax.fit(model, state, xs, ys, **{**options, "epochs": 6})
    half, losses_a = lstm_jax.fit(model, state, xs, ys, **options)
    twice, losses_b = lstm_jax.fit(model, half, xs, ys, **options)
    assert isinstance(twice, TrainState)
    assert int(once.step) == int(twice.step) == 18
    np.testing.assert_array_equal(np.concatenate([losses_a, losses_b]), losses6)
    for a, b in zip(jax.tree.leaves(once), jax.tree.leaves(twice), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Restarting Adam (variables, not the state) gives another trajectory.
    _, restarted = lstm_jax.fit(
        model, {"params": half.params}, xs, ys, optimizer=state.tx, **options
    )
    assert scaled_error(restarted, losses_b) > 1e2 * TRAINING[F32]


def test_reduce_on_plateau_gets_the_loss() -> None:
    """``value=`` reaches reduce_on_plateau: with patience 1 its scale drops on the
    lecture-sized run (and the run equals the hand-written loop that passes it)."""
    xs, ys = regression_data()
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    optimizer = optax.chain(
        optax.sgd(0.5), optax.contrib.reduce_on_plateau(patience=1, factor=0.5, rtol=0.5)
    )
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optimizer)
    trained, losses = lstm_jax.fit(model, state, xs, ys, epochs=4, batch_size=5, batch_first=True)
    scale = float(trained.opt_state[1].scale)
    assert scale < 1.0, scale
    assert np.all(np.isfinite(losses))


def test_multi_steps_passes_the_loss_to_reduce_on_plateau() -> None:
    """MultiSteps around a chain with reduce_on_plateau: ``value=`` reaches the inner
    chain (with_extra_args_support alone would drop it: a TypeError)."""
    xs, ys = regression_data()
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    inner = optax.chain(
        optax.sgd(0.5), optax.contrib.reduce_on_plateau(patience=1, factor=0.5, rtol=0.5)
    )
    state = TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optax.MultiSteps(inner, 2)
    )
    trained, losses = lstm_jax.fit(model, state, xs, ys, epochs=4, batch_size=5, batch_first=True)
    assert float(trained.opt_state.inner_opt_state[1].scale) < 1.0
    assert np.all(np.isfinite(losses))


def test_multi_steps_accumulates_like_a_double_batch() -> None:
    """MultiSteps(adam, 2) over batches of 2 (mean gradients) = Adam over batches of 4."""
    xs, ys = regression_data(8)
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    accumulated, _ = lstm_jax.fit(
        model,
        variables,
        xs,
        ys,
        optimizer=optax.MultiSteps(optax.adam(0.01), every_k_schedule=2),
        epochs=3,
        batch_size=2,
        batch_first=True,
    )
    doubled, _ = lstm_jax.fit(
        model,
        variables,
        xs,
        ys,
        optimizer=optax.adam(0.01),
        epochs=3,
        batch_size=4,
        batch_first=True,
    )
    assert params_error(accumulated["params"], doubled["params"]) <= TRAINING[F32]
    moved = params_error(doubled["params"], variables["params"])
    assert moved > 1e2 * TRAINING[F32]


def test_schedule_free_evaluation_parameters() -> None:
    xs, ys = regression_data()
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    tx = optax.contrib.schedule_free_adamw(0.01)
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx)
    state, _ = lstm_jax.fit(model, state, xs, ys, epochs=2, batch_size=5, batch_first=True)
    evaluation = optax.contrib.schedule_free_eval_params(state.opt_state, state.params)
    assert jax.tree.structure(evaluation) == jax.tree.structure(state.params)
    assert params_error(evaluation, state.params) > 0


class Stream(nn.Module):
    """A carry-taking model: (B, T) tokens, carry (h, c) -> ((B, T, VOCAB) logits, carry)."""

    @nn.compact
    def __call__(self, tokens: jax.Array, carry: Any = None) -> tuple[jax.Array, Any]:
        x = nn.Embed(VOCAB, 4)(tokens)
        out, carry = lstm_jax.LSTM(6, batch_first=True)(x, carry)
        return nn.Dense(VOCAB)(out), carry


def test_stateful_any_model_is_a_carried_optax_loop() -> None:
    """Stateful training of a token model on stateful_windows: each batch starts from
    the previous batch's carry (gradient stopped), each epoch from zeros."""
    sequence = np.arange(200) * 7 % VOCAB
    xs, ys = stateful_windows(sequence, batch_size=4, window=6)
    model = Stream()
    variables = model.init(jax.random.key(0), xs[:4])
    optimizer = optax.adam(0.02)
    trained, losses = lstm_jax.fit(
        model,
        variables,
        xs,
        ys,
        optimizer=optimizer,
        epochs=2,
        batch_size=4,
        loss="cross_entropy",
        stateful=True,
        batch_first=True,
    )

    @jax.jit
    def step(params: Any, opt_state: Any, x: jax.Array, y: jax.Array, carry: Any) -> tuple:
        def objective(p: Any) -> tuple[jax.Array, Any]:
            logits, new = model.apply({"params": p}, x, carry)
            return cross_entropy(logits, y), new

        (value, new), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, new

    params, opt_state, expected = variables["params"], optimizer.init(variables["params"]), []
    for _ in range(2):
        carry, total = lstm_jax.LSTMState(jnp.zeros((1, 4, 6)), jnp.zeros((1, 4, 6))), 0.0
        for k in range(len(xs) // 4):
            index = slice(4 * k, 4 * k + 4)
            params, opt_state, value, carry = step(params, opt_state, xs[index], ys[index], carry)
            total += float(value)
        expected.append(total)
    assert_close(losses, expected, TRAINING[F32], "stateful token model: losses")
    assert params_error(trained["params"], params) <= TRAINING[F32]


def test_stateful_windows_continue_row_by_row() -> None:
    xs, ys = stateful_windows(np.arange(50), batch_size=3, window=4)
    per_stream = 50 // 3
    assert xs.shape == ys.shape == (3 * 3, 4)
    for k in range(3):
        for j in range(3):
            row = xs[3 * k + j]
            np.testing.assert_array_equal(row, np.arange(4) + j * per_stream + 4 * k)
            np.testing.assert_array_equal(ys[3 * k + j], row + 1)


class DictOut(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> dict:
        return {"y": nn.Dense(2)(x.mean(axis=1))}


class ThreeOut(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array, carry: Any = None) -> tuple:
        out, carry = lstm_jax.LSTM(3, batch_first=True)(x, carry)
        return nn.Dense(2)(out[:, -1]), carry, None


def _call(**changes: Any) -> None:
    xs, ys = regression_data()
    model = changes.pop("model", Regressor())
    variables = changes.pop("variables", None) or model.init(jax.random.key(1), xs[:2])
    call = dict(optimizer=optax.sgd(0.1), epochs=1, batch_size=5, batch_first=True)
    call.update(changes)
    lstm_jax.fit(model, variables, call.pop("xs", xs), call.pop("ys", ys), **call)


BAD = {
    "not-a-module": (
        dict(model=lambda x: x, variables={"params": {}}),
        TypeError,
        "model: expected an lstm_jax model (LSTMModeler, LSTM) or any flax.linen.Module",
    ),
    "no-carry": (dict(stateful=True), TypeError, "to take a carry after x"),
    "stateful-shuffle": (
        dict(
            model=Stream(),
            stateful=True,
            shuffle_seed=0,
            xs=np.zeros((8, 3), int),
            ys=np.zeros((8, 3), int),
            variables={"params": Stream().init(jax.random.key(0), np.zeros((2, 3), int))["params"]},
            batch_size=4,
        ),
        ValueError,
        "expected shuffle_seed=None",
    ),
    "stateful-remainder": (
        dict(
            model=Stream(),
            stateful=True,
            xs=np.zeros((10, 3), int),
            ys=np.zeros((10, 3), int),
            variables={"params": Stream().init(jax.random.key(0), np.zeros((2, 3), int))["params"]},
            batch_size=4,
        ),
        ValueError,
        "multiple of batch_size",
    ),
    "lengths-model": (
        dict(seq_lengths=np.ones(10, int)),
        TypeError,
        "takes no seq_lengths argument",
    ),
    "loss": (dict(loss="l1"), ValueError, "loss must be one of"),
    "loss-shape": (dict(loss=lambda p, t: p - t), TypeError, "expected the callable to return"),
    "train-state-optimizer": (
        dict(
            variables=TrainState.create(apply_fn=None, params={"w": jnp.ones(2)}, tx=optax.sgd(1.0))
        ),
        ValueError,
        "a TrainState carries its own optimizer",
    ),
    "every-without-dir": (dict(checkpoint_every=2), ValueError, "expected a checkpoint_dir"),
    "rng-int": (dict(rng=0), TypeError, "rng: expected a JAX PRNG key"),
    "dir-is-a-file": (dict(checkpoint_dir=__file__), ValueError, "expected a directory"),
    "batch-first-conflict": (
        dict(model=lstm_jax.LSTMModeler(3, 4, 2), batch_first=True),
        ValueError,
        "sets its own layout",
    ),
    "progress-not-a-bool": (dict(progress=1), TypeError, "progress: expected a bool, got 1"),
    "shuffle-seed-negative": (dict(shuffle_seed=-1), ValueError, "an int >= 0, got -1"),
    "nan-input": (
        dict(xs=np.where(np.arange(120).reshape(10, 4, 3) == 40, np.nan, 0.0)),
        ValueError,
        "must be finite (found NaN or inf): xs[3, 1, 1] is nan (sample 3)",
    ),
    "loss-returns-none": (
        dict(loss=lambda p, t: None),
        TypeError,
        "expected the callable to return a float scalar (or (scalar, aux)), got NoneType",
    ),
    "loss-a-class": (dict(loss=optax.GradientTransformation), TypeError, "got the class"),
    "loss-of-torch": (
        dict(loss=torch.nn.MSELoss()),
        TypeError,
        "got torch's torch.nn.modules.loss.MSELoss, which takes torch tensors",
    ),
    "named-loss-on-a-dict": (
        dict(model=DictOut()),
        TypeError,
        "mse: expected the model's prediction as an array (its first output when it returns "
        "a tuple), got dict",
    ),
    "stateful-three-outputs": (
        dict(model=ThreeOut(), stateful=True),
        TypeError,
        "expected ThreeOut to return (prediction, carry), got a tuple of 3",
    ),
    "variables-of-another-model": (
        dict(
            variables={"params": {"Dense_0": {"kernel": jnp.zeros((3, 5)), "bias": jnp.zeros(5)}}}
        ),
        ValueError,
        "expected the variables of this Regressor",
    ),
    "labels-beyond-the-classes": (
        dict(loss="cross_entropy", ys=np.arange(10) % 3),
        ValueError,
        "class labels must lie in [0, 2) (Regressor's prediction has 2 classes",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_calls_are_clear_errors(case: str) -> None:
    changes, error, message = BAD[case]
    with pytest.raises(error, match=re.escape(message)):
        _call(**changes)


def test_lecture_model_seq_lengths_bad_values() -> None:
    xs, ys = regression_data()
    model = lstm_jax.LSTMModeler(3, 4, 2)
    variables = model.init(jax.random.key(0), xs[0])
    for lengths, message in ((np.full(10, 5), "lengths in [1, 4]"), (np.ones(3, int), "(10,)")):
        with pytest.raises(ValueError, match=re.escape(message)):
            lstm_jax.fit(
                model, variables, xs, ys, optimizer=optax.sgd(0.1), epochs=1, seq_lengths=lengths
            )


def test_make_train_step_stateful_is_fit_stateful() -> None:
    """A hand loop over make_train_step(stateful=True), passing each carry on, is one
    epoch of fit(stateful=True)."""
    xs, ys = stateful_windows(np.arange(120) * 5 % VOCAB, batch_size=4, window=5)
    model = Stream()
    variables = model.init(jax.random.key(0), xs[:4])
    optimizer = optax.adam(0.02)
    step = lstm_jax.make_train_step(model, optimizer, loss="cross_entropy", stateful=True)
    state, opt_state, carry, total = variables, optimizer.init(variables["params"]), None, 0.0
    for k in range(len(xs) // 4):
        batch = slice(4 * k, 4 * k + 4)
        state, opt_state, value, carry = step(state, opt_state, xs[batch], ys[batch], carry=carry)
        total += float(value)
    trained, losses = lstm_jax.fit(
        model,
        variables,
        xs,
        ys,
        optimizer=optimizer,
        epochs=1,
        batch_size=4,
        loss="cross_entropy",
        stateful=True,
        batch_first=True,
    )
    assert_close(losses, [total], TRAINING[F32], "make_train_step stateful: loss")
    assert params_error(trained["params"], state["params"]) <= TRAINING[F32]


def test_progress_bar_and_chunk_losses(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    xs, ys = regression_data()
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    with caplog.at_level("INFO", logger="lstm_jax.train"):
        _, losses = lstm_jax.fit(
            model,
            variables,
            xs,
            ys,
            optimizer=optax.sgd(0.1),
            epochs=2,
            batch_size=5,
            batch_first=True,
            progress=True,
        )
    err = capsys.readouterr().err
    assert "jax fit" in err and "2/2" in err, err
    assert f"epoch 2 of 2: loss {losses[-1]:.6g}" in caplog.text


class DrawsDropout(nn.Module):
    """Dropout without a ``deterministic`` argument: it always draws a 'dropout' key."""

    stream: str = "dropout"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Dense(4)(x.mean(axis=1))
        return nn.Dense(2)(nn.Dropout(0.5, deterministic=False, rng_collection=self.stream)(h))


class BatchNormed(nn.Module):
    """Updates its 'batch_stats' in training (BatchNorm with batch statistics)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(2)(nn.BatchNorm(use_running_average=False)(x.mean(axis=1)))


def test_models_fit_cannot_train_are_refused_clearly() -> None:
    """A model drawing dropout keys without an rng, one drawing from another stream and
    one updating batch_stats in update() get ValueError/TypeError naming the cause (Flax's
    InvalidRngError / ModifyScopeVariableError before); fit and make_train_step now carry
    batch_stats (issue 22)."""
    xs, ys = regression_data()
    keys = {"params": jax.random.key(1), "dropout": jax.random.key(2)}
    draws = DrawsDropout()
    variables = draws.init(keys, xs[:2])
    with pytest.raises(ValueError, match=r"draws random numbers in training .* got none"):
        _call(model=draws, variables=variables)
    _call(model=draws, variables=variables, rng=jax.random.key(0))  # with one it trains
    other = DrawsDropout(stream="noise")
    noisy = other.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, xs[:2])
    with pytest.raises(ValueError, match="draws from an rng stream other than 'dropout'"):
        _call(model=other, variables=noisy, rng=jax.random.key(0))
    normed = BatchNormed()
    stats = normed.init(jax.random.key(1), xs[:2])
    rest, batch = {"batch_stats": stats["batch_stats"]}, (xs[:2], ys[:2])
    # issue 22: batch_stats are updated in training mode (fit, make_train_step); update(),
    # which returns params only, refuses rather than drop them
    trained, _ = lstm_jax.fit(
        normed, stats, xs, ys, optimizer=optax.sgd(0.1), epochs=1, batch_size=5, batch_first=True
    )
    moved = jax.tree.map(
        lambda a, b: bool(np.any(a != b)), trained["batch_stats"], rest["batch_stats"]
    )
    assert all(jax.tree.leaves(moved))
    step = lstm_jax.make_train_step(normed, optax.sgd(0.1), batch_first=True)
    stepped, _, _ = step(stats, optax.sgd(0.1).init(stats["params"]), *batch)
    assert "batch_stats" in stepped
    with pytest.raises(TypeError, match="update: BatchNormed updates a variable collection"):
        opt_state = optax.sgd(0.1).init(stats["params"])
        lstm_jax.train.update(
            normed, optax.sgd(0.1), "mse", stats["params"], rest, opt_state, *batch
        )
    with pytest.raises(ValueError, match="expected the variables of this BatchNormed"):
        _call(model=normed, variables={"params": stats["params"]})  # no batch_stats at all


def test_train_step_bad_inputs_are_clear_errors() -> None:
    """Bare params, another optimizer's state, another model's state and an int rng:
    named errors, not a KeyError, Optax's AttributeError or Flax's rngs ValueError."""
    xs, ys = regression_data()
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    optimizer = optax.adam(0.01)
    step = lstm_jax.make_train_step(model, optimizer, batch_first=True)
    state = optimizer.init(variables["params"])
    batch = (xs[:4], ys[:4])
    with pytest.raises(TypeError, match=re.escape("expected variables of the form {'params'")):
        step(variables["params"], state, *batch)
    sgd_state = optax.sgd(0.1, momentum=0.9).init(variables["params"])
    with pytest.raises(TypeError, match=r"\(ScaleByAdamState, EmptyState\)\), got \(TraceState"):
        step(variables, sgd_state, *batch)
    renamed = {"params": {f"x{k}": v for k, v in variables["params"].items()}}
    with pytest.raises(TypeError, match="over parameters of another tree structure"):
        step(variables, optimizer.init(renamed["params"]), *batch)
    wider = jax.tree.map(lambda a: jnp.zeros((*a.shape[:-1], a.shape[-1] + 1)), variables)
    with pytest.raises(ValueError, match="got one of other parameters"):
        step(variables, optimizer.init(wider["params"]), *batch)
    with pytest.raises(TypeError, match="rng: expected a JAX PRNG key"):
        step(variables, state, *batch, 0)
    with pytest.raises(TypeError, match="rng: expected a JAX PRNG key"):
        lstm_jax.train.update(model, optimizer, "mse", variables["params"], {}, state, *batch, 0)
    trained, _, _ = step(variables, state, *batch, jax.random.PRNGKey(0))  # a legacy key is one
    assert params_error(trained["params"], variables["params"]) > 0


def lbfgs() -> optax.GradientTransformationExtraArgs:
    search = optax.scale_by_backtracking_linesearch(max_backtracking_steps=4, store_grad=True)
    return optax.lbfgs(linesearch=search)


def test_lbfgs_gets_its_extra_arguments() -> None:
    """optax.lbfgs needs value=, grad= and value_fn= (its line search re-evaluates the
    loss): fit on full batches equals the loop Optax's documentation writes. (A
    backtracking line search: it compiles in a fraction of the default zoom's time.)"""
    xs, ys = regression_data(8)
    model = Regressor()
    variables = model.init(jax.random.key(1), xs[:2])
    trained, losses = lstm_jax.fit(
        model, variables, xs, ys, optimizer=lbfgs(), epochs=3, batch_size=8, batch_first=True
    )

    def objective(p: Any) -> jax.Array:
        return jnp.mean(jnp.square(model.apply({"params": p}, xs)[0] - ys))

    optimizer = lbfgs()

    @jax.jit
    def step(params: Any, state: Any) -> tuple:
        value, grad = jax.value_and_grad(objective)(params)
        updates, state = optimizer.update(
            grad, state, params, value=value, grad=grad, value_fn=objective
        )
        return optax.apply_updates(params, updates), state, value

    params, state, expected = variables["params"], optimizer.init(variables["params"]), []
    for _ in range(3):
        params, state, value = step(params, state)
        expected.append(float(value))
    assert_close(losses, expected, TRAINING[F32], "lbfgs: losses")
    assert params_error(trained["params"], params) <= TRAINING[F32]
    assert losses[-1] < losses[0]


def test_update_takes_an_optimizer_spec() -> None:
    """``update`` (and ``step_update``) take a spec as fit does (AttributeError before)."""
    xs, ys = regression_data()
    model = Regressor()
    params = model.init(jax.random.key(0), xs[:2])["params"]
    spec = lstm_jax.Adam(0.01, clip_norm=1.0)
    state = lstm_jax.as_optax(spec).init(params)
    by_spec = lstm_jax.train.update(model, spec, "mse", params, {}, state, xs[:4], ys[:4])
    by_optax = lstm_jax.train.update(
        model, lstm_jax.as_optax(spec), "mse", params, {}, state, xs[:4], ys[:4]
    )
    for a, b in zip(jax.tree.leaves(by_spec), jax.tree.leaves(by_optax), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_time_major_per_step_predictions_say_where_the_targets_are() -> None:
    """A time-major model's (T, B, V) logits against the (B, T) rows of ys: the error says
    that targets are rows in every layout and what to do."""
    tokens, _ = token_data(n=8, steps=5)
    model = Stream()  # batch-first inside; trained time-major, so its logits come (T, B, V)
    variables = model.init(jax.random.key(0), tokens[:2])
    with pytest.raises(ValueError, match=re.escape("a batch's targets are the rows ys[index]")):
        lstm_jax.fit(
            model,
            variables,
            tokens,
            tokens,
            optimizer=optax.sgd(0.1),
            epochs=1,
            batch_size=4,
            loss="cross_entropy",
        )


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_a_batch_first_model_trained_time_major_is_told_its_layout(loss: str) -> None:
    """A model that reads (B, T, F) given fit's default time-major (T, B, F) batches
    predicts T rows for B samples: the error names the layout and batch_first."""
    xs, ys = regression_data(n=8)
    ys = ys if loss == "mse" else (ys[:, 0] > 0).astype(np.int32)
    model = Regressor()  # averages axis 1: time only when batches come (B, T, F)
    variables = model.init(jax.random.key(0), xs[:2])
    with pytest.raises(ValueError) as refused:
        lstm_jax.fit(model, variables, xs, ys, optimizer=optax.sgd(0.1), epochs=1,
                     batch_size=2, loss=loss)  # fmt: skip
    message = str(refused.value)
    assert "the prediction has 4 rows where the batch has 2 samples" in message, message
    assert "(B, T, ...) with batch_first=True" in message, message
    trained, _ = lstm_jax.fit(model, variables, xs, ys, optimizer=optax.sgd(0.1), epochs=1,
                              batch_size=2, loss=loss, batch_first=True)  # fmt: skip
    assert jax.tree.structure(trained) == jax.tree.structure(variables)


class TrainFlag(nn.Module):
    """Flax's other convention: ``train: bool`` after x (dropout active when True)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = jnp.tanh(nn.Dense(6)(x.mean(axis=1)))
        return nn.Dense(2)(nn.Dropout(0.5, deterministic=not train)(h))


def test_a_train_flag_is_set_with_an_rng() -> None:
    """``train=`` is passed as deterministic= is (True with an rng: dropout on, keys
    fold_in(rng, step)); before, fit never set it and trained without dropout. The
    flag after x is not taken for a carry."""
    xs, ys = regression_data(8)
    model = TrainFlag()
    variables = model.init(jax.random.key(1), xs[:2])
    optimizer, rng = optax.sgd(0.1), jax.random.key(7)
    _, losses = lstm_jax.fit(
        model,
        variables,
        xs,
        ys,
        optimizer=optimizer,
        epochs=1,
        batch_size=4,
        batch_first=True,
        rng=rng,
    )

    def objective(p: Any, x: np.ndarray, y: np.ndarray, step: int) -> jax.Array:
        key = jax.random.fold_in(rng, step)
        out = model.apply({"params": p}, x, train=True, rngs={"dropout": key})
        return jnp.mean(jnp.square(out - y))

    params, state, expected = variables["params"], optimizer.init(variables["params"]), 0.0
    for step in range(2):
        batch = slice(4 * step, 4 * step + 4)
        value, grads = jax.value_and_grad(objective)(params, xs[batch], ys[batch], step)
        updates, state = optimizer.update(grads, state, params)
        params, expected = optax.apply_updates(params, updates), expected + float(value)
    assert_close(losses, [expected], TRAINING[F32], "train flag: losses")
    # no rng: refused (issue 22: it trained with train=False in silence); eval mode when asked
    with pytest.raises(ValueError, match="expected an rng"):
        lstm_jax.fit(
            model, variables, xs, ys, optimizer=optimizer, epochs=1, batch_size=4, batch_first=True
        )
    _, without = lstm_jax.fit(
        model,
        variables,
        xs,
        ys,
        optimizer=optimizer,
        epochs=1,
        batch_size=4,
        batch_first=True,
        deterministic=True,
    )
    assert scaled_error(without, losses) > 1e2 * TRAINING[F32]  # train=False
    with pytest.raises(TypeError, match="to take a carry after x"):
        _call(model=model, variables=variables, stateful=True)


class SizedTagger(TokenTagger):
    """A model of one's own whose fields are named as the lecture model's: input_size is
    its vocabulary, not features per step."""

    input_size: int = VOCAB
    output_size: int = VOCAB


def test_a_model_with_input_size_fields_is_not_the_lecture_model() -> None:
    """Before, any module with int input_size and output_size fields was taken for the
    lecture's: (N, T) tokens were made (N, 1, T) floats and refused ("expected 11
    features per step"). Now it trains as any model: tokens stay integers."""
    tokens, labels = token_data(n=8)
    model = SizedTagger()
    variables = model.init(jax.random.key(0), tokens[:2].T)
    optimizer = optax.adam(0.02)
    trained, losses = lstm_jax.fit(
        model,
        variables,
        tokens,
        labels,
        optimizer=optimizer,
        epochs=1,
        batch_size=4,
        loss="cross_entropy",
    )
    reference, expected = optax_loop(
        model,
        variables["params"],
        optimizer,
        cross_entropy,
        tokens,
        labels,
        epoch_orders(8, 1),
        4,
        time_major=True,
    )
    assert_close(losses, expected, TRAINING[F32], "sized token model: losses")
    assert params_error(trained["params"], reference) <= TRAINING[F32]

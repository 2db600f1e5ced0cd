"""fit trains a model with BatchNorm as torch trains it (training mode: batch statistics,
running statistics updated and returned), linen and NNX, against a torch loop over the
same data order; dropout is never dropped in silence; NNX models with list attributes."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax
from lstm_jax.common.tolerances import TRAINING, assert_close

F64 = np.dtype(np.float64)
N, T, I, H, C = 12, 5, 3, 6, 3


class TorchBN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(I, H, batch_first=True)
        self.bn = torch.nn.BatchNorm1d(H, momentum=0.2)
        self.fc = torch.nn.Linear(H, C)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(self.bn(out[:, -1]))


class LinenBN(nn.Module):
    def setup(self) -> None:
        self.lstm = lstm_jax.LSTM(H, batch_first=True)
        self.bn = lstm_jax.BatchNorm1d(H, momentum=0.2)
        self.fc = nn.Dense(C)

    def __call__(self, x, train: bool = False):
        out, _ = self.lstm(x)
        return self.fc(self.bn(out[:, -1], use_running_average=not train))


class NnxBN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, dtype=np.float64) -> None:
        self.lstm = lstm_jax.nnx.LSTM(I, H, batch_first=True, param_dtype=dtype, rngs=rngs)
        self.bn = lstm_jax.nnx.BatchNorm1d(H, momentum=0.2, param_dtype=dtype)
        self.fc = nnx.Linear(H, C, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):
        out, _ = self.lstm(x)
        return self.fc(self.bn(out[:, -1]))


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, T, I)), rng.integers(0, C, size=N)


def _torch_fit(model, xs, ys, epochs, batch_size, seed):
    """The reference: torch's own loop over lstm_jax.epoch_orders (training mode)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    model.train()
    for order in lstm_jax.epoch_orders(len(xs), epochs, seed):
        total = 0.0
        for start in range(0, len(xs), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(xs[index])), torch.from_numpy(ys[index])
            )
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        losses.append(total)
    return np.array(losses)


def _check(sd: dict, tm: torch.nn.Module, tol: float) -> None:
    for key, value in tm.state_dict().items():
        assert_close(np.asarray(sd[key], np.float64), value.numpy().astype(np.float64), tol, key)


def test_linen_fit_updates_batch_statistics_as_torch():
    xs, ys = _data()
    with jax.enable_x64():
        torch.manual_seed(0)
        tm = TorchBN().double()
        variables = lstm_jax.params_from_torch(tm.state_dict(), LinenBN(), example=(xs[:2],))
        run = functools.partial(
            lstm_jax.fit, LinenBN(), variables, xs, ys, optimizer=lstm_jax.SGD(0.1),
            epochs=2, batch_size=4, shuffle_seed=3, loss="cross_entropy", batch_first=True,
        )  # fmt: skip
        trained, losses = run()
        want = _torch_fit(tm, xs, ys, 2, 4, 3)
        assert_close(losses, want, TRAINING[F64], "losses")
        assert int(trained["batch_stats"]["bn"]["num_batches_tracked"]) == 6
        _check(lstm_jax.params_to_torch(trained, LinenBN()), tm, TRAINING[F64])

        # eval mode on purpose: running statistics kept, and training differs
        kept, eval_losses = run(deterministic=True)
        assert int(kept["batch_stats"]["bn"]["num_batches_tracked"]) == 0
        assert np.abs(eval_losses - losses).max() > 1e-3


def test_nnx_fit_updates_batch_statistics_as_torch():
    xs, ys = _data()
    with jax.enable_x64():
        torch.manual_seed(0)
        tm = TorchBN().double()
        model = NnxBN(nnx.Rngs(0))
        lstm_jax.nnx.load_state_dict(model, tm.state_dict())
        model, losses = lstm_jax.fit(
            model,
            None,
            xs,
            ys,
            optimizer=lstm_jax.SGD(0.1),
            epochs=2,
            batch_size=4,
            shuffle_seed=3,
            loss="cross_entropy",
            batch_first=True,
        )
        want = _torch_fit(tm, xs, ys, 2, 4, 3)
        assert_close(losses, want, TRAINING[F64], "losses")
        assert int(model.bn.num_batches_tracked.get_value()) == 6
        _check(lstm_jax.nnx.state_dict(model), tm, TRAINING[F64])


class TrainFlagDropout(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Dense(4)(x.mean(axis=1))
        return nn.Dense(C)(nn.Dropout(0.5, deterministic=not train)(h))


class InnerLSTMDropout(nn.Module):
    """An lstm_jax.LSTM with dropout, called without the training flag passed on."""

    @nn.compact
    def __call__(self, x):
        out, _ = lstm_jax.LSTM(4, num_layers=2, dropout=0.3, batch_first=True)(x)
        return nn.Dense(C)(out[:, -1])


class NnxDropout(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.fc = nnx.Linear(I, C, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.fc(x.mean(axis=1)))


def _fit(model, variables, **kw):
    xs, ys = _data()
    return lstm_jax.fit(
        model,
        variables,
        xs.astype(np.float32),
        ys,
        optimizer=lstm_jax.SGD(0.1),
        epochs=1,
        batch_size=4,
        loss="cross_entropy",
        batch_first=True,
        **kw,
    )


def test_dropout_without_an_rng_is_refused_not_silently_dropped():
    xs, _ = _data()
    x = xs[:2].astype(np.float32)
    model = TrainFlagDropout()
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"expected an rng.*deterministic=True"):
        _fit(model, variables)
    _fit(model, variables, deterministic=True)  # eval mode, asked for
    _fit(model, variables, rng=jax.random.key(1))

    inner = InnerLSTMDropout()
    variables = inner.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="called deterministic=True"):
        _fit(inner, variables, rng=jax.random.key(1))
    _fit(inner, variables, deterministic=True)

    with pytest.raises(ValueError, match="the model has dropout"):
        _fit(NnxDropout(nnx.Rngs(0)), None)
    _fit(NnxDropout(nnx.Rngs(0)), None, deterministic=True)
    _fit(NnxDropout(nnx.Rngs(0)), None, rng=jax.random.key(1))


class ConvLSTM(nnx.Module):
    """A Conv1d + LSTM forecaster whose Conv holds a list attribute (padding)."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(I, 4, kernel_size=(5,), padding=[(2, 2)], rngs=rngs)
        self.lstm = lstm_jax.nnx.LSTM(4, H, batch_first=True, rngs=rngs)
        self.fc = nnx.Linear(H, 1, rngs=rngs)

    def __call__(self, x):
        out, _ = self.lstm(self.conv(x))
        return self.fc(out[:, -1])


def test_nnx_model_with_list_attributes_trains_as_nnx_jit_takes_it():
    xs, _ = _data()
    xs = xs.astype(np.float32)
    ys = xs[:, -1, :1]
    model = ConvLSTM(nnx.Rngs(0))
    twin = nnx.clone(model)
    model, losses = lstm_jax.fit(
        model,
        None,
        xs,
        ys,
        optimizer=lstm_jax.SGD(0.05),
        epochs=2,
        batch_size=4,
        batch_first=True,
    )
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]

    @nnx.jit
    def step(m, x, y):  # the reference: nnx.jit accepts the same module
        def objective(m):
            return ((m(x) - y) ** 2).mean()

        loss, grads = nnx.value_and_grad(objective)(m)
        nnx.update(m, jax.tree.map(lambda p, g: p - 0.05 * g, nnx.state(m, nnx.Param), grads))
        return loss

    total = [
        sum(float(step(twin, xs[i : i + 4], ys[i : i + 4])) for i in range(0, N, 4))
        for _ in range(2)
    ]
    assert_close(losses, np.array(total), TRAINING[np.dtype(np.float32)], "losses")


def test_batch_statistics_resume_from_a_checkpoint(tmp_path):
    """A run stopped after 2 epochs and resumed to 4 ends bitwise as 4 epochs at once,
    running statistics included (they are saved with the parameters)."""
    xs, ys = _data()
    xs = xs.astype(np.float32)
    model = LinenBN()
    variables = model.init(jax.random.key(0), xs[:2])
    options = dict(
        optimizer=lstm_jax.SGD(0.1),
        batch_size=4,
        shuffle_seed=1,
        loss="cross_entropy",
        batch_first=True,
    )
    whole, _ = lstm_jax.fit(model, variables, xs, ys, epochs=4, **options)
    lstm_jax.fit(model, variables, xs, ys, epochs=2, checkpoint_dir=tmp_path, **options)
    resumed, _ = lstm_jax.fit(
        model, variables, xs, ys, epochs=4, checkpoint_dir=tmp_path, **options
    )
    assert int(resumed["batch_stats"]["bn"]["num_batches_tracked"]) == 12
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))

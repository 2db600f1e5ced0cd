"""Stateful (truncated BPTT) and variable-length training: ``lstm_jax.fit`` against
``lstm_torch.fit``, and ``lstm_torch.fit`` against the loops written out in torch.

Stateful: sequences cut into consecutive windows (``stateful_windows``); batch k + 1
starts from batch k's ``hidden_cell``, detached (pytorch/examples'
``repackage_hidden``); each epoch starts from zeros. Variable lengths: per-sample
``seq_lengths``, each batch packed on the torch side, the prediction taken at each
row's last valid step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import helpers
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import lstm_jax
import lstm_torch
from lstm_jax.common.data import epoch_orders, stateful_windows
from lstm_jax.common.optim import SGD, Adam
from lstm_jax.common.tolerances import TRAINING, assert_close, scaled_error

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
MODEL = {"input_size": 2, "hidden_layer_size": 8, "output_size": 1}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stream_data(batch_size: int = 4, window: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A long two-feature signal cut into windows; the target is the next value of
    the first feature after each window."""
    t = np.arange(4 * (6 * window + 1) * batch_size)
    signal = np.stack([np.sin(0.13 * t), np.cos(0.31 * t) * 0.5], axis=1).astype(np.float32)
    xs, ys = stateful_windows(signal, batch_size, window)
    return xs, ys[:, -1, :1]


def length_data(n: int = 18, steps: int = 7) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((n, steps, 2)).astype(np.float32)
    lengths = rng.integers(1, steps + 1, n)
    last = xs[np.arange(n), lengths - 1]
    ys = (np.tanh(last[:, :1] + 0.5 * last[:, 1:]) + 0.1 * lengths[:, None]).astype(np.float32)
    return xs, ys, lengths


def torch_model(dtype: np.dtype, **extra: Any) -> lstm_torch.LSTMModeler:
    torch.manual_seed(0)
    model = lstm_torch.LSTMModeler(**MODEL, **extra)
    return model.double() if dtype == F64 else model


def train_both(dtype: np.dtype, xs: np.ndarray, ys: np.ndarray, **options: Any) -> tuple:
    """(torch losses, jax losses, torch params, jax params) from the same start."""
    extra = options.pop("model", {})
    tm = torch_model(dtype, **extra)
    with helpers.x64_if(dtype):
        jm = lstm_jax.LSTMModeler(
            **MODEL, **extra, param_dtype=jnp.float64 if dtype == F64 else jnp.float32
        )
        variables = lstm_jax.params_from_torch(tm.state_dict())
        trained, jax_losses = lstm_jax.fit(jm, variables, xs, ys, **options)
    torch_losses = lstm_torch.fit(tm, xs, ys, **options)
    torch_params = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
    return torch_losses, jax_losses, torch_params, lstm_jax.params_to_torch(trained)


def assert_parity(run: tuple, dtype: np.dtype, what: str) -> None:
    torch_losses, jax_losses, torch_params, jax_params = run
    tol = TRAINING[dtype]
    assert np.all(np.isfinite(torch_losses))
    assert_close(jax_losses, torch_losses, tol, f"{what}: losses")
    err = max(scaled_error(jax_params[k], torch_params[k]) for k in torch_params)
    assert err <= tol, f"{what}: parameters: scaled error {err:.3g} exceeds {tol:.1g}"


@pytest.mark.parametrize(
    ("optimizer", "dtype"),
    [(SGD(0.05, momentum=0.9), F32), (Adam(0.01), F32), (Adam(0.01), F64)],
    ids=["sgd-float32", "adam-float32", "adam-float64"],
)
def test_stateful_parity(optimizer: Any, dtype: np.dtype) -> None:
    xs, ys = stream_data()
    run = train_both(dtype, xs, ys, optimizer=optimizer, epochs=4, batch_size=4, stateful=True)
    assert run[0][-1] < run[0][0]  # it trains
    assert_parity(run, dtype, "stateful")


def test_stateful_two_layers_batch_first() -> None:
    xs, ys = stream_data()
    options = dict(optimizer=Adam(0.01), epochs=3, batch_size=4, stateful=True)
    run = train_both(F32, xs, ys, model={"num_layers": 2, "batch_first": True}, **options)
    assert_parity(run, F32, "stateful, 2 layers, batch_first")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_seq_lengths_parity(dtype: np.dtype) -> None:
    """N=18, B=4: a remainder batch of 2; shuffled; lengths 1..7."""
    xs, ys, lengths = length_data()
    options = dict(optimizer=Adam(0.01), epochs=5, batch_size=4, shuffle_seed=2)
    run = train_both(dtype, xs, ys, seq_lengths=lengths, **options)
    assert run[0][-1] < run[0][0]
    assert_parity(run, dtype, "seq_lengths")


def test_stateful_with_seq_lengths_bidirectional() -> None:
    xs, ys = stream_data()
    lengths = np.random.default_rng(0).integers(2, xs.shape[1] + 1, len(xs))
    options = dict(optimizer=SGD(0.05), epochs=3, batch_size=4, stateful=True)
    run = train_both(F32, xs, ys, seq_lengths=lengths, model={"bidirectional": True}, **options)
    assert_parity(run, F32, "stateful + seq_lengths, bidirectional")


def repackaged_loop(
    model: lstm_torch.LSTMModeler,
    xs: np.ndarray,
    ys: np.ndarray,
    lr: float,
    epochs: int,
    batch_size: int,
) -> list[float]:
    """pytorch/examples' word_language_model loop, written out: hidden zeroed per
    epoch, repackaged (detached) per batch; plain SGD."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        hidden, total = model.zero_hidden_cell(batch_size), 0.0
        for start in range(0, len(xs), batch_size):
            x = torch.from_numpy(xs[start : start + batch_size]).transpose(0, 1)
            model.zero_grad()
            model.hidden_cell = tuple(h.detach() for h in hidden)
            loss = torch.nn.functional.mse_loss(model(x), torch.from_numpy(ys[start:][:batch_size]))
            hidden = model.hidden_cell
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total)
    return losses


def test_torch_stateful_is_the_repackage_hidden_loop() -> None:
    xs, ys = stream_data()
    fitted, reference = torch_model(F32), torch_model(F32)
    losses = lstm_torch.fit(
        fitted, xs, ys, optimizer=SGD(0.05), epochs=3, batch_size=4, stateful=True
    )
    np.testing.assert_array_equal(losses, repackaged_loop(reference, xs, ys, 0.05, 3, 4))
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(fitted.state_dict()[key].numpy(), value.numpy())
    # The carried state matters: resetting it every batch trains elsewhere.
    reset = torch_model(F32)
    plain = lstm_torch.fit(reset, xs, ys, optimizer=SGD(0.05), epochs=3, batch_size=4)
    assert scaled_error(plain, losses) > 1e2 * TRAINING[F32]


def test_torch_seq_lengths_is_a_packed_loop() -> None:
    """lstm_torch.fit(seq_lengths=) = a loop calling the model on each batch with its
    rows' lengths; and the lengths matter."""
    xs, ys, lengths = length_data()
    fitted, reference = torch_model(F32), torch_model(F32)
    losses = lstm_torch.fit(
        fitted,
        xs,
        ys,
        optimizer=SGD(0.05),
        epochs=2,
        batch_size=4,
        shuffle_seed=1,
        seq_lengths=lengths,
    )
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    expected = []
    for order in epoch_orders(len(xs), 2, 1):
        total = 0.0
        for start in range(0, len(order), 4):
            index = order[start : start + 4]
            reference.zero_grad()
            reference.hidden_cell = reference.zero_hidden_cell(len(index))
            x = torch.from_numpy(xs[index]).transpose(0, 1)
            y_hat = reference(x, seq_lengths=torch.from_numpy(lengths[index]))
            loss = torch.nn.functional.mse_loss(y_hat, torch.from_numpy(ys[index]))
            loss.backward()
            optimizer.step()
            total += loss.item()
        expected.append(total)
    np.testing.assert_array_equal(losses, expected)
    full = lstm_torch.fit(
        torch_model(F32), xs, ys, optimizer=SGD(0.05), epochs=2, batch_size=4, shuffle_seed=1
    )
    assert scaled_error(full, losses) > 1e2 * TRAINING[F32]


def test_torch_stateful_needs_ordered_whole_batches() -> None:
    xs, ys = stream_data()
    model = torch_model(F32)
    with pytest.raises(ValueError, match="expected shuffle_seed=None"):
        lstm_torch.fit(
            model, xs, ys, optimizer=SGD(0.1), epochs=1, batch_size=4, stateful=True, shuffle_seed=0
        )
    with pytest.raises(ValueError, match="multiple of batch_size"):
        lstm_torch.fit(model, xs, ys, optimizer=SGD(0.1), epochs=1, batch_size=5, stateful=True)


def test_torch_callable_loss_gets_int64_labels() -> None:
    """Integer labels reach a callable torch loss as torch's int64 (``F.cross_entropy``
    refuses int32) and train as the named ``"cross_entropy"``."""
    xs, _, lengths = length_data(n=8)
    labels = np.random.default_rng(1).integers(0, 3, len(xs))
    model = {"input_size": 2, "hidden_layer_size": 8, "output_size": 3}
    options = dict(optimizer=SGD(0.05), epochs=2, batch_size=4, seq_lengths=lengths)
    runs = []
    for loss in ("cross_entropy", torch.nn.functional.cross_entropy):
        torch.manual_seed(0)
        tm = lstm_torch.LSTMModeler(**model)
        runs.append(lstm_torch.fit(tm, xs, labels, loss=loss, **options))
    assert_close(runs[1], runs[0], TRAINING[F32], "callable cross_entropy")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (dict(progress=1), TypeError, "progress: expected a bool, got 1"),
        (dict(stateful="yes"), TypeError, "stateful: expected a bool, got 'yes'"),
        (dict(clip_norm=-1.0), ValueError, "clip_norm: expected a finite number > 0, got -1.0"),
        (dict(clip_norm=0), ValueError, "clip_norm: expected a finite number > 0, got 0"),
        (dict(clip_norm="1"), TypeError, "clip_norm: expected None or a number, got '1'"),
        (dict(loss=torch.nn.MSELoss), TypeError, "got the class MSELoss (an instance, MSELoss()"),
        (dict(shuffle_seed=-1), ValueError, "shuffle_seed must be None or an int >= 0, got -1"),
    ],
    ids=[
        "progress-int",
        "stateful-str",
        "clip-negative",
        "clip-zero",
        "clip-str",
        "loss-class",
        "shuffle-negative",
    ],
)
def test_torch_fit_refuses_bad_flags_and_clip_norm(
    options: dict, error: type, message: str
) -> None:
    """A negative clip_norm would flip every gradient (torch's clip_grad_norm_ scales by
    it unchecked), a non-bool progress was taken as truthy, ``loss=nn.MSELoss`` (the
    class) was called as a loss: all refused, model untouched."""
    xs, ys = stream_data()
    model = torch_model(F32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(error, match=re.escape(message)):
        lstm_torch.fit(model, xs, ys, optimizer=optimizer, epochs=1, batch_size=4, **options)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_torch_fit_puts_the_stored_hidden_cell_back() -> None:
    """After fit in batches of 4 (N = 10: a last batch of 2), the model predicts one
    sequence as before fit: fit leaves hidden_cell as it found it, as it does the mode
    (it held the last batch's (1, 2, H) state, so the lecture's one-sequence prediction
    raised "expected h_0 of shape (1, 1, 8)")."""
    xs, ys, _ = length_data(n=10)
    model = torch_model(F32).eval()
    stored = model.zero_hidden_cell(1)
    model.hidden_cell = stored
    lstm_torch.fit(model, xs, ys, optimizer=SGD(0.05), epochs=1, batch_size=4)
    assert model.hidden_cell is stored and not model.training
    with torch.no_grad():
        prediction = model(torch.from_numpy(xs[0]))
        model.hidden_cell = None
        assert torch.equal(prediction, model(torch.from_numpy(xs[0])))  # from zeros


def test_nan_in_the_padding_trains_as_zeros_in_both_backends() -> None:
    """With seq_lengths, the steps past each row's length are never read: NaN there
    trains exactly as zeros there (fit refused any NaN before); one inside a length is
    still refused, named."""
    xs, ys, lengths = length_data(n=8, steps=5)
    padding = np.arange(xs.shape[1])[None, :] >= lengths[:, None]
    zeros, nans = np.where(padding[..., None], 0.0, xs), np.where(padding[..., None], np.nan, xs)
    assert np.isnan(nans).any()
    options = dict(optimizer=Adam(0.01), epochs=2, batch_size=4, seq_lengths=lengths)
    runs = {
        name: train_both(F32, data, ys, **options) for name, data in (("0", zeros), ("nan", nans))
    }
    for a, b in zip(runs["0"][:2], runs["nan"][:2], strict=True):
        np.testing.assert_array_equal(a, b)
    assert_parity(runs["nan"], F32, "NaN padding")
    inside = nans.copy()
    inside[2, lengths[2] - 1, 0] = np.nan
    message = rf"xs\[2, {lengths[2] - 1}, 0\] is nan \(sample 2\)"
    with pytest.raises(ValueError, match=message):
        lstm_torch.fit(torch_model(F32), inside, ys, **options)
    jm = lstm_jax.LSTMModeler(**MODEL)
    with pytest.raises(ValueError, match=message):
        lstm_jax.fit(
            jm, lstm_jax.params_from_torch(torch_model(F32).state_dict()), inside, ys, **options
        )

"""The rest of the package takes Flax NNX modules: ``lstm_jax.fit`` (training the module in
place), ``save_checkpoint`` / ``load_checkpoint`` and ``compare_with_torch``."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax
import lstm_jax.nnx
import lstm_torch
from lstm_jax.common.optim import SGD, Adam
from lstm_jax.common.tolerances import TRAINING, assert_close, scaled_error

F32 = np.dtype(np.float32)
LECTURE_X = np.array([[32.0], [37.0], [25.0]], np.float32)
LECTURE_Y = np.array([[34.0], [36.0], [24.0]], np.float32)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pair(*args: int, **options: object) -> tuple[lstm_torch.LSTMModeler, lstm_jax.nnx.LSTMModeler]:
    torch.manual_seed(0)
    tm = lstm_torch.LSTMModeler(*args, **options)
    model = lstm_jax.nnx.LSTMModeler(*args, **options, rngs=nnx.Rngs(0))
    model.load_state_dict(tm.state_dict())
    return tm, model


# --- fit ----------------------------------------------------------------------------------


def test_fit_trains_an_nnx_module_in_place_on_torchs_trajectory() -> None:
    tm, model = pair(1, 10, 1)
    model(np.ones(4, np.float32))  # a stored state left behind: fit resets it per batch
    options = {"optimizer": SGD(0.001), "epochs": 100, "shuffle_seed": 0}
    returned, losses = lstm_jax.fit(model, None, LECTURE_X, LECTURE_Y, **options)
    assert returned is model
    torch_losses = lstm_torch.fit(tm, LECTURE_X, LECTURE_Y, **options)
    assert_close(losses, torch_losses, TRAINING[F32], "per-epoch losses")
    trained = model.state_dict()
    error = max(scaled_error(trained[k], v.detach().numpy()) for k, v in tm.state_dict().items())
    assert error <= TRAINING[F32], f"final parameters: scaled error {error:.3g}"
    with pytest.raises(TypeError, match="an NNX module holds its own parameters"):
        lstm_jax.fit(model, {"params": {}}, LECTURE_X, LECTURE_Y, **options)


def test_fit_of_an_nnx_module_matches_the_linen_twin_stateful_with_adam() -> None:
    """Stateful (the stored hidden_cell carried between batches) and batched, with Adam:
    the NNX module and its linen twin train alike."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((8, 5, 2)).astype(np.float32)
    ys = rng.standard_normal((8, 3)).astype(np.float32)
    _, model = pair(2, 6, 3, num_layers=2, batch_first=True)
    linen_model, variables = lstm_jax.nnx.to_linen(model)
    options = {"optimizer": Adam(0.01), "epochs": 5, "batch_size": 2, "stateful": True}
    trained, linen_losses = lstm_jax.fit(linen_model, variables, xs, ys, **options)
    _, losses = lstm_jax.fit(model, None, xs, ys, **options)
    assert_close(losses, linen_losses, TRAINING[F32], "stateful losses")
    linen_params = lstm_jax.params_to_torch(trained)
    assert (
        max(scaled_error(v, linen_params[k]) for k, v in model.state_dict().items())
        <= TRAINING[F32]
    )
    fresh = pair(2, 6, 3, num_layers=2, batch_first=True)[1]
    _, stateless = lstm_jax.fit(fresh, None, xs, ys, **{**options, "stateful": False})
    assert not np.allclose(stateless, losses)  # the carry mattered


def test_fit_of_an_nnx_module_uses_fits_rng_for_dropout() -> None:
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((6, 4, 2)).astype(np.float32)
    ys = rng.standard_normal((6, 1)).astype(np.float32)
    runs = {}
    for name, key in (("a", 0), ("b", 0), ("c", 1), ("eval", None)):
        _, model = pair(2, 5, 1, num_layers=3, dropout=0.5)
        options = {"optimizer": SGD(0.01), "epochs": 3, "batch_size": 3}
        rng_key = None if key is None else jax.random.key(key)
        runs[name] = lstm_jax.fit(model, None, xs, ys, rng=rng_key, **options)[1]
    assert np.array_equal(runs["a"], runs["b"])  # the same key, the same masks
    assert not np.allclose(runs["a"], runs["c"])
    assert not np.allclose(runs["a"], runs["eval"])
    _, model = pair(2, 5, 1, num_layers=3, dropout=0.5)
    no_dropout = lstm_jax.fit(model, None, xs, ys, optimizer=SGD(0.01), epochs=3, batch_size=3)[1]
    assert np.array_equal(no_dropout, runs["eval"])  # without rng: eval mode

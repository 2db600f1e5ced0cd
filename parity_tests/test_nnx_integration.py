"""The rest of the package takes Flax NNX modules: ``lstm_jax.fit`` (training the module in
place), ``save_checkpoint`` / ``load_checkpoint`` and ``compare_with_torch``."""

from __future__ import annotations

import shutil
from pathlib import Path

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import safetensors.torch
import torch
from flax import nnx

import lstm_jax
import lstm_jax.nnx
import lstm_torch
from lstm_jax.common.lecture import LECTURE_X, LECTURE_Y
from lstm_jax.common.optim import SGD, Adam
from lstm_jax.common.tolerances import TRAINING, assert_close, scaled_error

F32 = np.dtype(np.float32)


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
        mode = {"deterministic": True} if key is None else {}  # eval mode, asked for
        runs[name] = lstm_jax.fit(model, None, xs, ys, rng=rng_key, **options, **mode)[1]
    assert np.array_equal(runs["a"], runs["b"])  # the same key, the same masks
    assert not np.allclose(runs["a"], runs["c"])
    assert not np.allclose(runs["a"], runs["eval"])
    _, model = pair(2, 5, 1, num_layers=3, dropout=0.5)
    # without rng: refused (issue 22; before, eval mode in silence)
    with pytest.raises(ValueError, match="the model has dropout"):
        lstm_jax.fit(model, None, xs, ys, optimizer=SGD(0.01), epochs=3, batch_size=3)


# --- checkpoints ----------------------------------------------------------------------------


def _bitwise(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype and np.array_equal(a[k], b[k]) for k in a
    )


def test_nnx_checkpoints_are_torchs_files_both_ways(tmp_path: Path) -> None:
    tm, model = pair(2, 5, 3, num_layers=2, bidirectional=True, proj_size=2)
    reference = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
    path = tmp_path / "nnx.safetensors"
    lstm_jax.save_checkpoint(path, model)
    rebuilt = lstm_torch.load_checkpoint(path)  # the file's metadata is enough for torch
    assert isinstance(rebuilt, lstm_torch.LSTMModeler)
    assert _bitwise({k: v.numpy() for k, v in rebuilt.state_dict().items()}, reference)
    plain = lstm_torch.LSTMModeler(2, 5, 3, num_layers=2, bidirectional=True, proj_size=2)
    plain.load_state_dict(safetensors.torch.load_file(path), strict=True)
    assert _bitwise({k: v.detach().numpy() for k, v in plain.state_dict().items()}, reference)

    torch_path = tmp_path / "torch.safetensors"
    lstm_torch.save_checkpoint(torch_path, tm)
    _, fresh = pair(2, 5, 3, num_layers=2, bidirectional=True, proj_size=2)
    fresh.load_state_dict({k: np.zeros_like(v) for k, v in reference.items()})
    loaded, state = lstm_jax.load_checkpoint(torch_path, fresh)
    assert loaded is fresh and isinstance(state, nnx.State)
    assert _bitwise(fresh.state_dict(), reference)

    linen_path = tmp_path / "linen.safetensors"  # a linen file into the NNX twin
    linen_model, variables = lstm_jax.nnx.to_linen(model)
    lstm_jax.save_checkpoint(linen_path, variables, linen_model)
    twin = lstm_jax.nnx.LSTMModeler(
        2, 5, 3, num_layers=2, bidirectional=True, proj_size=2, rngs=nnx.Rngs(5)
    )
    lstm_jax.load_checkpoint(linen_path, twin)
    assert _bitwise(twin.state_dict(), reference)


def test_nnx_checkpoint_of_another_configuration_is_refused_unchanged(tmp_path: Path) -> None:
    _, model = pair(2, 5, 3)
    path = tmp_path / "a.safetensors"
    lstm_jax.save_checkpoint(path, model)
    other = lstm_jax.nnx.LSTMModeler(2, 6, 3, rngs=nnx.Rngs(0))
    before = other.state_dict()
    with pytest.raises(lstm_jax.CheckpointError, match="hidden_layer_size: 5 vs 6"):
        lstm_jax.load_checkpoint(path, other)
    assert _bitwise(other.state_dict(), before)
    lstm = lstm_jax.nnx.LSTM(2, 5, rngs=nnx.Rngs(0))
    with pytest.raises(lstm_jax.CheckpointError, match="another configuration"):
        lstm_jax.load_checkpoint(path, lstm)
    with pytest.raises(TypeError, match="holds its parameters: call save_checkpoint"):
        lstm_jax.save_checkpoint(tmp_path / "b.safetensors", nnx.state(other), other)
    assert not (tmp_path / "b.safetensors").exists()


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(9, 3)
        self.rnn = torch.nn.LSTM(3, 4, batch_first=True)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out[:, -1])


class NNXNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(9, 3, rngs=rngs)
        self.rnn = lstm_jax.nnx.LSTM(3, 4, batch_first=True, rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out[:, -1])


def test_own_nnx_model_round_trips_through_torch_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch_net = TorchNet()
    reference = {k: v.detach().numpy().copy() for k, v in torch_net.state_dict().items()}
    model = NNXNet(nnx.Rngs(0))
    path = tmp_path / "own.safetensors"
    lstm_torch.save_checkpoint(path, torch_net)
    lstm_jax.load_checkpoint(path, model)
    assert _bitwise(lstm_jax.nnx.state_dict(model), reference)
    back = tmp_path / "back.safetensors"
    lstm_jax.save_checkpoint(back, model)
    fresh = TorchNet()
    fresh.load_state_dict(safetensors.torch.load_file(back), strict=True)
    assert _bitwise({k: v.detach().numpy() for k, v in fresh.state_dict().items()}, reference)
    with pytest.raises(lstm_jax.CheckpointError, match="kind"):
        lstm_jax.load_checkpoint(back, lstm_jax.nnx.LSTM(3, 4, rngs=nnx.Rngs(0)))


# --- compare_with_torch -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_compare_with_torch_takes_the_nnx_modeler_and_leaves_both_as_they_were(dtype: type) -> None:
    with helpers.x64_if(dtype):
        torch.manual_seed(0)
        tm = lstm_torch.LSTMModeler(2, 5, 3, num_layers=2)
        tm = tm.double() if dtype == np.float64 else tm
        model = lstm_jax.nnx.LSTMModeler(2, 5, 3, num_layers=2, param_dtype=dtype, rngs=nnx.Rngs(0))
        model.load_state_dict(tm.state_dict())
        rng = np.random.default_rng(0)
        x = rng.standard_normal((6, 4, 2)).astype(dtype)
        h0 = rng.standard_normal((2, 4, 5)).astype(dtype)
        stored, torch_stored = model.hidden_cell, tm.hidden_cell
        params = model.state_dict()
        report = lstm_jax.compare_with_torch(tm, model, x, initial_state=(h0, h0))
    assert report.ok, str(report)
    names = {d.name for d in report.differences}
    assert {"output[1].h", "output[1].c", "grad args[0]", "grad h_0", "grad linear.weight"} <= names
    assert "nnx.LSTMModeler" in str(report)
    assert all(np.array_equal(a, b) for a, b in zip(model.hidden_cell, stored, strict=True))
    assert tm.hidden_cell is torch_stored
    assert model.lstm.deterministic is False  # still in training mode: the copy ran in eval
    assert _bitwise(model.state_dict(), params)


def test_compare_with_torch_on_nnx_models_catches_a_swapped_gate() -> None:
    torch.manual_seed(0)
    torch_lstm = torch.nn.LSTM(3, 4, bidirectional=True)
    model = lstm_jax.nnx.LSTM(3, 4, bidirectional=True, rngs=nnx.Rngs(0))
    sd = {k: v.detach().numpy().copy() for k, v in torch_lstm.state_dict().items()}
    model.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    assert lstm_jax.compare_with_torch(torch_lstm, model, x).ok
    w = sd["weight_hh_l0_reverse"]
    model.load_state_dict({**sd, "weight_hh_l0_reverse": np.concatenate([w[4:8], w[:4], w[8:]])})
    report = lstm_jax.compare_with_torch(torch_lstm, model, x)
    assert not report.ok and not report.forward.ok


def test_compare_with_torch_takes_an_own_nnx_model_with_integer_inputs() -> None:
    torch.manual_seed(0)
    torch_net = TorchNet()
    model = NNXNet(nnx.Rngs(0))
    lstm_jax.nnx.load_state_dict(model, torch_net.state_dict())
    tokens = np.random.default_rng(0).integers(0, 9, (3, 7))
    report = lstm_jax.compare_with_torch(torch_net, model, tokens)
    assert report.ok, str(report)
    assert "grad embed.weight" in {d.name for d in report.differences}
    assert not any(
        d.name == "grad args[0]" for d in report.differences
    )  # tokens: not differentiated


def test_fit_of_an_nnx_module_resumes_from_its_checkpoints_bitwise(tmp_path: Path) -> None:
    """fit(checkpoint_dir=...) on an NNX module: a run that lost its last checkpoint (as if
    killed before it) resumes from the one before and ends bitwise as the whole run."""
    options = {"optimizer": SGD(0.001), "epochs": 4, "shuffle_seed": 0}
    whole = pair(1, 4, 1)[1]
    _, whole_losses = lstm_jax.fit(whole, None, LECTURE_X, LECTURE_Y, **options)
    options["checkpoint_every"] = 2
    directory = tmp_path / "run"
    first = pair(1, 4, 1)[1]
    lstm_jax.fit(first, None, LECTURE_X, LECTURE_Y, checkpoint_dir=directory, **options)
    shutil.rmtree(directory / "4")  # the last save never happened
    resumed = pair(1, 4, 1)[1]
    _, losses = lstm_jax.fit(
        resumed, None, LECTURE_X, LECTURE_Y, checkpoint_dir=directory, **options
    )
    assert np.array_equal(losses, whole_losses)
    assert _bitwise(resumed.state_dict(), whole.state_dict())


def test_fit_continues_an_nnx_optimizer_in_place() -> None:
    """fit(model, nnx.Optimizer, ...): Adam's moments and the step carry over (3 + 3
    epochs equal 6, bitwise) and the optimizer goes on in a hand-written nnx loop."""
    halves, whole = pair(1, 4, 1)[1], pair(1, 4, 1)[1]
    opt_halves = nnx.Optimizer(halves, optax.adam(0.01), wrt=nnx.Param)
    opt_whole = nnx.Optimizer(whole, optax.adam(0.01), wrt=nnx.Param)
    first = lstm_jax.fit(halves, opt_halves, LECTURE_X, LECTURE_Y, epochs=3, shuffle_seed=0)[1]
    second = lstm_jax.fit(halves, opt_halves, LECTURE_X, LECTURE_Y, epochs=3, shuffle_seed=0)[1]
    _, losses = lstm_jax.fit(whole, opt_whole, LECTURE_X, LECTURE_Y, epochs=6, shuffle_seed=0)
    assert np.array_equal(np.concatenate([first, second]), losses)
    assert _bitwise(halves.state_dict(), whole.state_dict())
    assert int(opt_halves.step.get_value()) == 18

    def loss_fn(model: lstm_jax.nnx.LSTMModeler) -> jax.Array:
        model.hidden_cell = None
        return ((model(LECTURE_X[0]) - LECTURE_Y[0]) ** 2).mean()

    for optimizer, model in ((opt_halves, halves), (opt_whole, whole)):
        optimizer.update(model, nnx.grad(loss_fn)(model))
    assert _bitwise(halves.state_dict(), whole.state_dict())
    assert int(opt_halves.step.get_value()) == 19
    with pytest.raises(TypeError, match=r"pass None .* or its nnx.Optimizer"):
        lstm_jax.fit(halves, optax.adam(0.01), LECTURE_X, LECTURE_Y, epochs=1)


def test_fit_of_an_nnx_module_in_mixed_precision_matches_the_linen_twin() -> None:
    """compute_dtype=bfloat16: the NNX module computes in bfloat16 as its linen twin does,
    and keeps float32 (master) parameters."""
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((8, 5, 2)).astype(np.float32)
    ys = rng.standard_normal((8, 3)).astype(np.float32)
    model = pair(2, 6, 3)[1]
    linen_model, variables = lstm_jax.nnx.to_linen(model)
    options = {"optimizer": Adam(0.01), "epochs": 3, "batch_size": 4, "compute_dtype": jnp.bfloat16}
    trained, linen_losses = lstm_jax.fit(linen_model, variables, xs, ys, **options)
    _, losses = lstm_jax.fit(model, None, xs, ys, **options)
    assert np.array_equal(losses, linen_losses)
    assert _bitwise(model.state_dict(), lstm_jax.params_to_torch(trained))
    assert all(v.dtype == np.float32 for v in model.state_dict().values())

"""The lecture's model in Flax NNX: the stored ``hidden_cell`` behaves as torch's attribute
(zeros at first, the new state after a call, carried to the next call, None = zeros,
a batch of 1 broadcast, set and read inside ``nnx.jit`` and ``nnx.grad``), and the
lecture's SGD loop written with ``nnx.Optimizer`` follows ``lstm_torch.fit``'s trajectory
for 300 steps within ``tolerances.TRAINING`` (float32 and float64). The example script
``examples/seed_lstm_nnx.py`` runs and agrees.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import lstm_jax
import lstm_jax.nnx
import lstm_torch
from lstm_jax.common.data import epoch_orders
from lstm_jax.common.lecture import LECTURE_X, LECTURE_Y
from lstm_jax.common.optim import SGD
from lstm_jax.common.tolerances import FORWARD, GRADIENT, TRAINING, assert_close, scaled_error

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed_lstm_nnx.py"


def pair(
    *args: int, dtype: np.dtype = F32, **options: object
) -> tuple[lstm_torch.LSTMModeler, lstm_jax.nnx.LSTMModeler]:
    """A torch modeler (seeded) and its NNX mirror holding the same weights."""
    torch.manual_seed(0)
    tm = lstm_torch.LSTMModeler(*args, **options)
    tm = tm.double() if dtype == F64 else tm
    model = lstm_jax.nnx.LSTMModeler(*args, **options, param_dtype=dtype, rngs=nnx.Rngs(0))
    model.load_state_dict(tm.state_dict())
    return tm, model


def as_arrays(state: object) -> dict[str, np.ndarray]:
    h, c = state
    to_np = lambda v: v.detach().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)  # noqa: E731
    return {"h": to_np(h), "c": to_np(c)}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the stored hidden_cell ----------------------------------------------------------------


def test_hidden_cell_starts_as_torchs_zeros_and_holds_the_new_state_after_a_call() -> None:
    tm, model = pair(2, 5, 3, num_layers=2, bidirectional=True, proj_size=2)
    assert isinstance(model.hidden_cell, lstm_jax.LSTMState)
    helpers.assert_all_close(as_arrays(model.hidden_cell), as_arrays(tm.hidden_cell), 0.0, "zeros")
    x = np.random.default_rng(0).standard_normal((6, 4, 2)).astype(np.float32)
    y, ty = model(x), tm(torch.from_numpy(x))
    helpers.assert_all_close({"y": y}, {"y": ty.detach().numpy()}, FORWARD[F32], "y")
    assert model.hidden_cell.h.shape == (4, 4, 2) and model.hidden_cell.c.shape == (4, 4, 5)
    helpers.assert_all_close(
        as_arrays(model.hidden_cell), as_arrays(tm.hidden_cell), FORWARD[F32], "stored state"
    )


def test_hidden_cell_carries_over_between_calls_as_in_torch() -> None:
    """Two calls without a reset continue the sequence: torch's stateful use."""
    tm, model = pair(1, 6, 1)
    xs = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    for x in xs:
        y, ty = model(x), tm(torch.from_numpy(x))
        helpers.assert_all_close({"y": y}, {"y": ty.detach().numpy()}, FORWARD[F32], "y")
    helpers.assert_all_close(
        as_arrays(model.hidden_cell), as_arrays(tm.hidden_cell), FORWARD[F32], "after two"
    )
    again = lstm_jax.nnx.LSTMModeler(1, 6, 1, rngs=nnx.Rngs(0))
    again.load_state_dict(tm.state_dict())
    once = again(xs.reshape(-1))  # the same 8 steps as one sequence
    helpers.assert_all_close({"y": once}, {"y": y}, FORWARD[F32], "one sequence")


def test_hidden_cell_none_means_zeros_and_bad_values_say_what_was_expected() -> None:
    tm, model = pair(3, 4, 2)
    x = np.random.default_rng(2).standard_normal((5, 3, 3)).astype(np.float32)
    model.hidden_cell = None
    assert model.hidden_cell is None
    with_none = np.asarray(model(x))
    assert model.hidden_cell.h.shape == (1, 3, 4)
    zeros = tm.zero_hidden_cell(3)
    model.hidden_cell = (zeros[0], zeros[1])  # torch tensors are accepted
    assert np.array_equal(np.asarray(model(x)), with_none)
    tm.hidden_cell = zeros
    helpers.assert_all_close(
        {"y": with_none}, {"y": tm(torch.from_numpy(x)).detach().numpy()}, FORWARD[F32]
    )
    with pytest.raises(TypeError, match=r"expected hidden_cell as a pair \(h, c\) or None"):
        model.hidden_cell = np.zeros((1, 1, 4))
    with pytest.raises(TypeError, match="floating point hidden_cell h"):
        model.hidden_cell = (np.zeros((1, 1, 4), np.int32), np.zeros((1, 1, 4)))
    model.hidden_cell = (np.zeros((1, 2, 4)), np.zeros((1, 2, 4)))  # batch 2 for a batch of 3
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(1, 3, 4\).*got \(1, 2, 4\)"):
        model(x)


def test_hidden_cell_is_set_and_read_inside_nnx_jit() -> None:
    tm, model = pair(1, 5, 1)
    x = np.random.default_rng(3).standard_normal((7,)).astype(np.float32)
    h0 = 0.3 * np.ones((1, 1, 5), np.float32)

    @nnx.jit
    def call(model: lstm_jax.nnx.LSTMModeler, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        model.hidden_cell = (jnp.asarray(h0), jnp.asarray(h0))
        y = model(x)
        return y, model.hidden_cell.c

    y, c_inside = call(model, x)
    tm.hidden_cell = (torch.from_numpy(h0), torch.from_numpy(h0))
    ty = tm(torch.from_numpy(x))
    helpers.assert_all_close({"y": y}, {"y": ty.detach().numpy()}, FORWARD[F32], "jit y")
    expected = as_arrays(tm.hidden_cell)
    helpers.assert_all_close(as_arrays(model.hidden_cell), expected, FORWARD[F32], "after jit")
    helpers.assert_all_close({"c": c_inside}, {"c": expected["c"]}, FORWARD[F32], "inside jit")
    # set outside, carried into the next jitted call and out again
    y2 = nnx.jit(lambda m, x: m(x))(model, x)
    ty2 = tm(torch.from_numpy(x))
    helpers.assert_all_close({"y": y2}, {"y": ty2.detach().numpy()}, FORWARD[F32], "carried")
    helpers.assert_all_close(
        as_arrays(model.hidden_cell), as_arrays(tm.hidden_cell), FORWARD[F32], "carried out"
    )
    model.hidden_cell = None  # None -> a state: the structure changes inside jit
    nnx.jit(lambda m, x: m(x))(model, x)
    assert model.hidden_cell.h.shape == (1, 1, 5)


def test_hidden_cell_inside_nnx_grad_as_the_lecture_resets_it() -> None:
    """The lecture's step: reset hidden_cell, forward, MSE, backward; gradients as torch's
    and the stored state as torch's after the step."""
    tm, model = pair(1, 4, 1, num_layers=2)
    x, y = np.array([32.0], np.float32), np.array([34.0], np.float32)

    def loss_fn(model: lstm_jax.nnx.LSTMModeler) -> jax.Array:
        model.hidden_cell = (jnp.zeros((2, 1, 4)), jnp.zeros((2, 1, 4)))
        return jnp.mean((y - model(x)) ** 2)

    grads = nnx.jit(nnx.grad(loss_fn))(model)
    tm.hidden_cell = tm.zero_hidden_cell()
    loss = torch.nn.functional.mse_loss(tm(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    torch_grads = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    nnx_grads = {
        ".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(grads)
    }
    helpers.assert_all_close(nnx_grads, torch_grads, GRADIENT[F32], "lecture step gradients")
    stored = {k: v.detach().numpy() for k, v in zip("hc", tm.hidden_cell, strict=True)}
    helpers.assert_all_close(as_arrays(model.hidden_cell), stored, FORWARD[F32], "stored")


# --- the lecture's SGD loop in NNX against torch's ------------------------------------------


def nnx_lecture_losses(model: lstm_jax.nnx.LSTMModeler, epochs: int, seed: int) -> np.ndarray:
    """The lecture's loop with ``nnx.Optimizer`` and an ``nnx.jit`` step (batch 1)."""
    H = model.hidden_layer_size
    dtype = model.lstm.weight_ih_l0.get_value().dtype
    optimizer = nnx.Optimizer(model, optax.sgd(0.001), wrt=nnx.Param)

    @nnx.jit
    def train_step(
        model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
    ) -> jax.Array:
        def loss_fn(model: lstm_jax.nnx.LSTMModeler) -> jax.Array:
            model.hidden_cell = (jnp.zeros((1, 1, H), dtype), jnp.zeros((1, 1, H), dtype))
            return jnp.mean((y - model(x)) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    xs, ys = jnp.asarray(LECTURE_X, dtype), jnp.asarray(LECTURE_Y, dtype)
    losses = []
    for order in epoch_orders(len(xs), epochs, seed):
        losses.append(sum(float(train_step(model, optimizer, xs[i], ys[i])) for i in order))
    return np.asarray(losses)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_lecture_sgd_300_steps_in_nnx_follow_torch(dtype: np.dtype) -> None:
    with helpers.x64_if(dtype):
        tm, model = pair(1, 10, 1, dtype=dtype)
        nnx_losses = nnx_lecture_losses(model, epochs=100, seed=0)
    torch_losses = lstm_torch.fit(
        tm, LECTURE_X, LECTURE_Y, optimizer=SGD(0.001), epochs=100, batch_size=1, shuffle_seed=0
    )
    assert torch_losses[-1] < 0.1 * torch_losses[0]  # it trains
    assert_close(nnx_losses, torch_losses, TRAINING[dtype], "per-epoch losses")
    reference = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    trained = model.state_dict()
    error = max(scaled_error(trained[k], v) for k, v in reference.items())
    assert error <= TRAINING[dtype], f"final parameters: scaled error {error:.3g}"
    assert all(v.dtype == dtype for v in trained.values())


def test_nnx_training_via_split_and_merge_matches_the_in_place_loop() -> None:
    """The functional form (nnx.split -> pure jax.jit step -> nnx.merge) trains the
    same model as the in-place nnx.Optimizer loop, bitwise."""
    _, in_place = pair(1, 6, 1)
    _, functional = pair(1, 6, 1)
    nnx_lecture_losses(in_place, epochs=4, seed=1)
    graphdef, params, rest = nnx.split(functional, nnx.Param, ...)
    tx = optax.sgd(0.001)
    opt_state = tx.init(params)

    @jax.jit
    def step(
        params: nnx.State, rest: nnx.State, opt_state: optax.OptState, x: jax.Array, y: jax.Array
    ) -> tuple:
        def loss_fn(params: nnx.State) -> tuple[jax.Array, nnx.State]:
            model = nnx.merge(graphdef, params, rest, copy=True)
            model.hidden_cell = None
            loss = jnp.mean((y - model(x)) ** 2)
            return loss, nnx.state(model, nnx.Not(nnx.Param))  # the new hidden_cell

        grads, rest = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state

    for order in epoch_orders(3, 4, 1):
        for i in order:
            params, rest, opt_state = step(params, rest, opt_state, LECTURE_X[i], LECTURE_Y[i])
    nnx.update(functional, params, rest)
    assert functional.hidden_cell.h.shape == (1, 1, 6)
    assert helpers.assert_all_close(functional.state_dict(), in_place.state_dict(), 0.0) is None


# --- the example script -------------------------------------------------------------------

ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s*$")


@pytest.mark.slow
def test_seed_lstm_nnx_example_runs_and_agrees(tmp_path: Path) -> None:
    plot = tmp_path / "losses.png"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "12", "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    rows = [m for m in map(ROW.match, out.splitlines()) if m]
    assert [int(m[1]) for m in rows] == [1, 10, 12], out
    torch_col = np.array([float(m[2]) for m in rows])
    nnx_col = np.array([float(m[3]) for m in rows])
    assert np.all(torch_col > 0) and torch_col[-1] < torch_col[0], out
    assert scaled_error(nnx_col, torch_col) <= TRAINING[F32], out
    prediction = re.search(r"y_true: 28, y_hat nnx: (\S+), y_hat torch: (\S+)", out)
    assert prediction and abs(float(prediction[1]) - float(prediction[2])) < 1e-2, out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


NNX_GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "nnx.md"


@pytest.mark.slow  # over 10 s on 2 cores (15 s of CPU measured)
def test_docs_nnx_tour_runs_as_written() -> None:
    """The NNX guide's tour, executed: the stored hidden_cell after the call is torch's,
    the step trains, the shapes are the ones the guide states."""
    blocks = re.findall(r"```python\n(.*?)```", NNX_GUIDE.read_text(), re.S)
    namespace: dict = {}
    exec(compile(blocks[0], str(NNX_GUIDE), "exec"), namespace)  # the modeler and its call
    tm, mm, x = namespace["tm"], namespace["mm"], namespace["x"]
    with torch.no_grad():
        tm.hidden_cell = tm.zero_hidden_cell()
        y_torch = tm(torch.from_numpy(x))
    helpers.assert_all_close(
        {"y": namespace["y"], **as_arrays(mm.hidden_cell)},
        {"y": y_torch.detach().numpy(), **as_arrays(tm.hidden_cell)},
        FORWARD[F32],
        "docs/guides/nnx.md",
    )
    exec(compile(blocks[1] + blocks[2], str(NNX_GUIDE), "exec"), namespace)  # step, LSTM
    y = np.zeros((1,), np.float32)
    first = float(namespace["train_step"](mm, namespace["optimizer"], x, y))
    second = float(namespace["train_step"](mm, namespace["optimizer"], x, y))
    assert second < first
    assert namespace["out"].shape == (4, 6, 16) and namespace["h_n"].shape == (2, 4, 16)
    assert isinstance(namespace["linen_model"], lstm_jax.LSTMModeler)

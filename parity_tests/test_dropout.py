"""Dropout between layers, as torch applies it.

Eval mode (``deterministic=True``, torch ``.eval()``) matches torch exactly. Training
mode draws different masks on each side, so it is checked statistically: with the last
layer's weights chosen to make it an invertible map of its input (gates i, o open, f
shut, candidate tanh(s * input); h = tanh(tanh(s * input)) per unit), the dropped
input can be read back from the output. A fraction p of it is zero and the rest is
the previous layer's output scaled by 1/(1-p); the output itself is not dropped.
"""

from __future__ import annotations

import functools
import math

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import lstm_jax
from lstm_jax import core
from lstm_jax.common.tolerances import FORWARD, scaled_error

SCALE = 0.5  # s: the candidate gate's slope in the see-through layer
OPEN = 1000.0  # sigmoid(+-1000) is exactly 1 or 0 in float32 and float64


def binomial_ok(zeros: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """Is ``zeros`` out of ``n`` a plausible Binomial(n, p) draw (within 5 sigma)?"""
    return abs(zeros / n - p) <= sigmas * math.sqrt(p * (1 - p) / n)


# --- the core function -------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_core_dropout_zeros_a_fraction_p_and_scales_survivors(rate: float) -> None:
    x = jnp.ones((100_000,), jnp.float32)
    y = np.asarray(core.dropout(jax.random.key(0), x, rate))
    dropped = y == 0
    assert binomial_ok(int(dropped.sum()), y.size, rate), f"zero fraction {dropped.mean()}"
    survivors = y[~dropped]
    expected = np.full_like(survivors, 1.0 / (1.0 - rate))
    assert scaled_error(survivors, expected) <= FORWARD[np.dtype(np.float32)]
    again = np.asarray(core.dropout(jax.random.key(0), x, rate))
    other = np.asarray(core.dropout(jax.random.key(1), x, rate))
    assert np.array_equal(again, y)
    assert not np.array_equal(other, y)


def test_core_dropout_edge_rates() -> None:
    x = jnp.asarray(np.random.default_rng(0).standard_normal((50,)), jnp.float32)
    assert np.array_equal(core.dropout(jax.random.key(0), x, 0.0), x)
    assert np.array_equal(core.dropout(jax.random.key(0), x, 1.0), np.zeros(50, np.float32))


# --- eval mode: exact parity -------------------------------------------------------------

EVAL_CASES = [
    helpers.Case(num_layers=2, dropout=0.5),
    helpers.Case(num_layers=3, bidirectional=True, proj_size=2, batch_first=True, dropout=0.3),
    helpers.Case(num_layers=2, dropout=0.7, dtype="float64", state="given"),
]


@pytest.mark.parametrize("case", EVAL_CASES, ids=helpers.ids(EVAL_CASES))
@torch.no_grad()
def test_eval_mode_matches_torch_eval(case: helpers.Case) -> None:
    module = helpers.make_torch_lstm(case).eval()
    inputs = helpers.random_inputs(case)
    state = (inputs["h_0"], inputs["c_0"]) if "h_0" in inputs else None
    out, (h_n, c_n) = module(
        torch.from_numpy(inputs["x"]),
        None if state is None else tuple(map(torch.from_numpy, state)),
    )
    with helpers.x64_if(case.dtype):
        variables = lstm_jax.params_from_torch(module.state_dict())
        # deterministic=True is the default: eval mode unless asked otherwise
        j_out, j_state = jax.jit(helpers.make_jax_lstm(case).apply)(variables, inputs["x"], state)
    helpers.assert_all_close(
        {"output": j_out, "h_n": j_state.h, "c_n": j_state.c},
        {"output": out.numpy(), "h_n": h_n.numpy(), "c_n": c_n.numpy()},
        FORWARD[case.np_dtype],
        case.id,
    )


@torch.no_grad()
def test_modeler_eval_mode_matches_torch_eval() -> None:
    case = helpers.Case(num_layers=2, dropout=0.5, bidirectional=True)
    module = helpers.make_torch_modeler(case).eval()
    x = helpers.random_inputs(case)["x"]
    y = module(torch.from_numpy(x)).numpy()
    variables = lstm_jax.params_from_torch(module.state_dict())
    apply = functools.partial(helpers.make_jax_modeler(case).apply, deterministic=True)
    j_y, _ = jax.jit(apply)(variables, x)
    helpers.assert_all_close({"y": j_y}, {"y": y}, FORWARD[case.np_dtype], case.id)


# --- training mode: statistics -----------------------------------------------------------


def see_through_last_layer(state_dict: dict[str, torch.Tensor], case: helpers.Case) -> None:
    """Overwrite the last layer so that its output is tanh(tanh(SCALE * input)) per unit
    (each direction reads its own half of the input); in place."""
    H, D, last = case.hidden_size, case.config.num_directions, case.num_layers - 1
    for direction, sfx in enumerate(["", "_reverse"][:D]):
        w_ih = torch.zeros(4 * H, D * H, dtype=case.torch_dtype)
        w_ih[2 * H : 3 * H, direction * H : (direction + 1) * H] = SCALE * torch.eye(H)
        b_ih = torch.zeros(4 * H, dtype=case.torch_dtype)
        b_ih[:H], b_ih[H : 2 * H], b_ih[3 * H :] = OPEN, -OPEN, OPEN  # i, f, o
        state_dict[f"weight_ih_l{last}{sfx}"] = w_ih
        state_dict[f"weight_hh_l{last}{sfx}"] = torch.zeros(4 * H, H, dtype=case.torch_dtype)
        state_dict[f"bias_ih_l{last}{sfx}"] = b_ih
        state_dict[f"bias_hh_l{last}{sfx}"] = torch.zeros(4 * H, dtype=case.torch_dtype)


def last_layer_input(output: np.ndarray) -> np.ndarray:
    """Invert the see-through layer: its (dropped) input from its output."""
    return np.arctanh(np.arctanh(np.asarray(output, np.float64))) / SCALE


@functools.cache
def run_both_modes(case: helpers.Case, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """The see-through model's output in eval and train mode on both backends (cached:
    several tests read one run)."""
    module = helpers.make_torch_lstm(case)
    state_dict = module.state_dict()
    see_through_last_layer(state_dict, case)
    module.load_state_dict(state_dict)
    x = helpers.random_inputs(case)["x"]
    results: dict[str, dict[str, np.ndarray]] = {"torch": {}, "jax": {}}
    with torch.no_grad():
        results["torch"]["eval"] = module.eval()(torch.from_numpy(x))[0].numpy()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out, (h_n, _) = module.train()(torch.from_numpy(x))
        results["torch"]["train"], results["torch"]["h_n"] = out.numpy(), h_n.numpy()
    model = helpers.make_jax_lstm(case)
    with helpers.x64_if(case.dtype):
        variables = lstm_jax.params_from_torch(state_dict)
        results["jax"]["eval"] = np.asarray(jax.jit(model.apply)(variables, x)[0])
        train = jax.jit(functools.partial(model.apply, deterministic=False))
        out, final = train(variables, x, rngs={"dropout": jax.random.key(seed)})
        results["jax"]["train"], results["jax"]["h_n"] = np.asarray(out), np.asarray(final.h)
    return results


DROP_CASES = [
    helpers.Case(num_layers=2, dropout=0.3, hidden_size=16, batch_size=32, seq_len=8),
    helpers.Case(
        num_layers=3,
        bidirectional=True,
        dropout=0.6,
        hidden_size=8,
        batch_size=32,
        seq_len=8,
    ),
]


@pytest.mark.parametrize(
    "case",
    [c.with_(dtype="float64") for c in DROP_CASES],
    ids=helpers.ids([c.with_(dtype="float64") for c in DROP_CASES]),
)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_mode_drops_the_last_layers_input_only(backend: str, case: helpers.Case) -> None:
    p = case.dropout
    results = run_both_modes(case, seed=0)[backend]
    before = last_layer_input(results["eval"])  # the previous layer's output, undropped
    seen = last_layer_input(results["train"])
    assert np.all(before != 0)
    dropped = seen == 0
    assert binomial_ok(int(dropped.sum()), seen.size, p), f"zero fraction {dropped.mean():.4f}"
    # survivors are an LSTM output (|h| < 1) scaled by 1/(1-p)
    assert np.max(np.abs(seen)) * (1.0 - p) < 1.0
    expected = np.where(dropped, 0.0, before / (1.0 - p))
    err = scaled_error(seen, expected)
    if case.num_layers == 2:
        # the first layer's output, dropped once and scaled; nothing else changed: no
        # dropout on the network's input (``before`` would differ) nor on its output
        # (``seen`` would not be a dropped copy of ``before``)
        assert err <= FORWARD[np.dtype(np.float64)]
    else:
        # the layers before were dropped too, so the last layer's input moved
        assert err > 100 * FORWARD[np.dtype(np.float64)]
    time_major = results["train"] if not case.batch_first else results["train"].swapaxes(0, 1)
    H, D = case.hidden_size, case.config.num_directions
    last = results["h_n"][-D:]  # the last layer's final h: its last (forward) step
    assert np.array_equal(last[0], time_major[-1, :, :H])
    if D == 2:
        assert np.array_equal(last[1], time_major[0, :, H:])


def test_eval_mode_of_the_see_through_model_matches_torch() -> None:
    case = DROP_CASES[1].with_(dtype="float64")
    results = run_both_modes(case, seed=0)
    assert (
        scaled_error(results["jax"]["eval"], results["torch"]["eval"])
        <= FORWARD[np.dtype(np.float64)]
    )


@pytest.mark.filterwarnings("ignore:dropout option adds dropout after all but last")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_layer_ignores_dropout_in_train_mode(dtype: str) -> None:
    case = helpers.Case(num_layers=1, dropout=0.5, bidirectional=True, dtype=dtype)
    module = helpers.make_torch_lstm(case)
    x = helpers.random_inputs(case)["x"]
    with torch.no_grad():
        torch_eval = module.eval()(torch.from_numpy(x))[0].numpy()
        torch_train = module.train()(torch.from_numpy(x))[0].numpy()
    assert np.array_equal(torch_train, torch_eval)
    model = helpers.make_jax_lstm(case)
    with helpers.x64_if(dtype):
        variables = lstm_jax.params_from_torch(module.state_dict())
        apply = jax.jit(model.apply, static_argnames="deterministic")
        j_eval = apply(variables, x)[0]
        j_train = apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(0)})[0]
    assert np.array_equal(j_train, j_eval)
    assert scaled_error(j_eval, torch_eval) <= FORWARD[np.dtype(dtype)]


def test_rate_one_in_train_mode_matches_torch() -> None:
    """p = 1 zeros every inter-layer activation: train mode is deterministic again."""
    case = helpers.Case(num_layers=2, dropout=1.0, proj_size=2)
    module = helpers.make_torch_lstm(case).train()
    x = helpers.random_inputs(case)["x"]
    with torch.no_grad():
        out, (h_n, c_n) = module(torch.from_numpy(x))
        eval_out = module.eval()(torch.from_numpy(x))[0]
    variables = lstm_jax.params_from_torch(module.state_dict())
    apply = functools.partial(helpers.make_jax_lstm(case).apply, deterministic=False)
    j_out, j_state = jax.jit(apply)(variables, x, rngs={"dropout": jax.random.key(0)})
    helpers.assert_all_close(
        {"output": j_out, "h_n": j_state.h, "c_n": j_state.c},
        {"output": out.numpy(), "h_n": h_n.numpy(), "c_n": c_n.numpy()},
        FORWARD[np.dtype(np.float32)],
        case.id,
    )
    assert scaled_error(j_out, eval_out.numpy()) > 100 * FORWARD[np.dtype(np.float32)]


def test_modeler_train_mode_uses_the_dropout_rng() -> None:
    case = helpers.Case(num_layers=2, dropout=0.5)
    model = helpers.make_jax_modeler(case)
    x = helpers.random_inputs(case)["x"]
    variables = lstm_jax.params_from_torch(helpers.make_torch_modeler(case).state_dict())
    train = jax.jit(functools.partial(model.apply, deterministic=False))
    y0 = train(variables, x, rngs={"dropout": jax.random.key(0)})[0]
    y0_again = train(variables, x, rngs={"dropout": jax.random.key(0)})[0]
    y1 = train(variables, x, rngs={"dropout": jax.random.key(1)})[0]
    y_eval = jax.jit(model.apply)(variables, x)[0]
    assert np.array_equal(y0, y0_again)
    assert not np.array_equal(y0, y1)
    assert not np.array_equal(y0, y_eval)

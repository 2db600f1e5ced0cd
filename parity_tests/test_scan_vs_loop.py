"""The recurrence's drivers against a per-step Python loop of the same cell, and the cell
against ``torch.nn.LSTMCell`` (an independent implementation of the step).

Every ``impl`` (plain scan, hand-written backward, hoisted input projection, the cuDNN
adapter's reference, remat chunks) must compute what stepping
``lstm_jax.core.lstm_cell`` in a Python loop computes, forward and gradients, with and
without ``seq_lengths`` (a masked step keeps the state).
"""

from __future__ import annotations

import functools

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from lstm_jax import core
from lstm_jax.common.config import LSTMConfig
from lstm_jax.common.tolerances import FORWARD, GRADIENT

T, B, I = 7, 3, 4
FLOATS = ("float32", "float64")


def loop_layer(
    p: core.CellParams,
    x: jax.Array,
    state: core.LSTMState,
    reverse: bool = False,
    seq_lengths: jax.Array | None = None,
) -> tuple[jax.Array, core.LSTMState]:
    """One direction of one layer by stepping ``lstm_cell`` in a Python loop:
    x (T, B, I) -> outputs (T, B, H_out) and the final state. With ``seq_lengths`` a
    row's steps at or past its length keep its state and output zeros (forward only)."""
    w = core.step_weights(p)
    outputs = [None] * x.shape[0]
    steps = range(x.shape[0])
    for t in reversed(steps) if reverse else steps:
        new, _ = core.lstm_cell(w, state, x[t])
        if seq_lengths is None:
            state, outputs[t] = new, new.h
        else:
            valid = (t < seq_lengths)[:, None]
            state = core.LSTMState(
                jnp.where(valid, new.h, state.h), jnp.where(valid, new.c, state.c)
            )
            outputs[t] = jnp.where(valid, new.h, 0.0)
    return jnp.stack(outputs), state


def loop_stack(
    params: dict, x: jax.Array, state: core.LSTMState, config: LSTMConfig
) -> tuple[jax.Array, core.LSTMState]:
    """``core.lstm``'s stack of (bi)directional layers, each layer a Python step loop."""
    D = config.num_directions
    h_n, c_n, layer_input = [], [], x
    for layer in range(config.num_layers):
        outputs = []
        for direction in range(D):
            index = layer * D + direction
            out, final = loop_layer(
                core.cell_params(params, layer, direction),
                layer_input,
                core.LSTMState(state.h[index], state.c[index]),
                reverse=direction == 1,
            )
            outputs.append(out)
            h_n.append(final.h)
            c_n.append(final.c)
        layer_input = jnp.concatenate(outputs, axis=-1)
    return layer_input, core.LSTMState(jnp.stack(h_n), jnp.stack(c_n))


def _random_state(config: LSTMConfig, dtype: str, seed: int) -> core.LSTMState:
    rng = np.random.default_rng(seed)
    h_shape, c_shape = config.state_shapes(B)
    return core.LSTMState(
        rng.standard_normal(h_shape).astype(dtype), rng.standard_normal(c_shape).astype(dtype)
    )


def _named(out: jax.Array, state: core.LSTMState) -> dict[str, np.ndarray]:
    return {"output": np.asarray(out), "h_n": np.asarray(state.h), "c_n": np.asarray(state.c)}


# (impl, remat): every driver of one layer-direction (cuDNN's has no projections)
DRIVERS = [("scan", 0), ("custom_vjp", 0), ("hoisted", 0), ("custom_vjp", 3), ("scan", 3)]


def _layer_cases() -> list:
    """Every layer configuration in both dtypes for the default driver; the other
    drivers (and the remat chunks) alternate the dtype over the configurations."""
    configs = [
        (True, 0, 1, "bias"),
        (False, 0, 1, "nobias"),
        (True, 3, 1, "proj"),
        (True, 3, 4, "proj-unroll4"),
    ]
    cases = []
    for impl, remat in [*DRIVERS, ("cudnn", 0)]:
        for k, (bias, proj_size, unroll, label) in enumerate(configs):
            if impl == "cudnn" and proj_size:
                continue
            if (impl, remat) == ("custom_vjp", 0):
                dtypes = FLOATS
            else:
                dtypes = ("float32",) if impl == "cudnn" else (FLOATS[k % 2],)
            for dtype in dtypes:
                case_id = f"{impl}-remat{remat}-{label}-{dtype}"
                values = (impl, remat, bias, proj_size, unroll, dtype)
                cases.append(pytest.param(*values, id=case_id))
    return cases


@pytest.mark.parametrize(("impl", "remat", "bias", "proj_size", "unroll", "dtype"), _layer_cases())
def test_scan_layer_matches_cell_loop(
    impl: str, remat: int, bias: bool, proj_size: int, unroll: int, dtype: str
) -> None:
    config = LSTMConfig(hidden_size=5, input_size=I, bias=bias, proj_size=proj_size)
    params = helpers.random_params(config, dtype)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    full = _random_state(config, dtype, seed=1)
    state = core.LSTMState(full.h[0], full.c[0])

    @jax.jit
    def both(params: dict, x: jax.Array, state: core.LSTMState) -> tuple:
        p = core.cell_params(params, 0, 0)
        knobs = {"unroll": unroll, "impl": impl, "remat": remat}
        return core.lstm_layer(p, x, state, **knobs), loop_layer(p, x, state)

    with helpers.x64_if(dtype):
        (scan_out, scan_final), (loop_out, loop_final) = both(params, x, state)
    helpers.assert_all_close(
        _named(scan_out, scan_final),
        _named(loop_out, loop_final),
        FORWARD[np.dtype(dtype)],
        f"{impl} remat={remat} vs loop",
    )


@pytest.mark.parametrize(
    ("impl", "remat", "proj_size"),
    [
        ("scan", 0, 2),
        ("custom_vjp", 0, 0),
        ("custom_vjp", 0, 2),
        ("hoisted", 0, 2),
        ("custom_vjp", 3, 2),
        ("scan", 3, 0),
        ("cudnn", 0, 0),  # cuDNN: no projections
    ],
    ids=lambda v: str(v),
)
def test_driver_gradients_match_cell_loop(impl: str, remat: int, proj_size: int) -> None:
    """Gradients of every driver (with ragged lengths) against JAX's autodiff of the Python
    loop of the cell, in float64 (float32 for cuDNN's reference)."""
    dtype = "float32" if impl == "cudnn" else "float64"
    config = LSTMConfig(hidden_size=5, input_size=I, proj_size=proj_size)
    params = helpers.random_params(config, dtype)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = jnp.array([T, 2, 5])
    full = _random_state(config, dtype, seed=1)
    state = core.LSTMState(full.h[0], full.c[0])
    g_out = rng.standard_normal((T, B, config.output_size)).astype(dtype)

    def loss(layer_fn, params: dict, x: jax.Array, state: core.LSTMState) -> jax.Array:
        out, final = layer_fn(core.cell_params(params, 0, 0), x, state)
        return jnp.vdot(out, g_out) + jnp.sum(final.h * final.h) + jnp.sum(jnp.sin(final.c))

    def driver(p, x, state):
        return core.lstm_layer(p, x, state, seq_lengths=lengths, impl=impl, remat=remat)

    def loop(p, x, state):
        return loop_layer(p, x, state, seq_lengths=lengths)

    grad = functools.partial(jax.grad, argnums=(0, 1, 2))
    with helpers.x64_if(dtype):
        got = jax.jit(grad(functools.partial(loss, driver)))(params, x, state)
        want = jax.jit(grad(functools.partial(loss, loop)))(params, x, state)
    named = lambda g: {  # noqa: E731
        **{f"d {k}": np.asarray(v) for k, v in g[0].items()},
        "d x": np.asarray(g[1]),
        "d h0": np.asarray(g[2].h),
        "d c0": np.asarray(g[2].c),
    }
    helpers.assert_all_close(named(got), named(want), GRADIENT[np.dtype(dtype)], f"{impl} grads")


@pytest.mark.parametrize(
    ("impl", "proj_size", "dtype"),
    [
        *[(impl, 2, dtype) for impl in ("scan", "custom_vjp", "hoisted") for dtype in FLOATS],
        ("cudnn", 0, "float32"),  # every layer and direction in one call
    ],
)
def test_bidirectional_stack_matches_cell_loop(impl: str, proj_size: int, dtype: str) -> None:
    config = LSTMConfig(
        hidden_size=5, input_size=I, num_layers=2, bidirectional=True, proj_size=proj_size
    )
    params = helpers.random_params(config, dtype)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    state = _random_state(config, dtype, seed=1)

    @jax.jit
    def both(params: dict, x: jax.Array, state: core.LSTMState) -> tuple:
        return (
            core.lstm(params, x, state, config, impl=impl),
            loop_stack(params, x, state, config),
        )

    with helpers.x64_if(dtype):
        (out, final), (ref_out, ref_final) = both(params, x, state)
    helpers.assert_all_close(
        _named(out, final), _named(ref_out, ref_final), FORWARD[np.dtype(dtype)], "stack vs loop"
    )


@torch.no_grad()
def torch_cell_stack(
    state_dict: dict[str, np.ndarray], inputs: dict[str, np.ndarray], case: helpers.Case
) -> dict[str, np.ndarray]:
    """A (bi)directional LSTM stack stepped with ``torch.nn.LSTMCell`` (no projections),
    time-major batched input."""
    D, H = case.config.num_directions, case.hidden_size
    h_n, c_n, layer_input = [], [], torch.from_numpy(inputs["x"])
    for layer in range(case.num_layers):
        outputs = []
        for direction, sfx in enumerate(["", "_reverse"][:D]):
            cell = torch.nn.LSTMCell(layer_input.shape[-1], H, bias=case.bias).to(case.torch_dtype)
            names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if case.bias else [])
            cell.load_state_dict(
                {n: torch.from_numpy(state_dict[f"{n}_l{layer}{sfx}"]) for n in names}, strict=True
            )
            index = layer * D + direction
            h = torch.from_numpy(inputs["h_0"][index])
            c = torch.from_numpy(inputs["c_0"][index])
            out = [None] * len(layer_input)
            steps = range(len(layer_input))
            for t in reversed(steps) if direction else steps:
                h, c = cell(layer_input[t], (h, c))
                out[t] = h
            outputs.append(torch.stack(out))
            h_n.append(h)
            c_n.append(c)
        layer_input = torch.cat(outputs, dim=-1)
    return _named(layer_input.numpy(), core.LSTMState(torch.stack(h_n), torch.stack(c_n)))


@pytest.mark.parametrize(
    "case",
    [
        helpers.Case(num_layers=2, bidirectional=True, state="given", seq_len=T),
        helpers.Case(num_layers=3, bias=False, state="given", seq_len=T, dtype="float64"),
    ],
    ids=lambda case: case.id,
)
def test_module_matches_torch_lstmcell_steps(case: helpers.Case) -> None:
    inputs = helpers.random_inputs(case)
    params = helpers.random_params(case.config, case.dtype, seed=3)
    model = helpers.make_jax_lstm(case)
    with helpers.x64_if(case.dtype):
        apply = functools.partial(jax.jit(model.apply), {"params": params})
        out, final = apply(inputs["x"], (inputs["h_0"], inputs["c_0"]))
    helpers.assert_all_close(
        _named(out, final),
        torch_cell_stack(params, inputs, case),
        FORWARD[case.np_dtype],
        "lstm_jax.LSTM vs torch.nn.LSTMCell steps",
    )


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bias", [True, False])
def test_cell_matches_torch_lstmcell(bias: bool, dtype: str) -> None:
    """``core.lstm_cell`` itself against ``torch.nn.LSTMCell``: one step, a given state."""
    torch.manual_seed(0)
    torch_dtype = helpers.TORCH_DTYPES[np.dtype(dtype)]
    torch_cell = torch.nn.LSTMCell(I, 6, bias=bias).to(torch_dtype)
    rng = np.random.default_rng(4)
    x, h, c = (rng.standard_normal((B, n)).astype(dtype) for n in (I, 6, 6))
    with torch.no_grad():
        h1, c1 = torch_cell(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    sd = {k: v.numpy() for k, v in torch_cell.state_dict().items()}
    with helpers.x64_if(dtype):
        p = core.CellParams(sd["weight_ih"], sd["weight_hh"], sd.get("bias_ih"), sd.get("bias_hh"))
        new, gates = core.lstm_cell(core.step_weights(p), core.LSTMState(h, c), x)
    assert gates.shape == (B, 4 * 6)
    helpers.assert_all_close(
        {"h": np.asarray(new.h), "c": np.asarray(new.c)},
        {"h": h1.numpy(), "c": c1.numpy()},
        FORWARD[np.dtype(dtype)],
        "lstm_cell vs torch.nn.LSTMCell",
    )

"""The ``lax.scan`` layer and stack against per-step Python loops: of
``lstm_jax.core.lstm_cell`` (same cell, no scan) and of ``torch.nn.LSTMCell`` (an
independent implementation of the step)."""

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
from lstm_jax.common.tolerances import FORWARD

T, B, I = 7, 3, 4


def loop_layer(
    p: core.CellParams, x: jax.Array, state: core.LSTMState, reverse: bool = False
) -> tuple[jax.Array, core.LSTMState]:
    """One direction of one layer by stepping ``lstm_cell`` in a Python loop:
    x (T, B, I) -> outputs (T, B, H_out) and the final state."""
    outputs = [None] * x.shape[0]
    steps = range(x.shape[0])
    for t in reversed(steps) if reverse else steps:
        state = core.lstm_cell(p, state, x[t])
        outputs[t] = state.h
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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("bias", "proj_size", "unroll"),
    [(True, 0, 1), (False, 0, 1), (True, 3, 1), (True, 3, 4)],
    ids=["bias", "nobias", "proj", "proj-unroll4"],
)
def test_scan_layer_matches_cell_loop(bias: bool, proj_size: int, unroll: int, dtype: str) -> None:
    config = LSTMConfig(hidden_size=5, input_size=I, bias=bias, proj_size=proj_size)
    params = helpers.random_params(config, dtype)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    full = _random_state(config, dtype, seed=1)
    state = core.LSTMState(full.h[0], full.c[0])

    @jax.jit
    def both(params: dict, x: jax.Array, state: core.LSTMState) -> tuple:
        p = core.cell_params(params, 0, 0)
        return core.lstm_layer(p, x, state, unroll=unroll), loop_layer(p, x, state)

    with helpers.x64_if(dtype):
        (scan_out, scan_final), (loop_out, loop_final) = both(params, x, state)
    helpers.assert_all_close(
        _named(scan_out, scan_final),
        _named(loop_out, loop_final),
        FORWARD[np.dtype(dtype)],
        "scan vs loop",
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bidirectional_stack_matches_cell_loop(dtype: str) -> None:
    config = LSTMConfig(hidden_size=5, input_size=I, num_layers=2, bidirectional=True, proj_size=2)
    params = helpers.random_params(config, dtype)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    state = _random_state(config, dtype, seed=1)

    @jax.jit
    def both(params: dict, x: jax.Array, state: core.LSTMState) -> tuple:
        return core.lstm(params, x, state, config), loop_stack(params, x, state, config)

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

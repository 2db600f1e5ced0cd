"""``impl="wavefront"``: the stack's layers skewed in one scan, a bidirectional layer's
directions fused, with a hand-written backward (:mod:`lstm_jax.core.wavefront`).

Against ``torch.nn.LSTM`` / ``lstm_torch.LSTMModeler`` over the forward/gradient grid
(every option pair), dropout against the per-layer schedule drawing the same masks
(torch draws its own), the schedule itself (how many sequential steps the program
runs), forward-mode of the plain scan against the hand-written backward, and remat's
memory. Ragged lengths against torch's packed LSTM are in ``test_recurrence_impls.py``.
"""

from __future__ import annotations

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import lstm_jax
from lstm_jax import core
from lstm_jax.common.config import LSTMConfig
from lstm_jax.common.tolerances import FORWARD, GRADIENT


def _jax_lstm(case: helpers.Case, **knobs: object) -> lstm_jax.LSTM:
    return lstm_jax.LSTM(case.hidden_size, **case.options, impl="wavefront", **knobs)


def _lstm_parity(case: helpers.Case) -> helpers.ParityRun:
    model = _jax_lstm(case)

    def torch_forward(module: torch.nn.Module, t: dict) -> dict[str, torch.Tensor]:
        state = (t["h_0"], t["c_0"]) if "h_0" in t else None
        out, (h_n, c_n) = module(t["x"], state)
        return {"output": out, "h_n": h_n, "c_n": c_n}

    def jax_forward(variables: dict, a: dict) -> dict[str, jax.Array]:
        state = (a["h_0"], a["c_0"]) if "h_0" in a else None
        out, final = model.apply(variables, a["x"], state)
        return {"output": out, "h_n": final.h, "c_n": final.c}

    module = helpers.make_torch_lstm(case)
    return helpers.parity_run(case, module, helpers.random_inputs(case), torch_forward, jax_forward)


@pytest.mark.parametrize("case", helpers.LSTM_GRID, ids=helpers.ids(helpers.LSTM_GRID))
def test_wavefront_matches_torch_nn_lstm(case: helpers.Case) -> None:
    run = _lstm_parity(case)
    helpers.assert_all_close(run.jax_outputs, run.torch_outputs, FORWARD[case.np_dtype], case.id)
    helpers.assert_all_close(
        run.jax_grads, run.torch_grads, GRADIENT[case.np_dtype], f"{case.id} grads"
    )


MODELER_CASES = [c for c in helpers.MODELER_GRID if c.num_layers > 1][:3]


@pytest.mark.parametrize("case", MODELER_CASES, ids=helpers.ids(MODELER_CASES))
def test_wavefront_modeler_matches_torch_modeler(case: helpers.Case) -> None:
    model = lstm_jax.LSTMModeler(
        case.input_size, case.hidden_size, case.output_size, **case.options, impl="wavefront"
    )

    def torch_forward(module: torch.nn.Module, t: dict) -> dict[str, torch.Tensor]:
        if "h_0" in t:
            module.hidden_cell = (t["h_0"], t["c_0"])
        y = module(t["x"])
        h, c = module.hidden_cell
        return {"y": y, "h": h, "c": c}

    def jax_forward(variables: dict, a: dict) -> dict[str, jax.Array]:
        state = (a["h_0"], a["c_0"]) if "h_0" in a else None
        y, (h, c) = model.apply(variables, a["x"], state)
        return {"y": y, "h": h, "c": c}

    module = helpers.make_torch_modeler(case)
    inputs = helpers.random_inputs(case, modeler=True)
    run = helpers.parity_run(case, module, inputs, torch_forward, jax_forward)
    helpers.assert_all_close(run.jax_outputs, run.torch_outputs, FORWARD[case.np_dtype], case.id)
    helpers.assert_all_close(
        run.jax_grads, run.torch_grads, GRADIENT[case.np_dtype], f"{case.id} grads"
    )


@pytest.mark.parametrize(
    "bidirectional",
    # bi: over 10 s on 2 cores (15 s of CPU measured): the slow tier
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["uni", "bi"],
)
def test_dropout_masks_and_gradients_match_the_per_layer_schedule(bidirectional: bool) -> None:
    """Training mode draws the masks from the same keys as the per-layer stack, so the
    two schedules compute the same function: outputs and gradients agree (float64)."""
    config = LSTMConfig(
        hidden_size=4, input_size=3, num_layers=3, dropout=0.4, bidirectional=bidirectional
    )
    lengths = jnp.array([6, 2, 5])
    with jax.enable_x64():
        params = {k: jnp.asarray(v) for k, v in helpers.random_params(config, np.float64).items()}
        x = jnp.asarray(np.random.default_rng(2).standard_normal((6, 3, 3)))

        def loss(impl: str):
            def f(p: dict, x: jax.Array) -> jax.Array:
                out, final = core.lstm(
                    p, x, None, config, seq_lengths=lengths, dropout_rng=jax.random.key(7),
                    impl=impl,
                )  # fmt: skip
                return jnp.sum(jnp.sin(out)) + jnp.sum(final.h * final.c), out

            return jax.value_and_grad(f, argnums=(0, 1), has_aux=True)

        (_, out_w), grads_w = jax.tree.map(np.asarray, loss("wavefront")(params, x))
        (_, out_r), grads_r = jax.tree.map(np.asarray, loss("custom_vjp")(params, x))
    dropped = float(np.mean(np.asarray(out_r) == 0.0))
    assert dropped < 0.9  # the stack is not dropped wholesale
    tol = GRADIENT[np.dtype(np.float64)]
    np.testing.assert_allclose(out_w, out_r, rtol=0, atol=tol)
    for a, b in zip(jax.tree.leaves(grads_w), jax.tree.leaves(grads_r), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, float(np.abs(b).max())))


def _scan_lengths(fn: object, *args: object) -> list[int]:
    """The lengths of the top-level ``scan``s in the jaxpr of ``fn(*args)``, in order."""
    jaxpr = jax.make_jaxpr(fn)(*args)
    lengths = []

    def walk(eqns: list) -> None:
        for eqn in eqns:
            if eqn.primitive.name == "scan":
                lengths.append(eqn.params["length"])
                continue
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", None)
                if inner is not None:
                    walk(getattr(inner, "eqns", []))

    walk(jaxpr.jaxpr.eqns)
    return lengths


@pytest.mark.parametrize(
    ("layers", "bidirectional", "expected"),
    [(3, False, [9 + 3 - 1]), (2, True, [9, 9]), (1, False, [9])],
    ids=["uni-L3", "bi-L2", "uni-L1"],
)
def test_sequential_steps(layers: int, bidirectional: bool, expected: list[int]) -> None:
    """A unidirectional stack runs ONE scan of T + L - 1 steps; a bidirectional one runs
    one scan of T steps per layer (both directions in it): instead of L*T and 2*L*T."""
    config = LSTMConfig(hidden_size=4, input_size=2, num_layers=layers, bidirectional=bidirectional)
    params = {k: jnp.asarray(v) for k, v in helpers.random_params(config).items()}
    x = jnp.zeros((9, 2, 2), jnp.float32)

    def forward(p: dict, x: jax.Array) -> jax.Array:
        return core.lstm(p, x, None, config, impl="wavefront")[0]

    assert _scan_lengths(forward, params, x) == expected
    per_layer = _scan_lengths(
        lambda p, x: core.lstm(p, x, None, config, impl="custom_vjp")[0], params, x
    )
    assert len(per_layer) == layers * config.num_directions


def test_backward_is_hand_written_and_agrees_with_forward_mode_of_the_scan() -> None:
    """<J^T u, v> from the wavefront's hand-written backward equals <u, J v> from
    forward-mode autodiff of the plain scan (float64); forward mode of the wavefront
    itself is refused (a ``custom_vjp``)."""
    config = LSTMConfig(hidden_size=4, input_size=3, num_layers=3, proj_size=2)
    rng = np.random.default_rng(1)
    lengths = jnp.array([5, 2])
    with jax.enable_x64():
        params = {k: jnp.asarray(v) for k, v in helpers.random_params(config, np.float64).items()}

        def fn(impl: str):
            def f(x: jax.Array, h0: jax.Array, c0: jax.Array) -> jax.Array:
                out, final = core.lstm(
                    params, x, core.LSTMState(h0, c0), config, seq_lengths=lengths, impl=impl
                )
                return jnp.concatenate([out.ravel(), final.h.ravel(), final.c.ravel()])

            return f

        primals = (
            rng.standard_normal((5, 2, 3)),
            rng.standard_normal((3, 2, 2)),
            rng.random((3, 2, 4)),
        )
        tangents = tuple(rng.standard_normal(np.shape(a)) for a in primals)
        out, jv = jax.jvp(fn("scan"), primals, tangents)
        u = rng.standard_normal(out.shape)
        _, vjp = jax.vjp(fn("wavefront"), *primals)
        lhs = sum(float(jnp.vdot(a, b)) for a, b in zip(vjp(u), tangents, strict=True))
        rhs = float(jnp.vdot(u, jv))
        with pytest.raises(TypeError, match="forward-mode"):
            jax.jvp(fn("wavefront"), primals, tangents)
    assert abs(lhs - rhs) <= GRADIENT[np.dtype(np.float64)] * max(1.0, abs(rhs))


def test_remat_bounds_training_memory() -> None:
    """Without remat the backward keeps the gates and cells of every wave step and layer;
    with chunks of 50 it keeps the chunk boundaries and one chunk."""
    config = LSTMConfig(hidden_size=16, input_size=2, num_layers=2)
    params = {k: jnp.asarray(v) for k, v in helpers.random_params(config).items()}

    def temp_bytes(remat: int) -> int:
        def loss(p: dict, x: jax.Array) -> jax.Array:
            return jnp.sum(core.lstm(p, x, None, config, impl="wavefront", remat=remat)[0][-1])

        x = jax.ShapeDtypeStruct((2000, 2, 2), jnp.float32)
        compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    full, chunked = temp_bytes(0), temp_bytes(50)
    assert full >= 2000 * 2 * 2 * 5 * 16 * 4  # steps * layers * B * 5H * float32
    assert chunked < full / 2

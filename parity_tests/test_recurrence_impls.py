"""Every way of running the recurrence (``impl``, ``remat``) against ``torch.nn.LSTM``.

``lstm_jax.core.recurrence`` has a plain ``lax.scan`` (JAX's autodiff), a scan with a
hand-written backward (``custom_vjp``), the cuDNN path (on CPU its reference
implementation ``jax.experimental.rnn.lstm_ref`` on the packed cuDNN weights) and
rematerialization in chunks. Each is checked, forward and gradients, against torch's
packed LSTM (ragged lengths, both directions, two layers, a given initial state),
then against each other where torch cannot say more (forward mode, memory).
"""

from __future__ import annotations

from collections.abc import Callable

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import packed_reference
import pytest

import lstm_jax
from lstm_jax import core
from lstm_jax.common.config import LSTMConfig
from lstm_jax.common.tolerances import GRADIENT
from lstm_jax.core import recurrence


def _ragged(impl: str, remat: int = 0, **options: object) -> packed_reference.PackedCase:
    """Two bidirectional layers from a given state over lengths (7, 3, 5)."""
    case = helpers.Case(
        num_layers=2, bidirectional=True, state="given", seq_len=7, batch_size=3, **options
    )
    return packed_reference.PackedCase(case, lengths=(7, 3, 5), impl=impl, remat=remat)


CASES = [
    _ragged("scan", proj_size=2),
    _ragged("custom_vjp", proj_size=2),
    _ragged("custom_vjp", proj_size=2, dtype="float64"),
    _ragged("custom_vjp", bias=False, dtype="float64"),
    _ragged("cudnn"),
    _ragged("cudnn", bias=False, batch_first=True),
    # remat: chunks of 3 over T = 7 (two full chunks and a tail of one)
    _ragged("custom_vjp", remat=3, proj_size=2),
    _ragged("scan", remat=3, proj_size=2, dtype="float64"),
    # longer than the backward's chunk of 32 steps, and not a multiple of it
    packed_reference.PackedCase(helpers.Case(seq_len=37, batch_size=2), impl="custom_vjp"),
    packed_reference.PackedCase(
        helpers.Case(seq_len=37, batch_size=2, proj_size=2, state="given"),
        lengths=(37, 20),
        impl="custom_vjp",
        remat=5,
    ),
]


@pytest.mark.parametrize("pc", CASES, ids=lambda pc: pc.id)
def test_impl_matches_torch_packed(pc: packed_reference.PackedCase) -> None:
    packed_reference.check_case(pc)


def _layer_fn(impl: str) -> Callable[..., jax.Array]:
    config = LSTMConfig(hidden_size=4, input_size=3, proj_size=2)
    p = core.cell_params(_params(config), 0, 0)

    def layer(x: jax.Array, h0: jax.Array, c0: jax.Array) -> jax.Array:
        out, final = core.lstm_layer(
            p, x, core.LSTMState(h0, c0), seq_lengths=jnp.array([5, 2]), impl=impl
        )
        return jnp.concatenate([out.ravel(), final.h.ravel(), final.c.ravel()])

    return layer


def _params(config: LSTMConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.uniform(-0.5, 0.5, s) for k, s in config.param_shapes().items()}


def test_forward_mode_of_scan_agrees_with_custom_backward() -> None:
    """<J^T u, v> from the hand-written backward equals <u, J v> from forward-mode
    autodiff of the plain scan (``impl="scan"``), in float64."""
    rng = np.random.default_rng(1)
    with jax.enable_x64():
        primals = (rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 2)), rng.random((2, 4)))
        tangents = tuple(rng.standard_normal(np.shape(a)) for a in primals)
        out, jv = jax.jvp(_layer_fn("scan"), primals, tangents)
        u = rng.standard_normal(out.shape)
        _, vjp = jax.vjp(_layer_fn("custom_vjp"), *primals)
        jtu = vjp(u)
        lhs = sum(float(jnp.vdot(a, b)) for a, b in zip(jtu, tangents, strict=True))
        rhs = float(jnp.vdot(u, jv))
    assert abs(lhs - rhs) <= GRADIENT[np.dtype(np.float64)] * max(1.0, abs(rhs))


def _training_temp_bytes(remat: int, T: int) -> int:
    """XLA's temporary buffer size for the gradient of a layer over T steps."""
    config = LSTMConfig(hidden_size=16, input_size=2)
    p = core.cell_params({k: jnp.asarray(v) for k, v in _params(config).items()}, 0, 0)

    def loss(p: core.CellParams, x: jax.Array) -> jax.Array:
        zeros = jnp.zeros((2, 16))
        out, _ = core.lstm_layer(p, x, core.LSTMState(zeros, zeros), remat=remat)
        return jnp.sum(out[-1])

    x = jax.ShapeDtypeStruct((T, 2, 2), jnp.float32)
    compiled = jax.jit(jax.grad(loss)).lower(p, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_remat_bounds_training_memory() -> None:
    """Without remat the backward keeps 5H floats per step and row (gates and cell);
    with chunks of 50 over 5000 steps it keeps chunk boundaries and one chunk."""
    full = _training_temp_bytes(remat=0, T=5000)
    chunked = _training_temp_bytes(remat=50, T=5000)
    per_step_residuals = 5000 * 2 * 5 * 16 * 4  # T * B * 5H * float32
    assert full >= per_step_residuals
    assert chunked < full / 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(impl="fast"), ValueError, "impl in"),
        (dict(remat=-1), ValueError, "remat >= 0"),
        (dict(remat=2.5), TypeError, "int remat"),
        (dict(unroll=0), ValueError, "unroll >= 1"),
    ],
)
def test_bad_options_are_refused_at_construction(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        lstm_jax.LSTM(4, **kwargs)


def test_cudnn_refuses_what_cudnn_cannot_do() -> None:
    x = np.zeros((3, 2, 2), np.float32)
    model = lstm_jax.LSTM(4, proj_size=2, impl="cudnn")
    with pytest.raises(ValueError, match="no projections"):
        model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="cannot rematerialize"):
        lstm_jax.LSTM(4, impl="cudnn", remat=2).init(jax.random.key(0), x)


def test_auto_picks_the_hand_written_backward_off_gpu() -> None:
    config = LSTMConfig(hidden_size=4, input_size=3)
    p = core.cell_params(_params(config), 0, 0)
    expected = "cudnn" if recurrence.on_cuda() else "custom_vjp"
    assert recurrence.resolve("auto", p, jnp.float32, remat=0) == expected
    assert recurrence.resolve("auto", p, jnp.float32, remat=8) == "custom_vjp"

"""Every way of running the recurrence (``impl``, ``remat``) against ``torch.nn.LSTM``.

``lstm_jax.core.recurrence`` has a plain ``lax.scan`` (JAX's autodiff), a scan with a
hand-written backward (``custom_vjp``), the same with the input projection hoisted out
of the loop (``hoisted``), the cuDNN path (on CPU its reference implementation
``jax.experimental.rnn.lstm_ref`` on the packed cuDNN weights, all layers and
directions in one call) and rematerialization in chunks. Each is checked, forward and
gradients, against torch's packed LSTM (ragged lengths, both directions, two layers, a
given initial state), then against each other where torch cannot say more (forward mode, memory).
"""

from __future__ import annotations

from collections.abc import Callable

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import packed_reference
import pytest
from flax import nnx

import lstm_jax
from lstm_jax import core
from lstm_jax.common.config import LSTMConfig
from lstm_jax.common.tolerances import GRADIENT
from lstm_jax.core import cudnn, recurrence


def _ragged(impl: str, remat: int = 0, **options: object) -> packed_reference.PackedCase:
    """Two bidirectional layers from a given state over lengths (7, 3, 5)."""
    case = helpers.Case(
        num_layers=2, bidirectional=True, state="given", seq_len=7, batch_size=3, **options
    )
    return packed_reference.PackedCase(case, lengths=(7, 3, 5), impl=impl, remat=remat)


def _wavefront_stack(remat: int = 0, **options: object) -> packed_reference.PackedCase:
    """Three unidirectional layers from a given state over lengths (7, 3, 5), as a wavefront."""
    case = helpers.Case(num_layers=3, state="given", seq_len=7, batch_size=3, **options)
    return packed_reference.PackedCase(case, lengths=(7, 3, 5), impl="wavefront", remat=remat)


CASES = [
    _ragged("scan", proj_size=2),
    _ragged("custom_vjp", proj_size=2),
    _ragged("custom_vjp", proj_size=2, dtype="float64"),
    _ragged("custom_vjp", bias=False, dtype="float64"),
    _ragged("hoisted", proj_size=2),
    _ragged("hoisted", bias=False, dtype="float64"),
    _ragged("hoisted", remat=3, proj_size=2),
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
    # the wavefront: directions fused (bidirectional), layers skewed (unidirectional)
    _ragged("wavefront", proj_size=2),
    _ragged("wavefront", bias=False, dtype="float64"),
    _ragged("wavefront", remat=3, proj_size=2),
    _wavefront_stack(),
    _wavefront_stack(proj_size=2, bias=False, dtype="float64", remat=2),
    packed_reference.PackedCase(helpers.Case(seq_len=37, num_layers=2), impl="wavefront"),
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


@pytest.mark.parametrize("impl", ["custom_vjp", "hoisted"])
def test_forward_mode_of_scan_agrees_with_custom_backward(impl: str) -> None:
    """<J^T u, v> from the hand-written backward equals <u, J v> from forward-mode
    autodiff of the plain scan (``impl="scan"``), in float64."""
    rng = np.random.default_rng(1)
    with jax.enable_x64():
        primals = (rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 2)), rng.random((2, 4)))
        tangents = tuple(rng.standard_normal(np.shape(a)) for a in primals)
        out, jv = jax.jvp(_layer_fn("scan"), primals, tangents)
        u = rng.standard_normal(out.shape)
        _, vjp = jax.vjp(_layer_fn(impl), *primals)
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
    """At construction, naming the module (they were refused only at init, unnamed);
    a float64 input at the call."""
    with pytest.raises(ValueError, match=r"^LSTM: impl='cudnn' cannot run projections"):
        lstm_jax.LSTM(4, proj_size=2, impl="cudnn")
    with pytest.raises(ValueError, match=r"^LSTMModeler: impl='cudnn' cannot rematerialize"):
        lstm_jax.LSTMModeler(2, 4, 1, impl="cudnn", remat=2)
    with pytest.raises(ValueError, match=r"^LSTM: impl='cudnn' cannot run projections"):
        lstm_jax.nnx.LSTM(2, 4, proj_size=1, impl="cudnn", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^LSTMModeler: expected impl in .*got 'cuda'"):
        lstm_jax.nnx.LSTMModeler(2, 4, 1, impl="cuda", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="cannot rematerialize"):  # the core function too
        recurrence.resolve("cudnn", 0, jnp.float32, remat=2)
    with jax.enable_x64(True):
        x = np.zeros((3, 2, 2), np.float64)
        model = lstm_jax.LSTM(4, impl="cudnn", param_dtype=jnp.float64)
        with pytest.raises(ValueError, match="supports float32 only, got float64"):
            model.init(jax.random.key(0), x)


def test_auto_picks_the_hand_written_backward_everywhere() -> None:
    """No GPU run is recorded in benchmarks/ yet: "auto" is "custom_vjp" on every backend,
    cuDNN only when asked for."""
    for remat in (0, 8):
        assert recurrence.resolve("auto", 0, jnp.float32, remat=remat) == "custom_vjp"
    assert recurrence.resolve("cudnn", 0, jnp.float32, remat=0) == "cudnn"


@pytest.mark.parametrize(
    ("matmul_precision", "expected"),
    [
        ("highest", jax.lax.Precision.HIGHEST),  # what the parity tests pin: TF32 off
        ("float32", jax.lax.Precision.HIGHEST),
        (None, jax.lax.Precision.HIGH),  # JAX's default: TF32 allowed, as its matmuls
        ("tensorfloat32", jax.lax.Precision.HIGH),
        ("bfloat16", jax.lax.Precision.HIGH),  # cuDNN has no bf16 passes; rnn refuses DEFAULT
    ],
)
def test_cudnn_call_follows_jax_matmul_precision(matmul_precision, expected) -> None:
    with jax.default_matmul_precision(matmul_precision):
        assert cudnn.cudnn_precision() == expected
    assert cudnn.cudnn_precision("highest") == jax.lax.Precision.HIGHEST
    assert cudnn.cudnn_precision(jax.lax.Precision.HIGH) == jax.lax.Precision.HIGH


def test_cudnn_packs_layers_and_directions_in_cudnn_order() -> None:
    """Every pseudo-layer's W_ih, W_hh first, then every one's b_ih, b_hh, as
    ``jax.experimental.rnn.unpack_lstm_weights`` reads them back."""
    from jax.experimental import rnn

    config = LSTMConfig(hidden_size=3, input_size=2, num_layers=2, bidirectional=True)
    params = {k: v.astype(np.float32) for k, v in _params(config).items()}
    layers = [core.cell_params(params, k, d) for k in range(2) for d in range(2)]
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(cudnn.pack_weights(layers), 2, 3, 2, True)
    for index, p in enumerate(layers):
        for got, want in [
            (w_ih[index], p.weight_ih),
            (w_hh[index], p.weight_hh),
            (b_ih[index], p.bias_ih),
            (b_hh[index], p.bias_hh),
        ]:
            np.testing.assert_array_equal(np.asarray(got), want)


def test_cudnn_runs_the_whole_stack_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two bidirectional layers: one cuDNN call in eval mode; with dropout between layers
    (training), one call per layer, both directions each."""
    calls = []
    real = cudnn.cudnn_lstm

    def counting(layers, *args, **kwargs):
        calls.append((len(layers), kwargs["bidirectional"]))
        return real(layers, *args, **kwargs)

    monkeypatch.setattr(core.stack, "cudnn_lstm", counting)
    config = LSTMConfig(hidden_size=3, input_size=2, num_layers=2, bidirectional=True, dropout=0.5)
    params = {k: jnp.asarray(v, jnp.float32) for k, v in _params(config).items()}
    x = jnp.ones((4, 2, 2), jnp.float32)
    core.lstm(params, x, None, config, impl="cudnn")
    assert calls == [(4, True)]
    calls.clear()
    core.lstm(params, x, None, config, impl="cudnn", dropout_rng=jax.random.key(0))
    assert calls == [(2, True), (2, True)]

"""``lstm_jax.GRU`` / ``RNN`` / ``GRUCell`` / ``RNNCell`` against torch's modules (issue 21).

References: ``torch.nn.GRU``, ``nn.RNN``, ``nn.GRUCell``, ``nn.RNNCell`` themselves
(forward and gradients, float32 and float64), ``pack_padded_sequence`` for
``seq_lengths``, a per-step Python loop of the kind's step for the scan, and torch's
own optimizers for training trajectories. A curated grid covers every option value:
layers, bias, batch_first, bidirectional, unbatched input, h_0 given or not,
nonlinearity, dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from helpers import x64_if

import lstm_jax
from lstm_jax import core
from lstm_jax.common.config import RecurrentConfig, rnn_mode
from lstm_jax.common.tolerances import FORWARD, GRADIENT, TRAINING, assert_close, scaled_error
from lstm_jax.core import kinds
from lstm_jax.core.state import cell_params

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
TORCH = {F32: torch.float32, F64: torch.float64}


@dataclass(frozen=True)
class Case:
    """One configuration: the module ("GRU", "RNN"), its options and the input's layout."""

    module: str = "GRU"
    nonlinearity: str = "tanh"
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    unbatched: bool = False
    h0: bool = False
    dtype: str = "float32"
    impl: str = "auto"
    remat: int = 0

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def options(self) -> dict:
        opts = {
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "bidirectional": self.bidirectional,
        }
        return opts | ({"nonlinearity": self.nonlinearity} if self.module == "RNN" else {})

    def __str__(self) -> str:
        return "-".join(
            [
                self.module + ("" if self.module == "GRU" else f"_{self.nonlinearity}"),
                f"L{self.num_layers}",
                "bias" if self.bias else "nobias",
                "bf" if self.batch_first else "tf",
                "bi" if self.bidirectional else "uni",
                "unbatched" if self.unbatched else "3d",
                "h0" if self.h0 else "h0none",
                "f64" if self.dtype == "float64" else "f32",
                self.impl,
                f"remat{self.remat}",
            ]
        )


GRID = [
    Case(),
    Case(num_layers=2, bidirectional=True, h0=True),
    Case(bias=False, batch_first=True, h0=True, dtype="float64"),
    Case(num_layers=2, unbatched=True, h0=True),
    Case(bidirectional=True, batch_first=True, dtype="float64"),
    Case(module="RNN"),
    Case(module="RNN", nonlinearity="relu", num_layers=2, bidirectional=True, h0=True),
    Case(module="RNN", nonlinearity="relu", bias=False, batch_first=True, dtype="float64"),
    Case(module="RNN", unbatched=True, h0=True, bidirectional=True, dtype="float64"),
    Case(module="RNN", num_layers=2, batch_first=True, h0=True),
    Case(impl="scan", num_layers=2, h0=True),
    Case(impl="custom_vjp", bias=False, bidirectional=True, remat=4, dtype="float64"),
    Case(impl="hoisted", num_layers=2, bidirectional=True, h0=True, remat=4),
    Case(module="RNN", nonlinearity="relu", impl="scan", remat=4, dtype="float64"),
    Case(module="RNN", impl="hoisted", batch_first=True, h0=True, dtype="float64"),
    Case(module="RNN", nonlinearity="relu", impl="custom_vjp", num_layers=2, remat=4),
]

INPUT, HIDDEN, STEPS, BATCH = 3, 5, 6, 4


def test_grid_covers_every_option_value() -> None:
    for name, values in {
        "module": ("GRU", "RNN"),
        "nonlinearity": ("tanh", "relu"),
        "num_layers": (1, 2),
        "bias": (True, False),
        "batch_first": (True, False),
        "bidirectional": (True, False),
        "unbatched": (True, False),
        "h0": (True, False),
        "dtype": ("float32", "float64"),
        "impl": ("auto", "scan", "custom_vjp", "hoisted"),
        "remat": (0, 4),
    }.items():
        assert {getattr(c, name) for c in GRID} == set(values), name


def torch_module(case: Case) -> torch.nn.Module:
    torch.manual_seed(0)
    cls = torch.nn.GRU if case.module == "GRU" else torch.nn.RNN
    return cls(INPUT, HIDDEN, **case.options()).to(TORCH[case.np_dtype])


def jax_module(case: Case) -> torch.nn.Module:
    cls = lstm_jax.GRU if case.module == "GRU" else lstm_jax.RNN
    return cls(HIDDEN, **case.options(), impl=case.impl, remat=case.remat)


def inputs(case: Case) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(1)
    D = 2 if case.bidirectional else 1
    shape = (
        (STEPS, INPUT)
        if case.unbatched
        else ((BATCH, STEPS, INPUT) if case.batch_first else (STEPS, BATCH, INPUT))
    )
    h_shape = (
        (D * case.num_layers, HIDDEN) if case.unbatched else ((D * case.num_layers, BATCH, HIDDEN))
    )
    x = rng.standard_normal(shape).astype(case.np_dtype)
    h0 = rng.standard_normal(h_shape).astype(case.np_dtype) if case.h0 else None
    return x, h0


def cotangents(out_shape: tuple, h_shape: tuple, dtype: np.dtype) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(2)
    return rng.standard_normal(out_shape).astype(dtype), rng.standard_normal(h_shape).astype(dtype)


@functools.cache
def run(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Both backends' outputs and gradients of ``<out, g_out> + <h_n, g_h>`` (cached)."""
    tm = torch_module(case)
    x, h0 = inputs(case)
    xt = torch.tensor(x, requires_grad=True)
    h0t = None if h0 is None else torch.tensor(h0, requires_grad=True)
    out, h_n = tm(xt, h0t)
    g_out, g_h = cotangents(tuple(out.shape), tuple(h_n.shape), case.np_dtype)
    ((out * torch.from_numpy(g_out)).sum() + (h_n * torch.from_numpy(g_h)).sum()).backward()
    reference = {"out": out.detach().numpy(), "h_n": h_n.detach().numpy(), "d_x": xt.grad.numpy()}
    if h0t is not None:
        reference["d_h0"] = h0t.grad.numpy()
    reference |= {f"d_{k}": p.grad.numpy() for k, p in tm.named_parameters()}

    with x64_if(case.np_dtype):
        jm = jax_module(case)
        params = {k: jnp.asarray(v.detach().numpy()) for k, v in tm.state_dict().items()}

        def loss(params: dict, x: jax.Array, h0: jax.Array | None) -> tuple:
            out, h_n = jm.apply({"params": params}, x, h0)
            return jnp.sum(out * g_out) + jnp.sum(h_n * g_h), (out, h_n)

        argnums = (0, 1, 2) if h0 is not None else (0, 1)
        grads, (out_j, h_j) = jax.grad(loss, argnums=argnums, has_aux=True)(
            params, jnp.asarray(x), None if h0 is None else jnp.asarray(h0)
        )
        mine = {"out": np.asarray(out_j), "h_n": np.asarray(h_j), "d_x": np.asarray(grads[1])}
        if h0 is not None:
            mine["d_h0"] = np.asarray(grads[2])
        mine |= {f"d_{k}": np.asarray(v) for k, v in grads[0].items()}
    return {"torch": reference, "jax": mine}


@pytest.mark.parametrize("case", GRID, ids=str)
def test_forward_matches_torch(case: Case) -> None:
    result = run(case)
    for name in ("out", "h_n"):
        assert result["jax"][name].shape == result["torch"][name].shape, name
        assert_close(result["jax"][name], result["torch"][name], FORWARD[case.np_dtype], name)


@pytest.mark.parametrize("case", GRID, ids=str)
def test_gradients_match_torch(case: Case) -> None:
    result = run(case)
    assert set(result["jax"]) == set(result["torch"])
    for name, reference in result["torch"].items():
        if name.startswith("d_"):
            assert_close(result["jax"][name], reference, GRADIENT[case.np_dtype], name)


def test_init_matches_torch_names_shapes_and_bounds() -> None:
    for case in (Case(num_layers=2, bidirectional=True), Case(module="RNN", bias=False)):
        x, _ = inputs(case)
        variables = jax_module(case).init(jax.random.key(0), x)
        torch_shapes = {k: tuple(v.shape) for k, v in torch_module(case).state_dict().items()}
        params = variables["params"]
        assert {k: tuple(v.shape) for k, v in params.items()} == torch_shapes
        bound = 1 / np.sqrt(HIDDEN)
        values = np.concatenate([np.ravel(v) for v in params.values()])
        assert np.all(np.abs(values) <= bound) and np.abs(values).max() > 0.8 * bound


@pytest.mark.parametrize("module", ["GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_cells_match_torch(module: str, dtype: np.dtype) -> None:
    torch.manual_seed(3)
    if module == "GRU":
        tc, jc = torch.nn.GRUCell(INPUT, HIDDEN), lstm_jax.GRUCell(HIDDEN)
    else:
        nl = module.removeprefix("RNN_").lower()
        tc, jc = (
            torch.nn.RNNCell(INPUT, HIDDEN, nonlinearity=nl),
            lstm_jax.RNNCell(HIDDEN, nonlinearity=nl),
        )
    tc = tc.to(TORCH[dtype])
    rng = np.random.default_rng(4)
    x = rng.standard_normal((BATCH, INPUT)).astype(dtype)
    h = rng.standard_normal((BATCH, HIDDEN)).astype(dtype)
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    out = tc(xt, ht)
    out.square().sum().backward()
    with x64_if(dtype):
        params = {k: jnp.asarray(v.detach().numpy()) for k, v in tc.state_dict().items()}

        def loss(params: dict, x: jax.Array, h: jax.Array) -> tuple:
            new = jc.apply({"params": params}, x, h)
            return jnp.sum(new**2), new

        (d_p, d_x, d_h), new = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, x, h)
        assert_close(new, out.detach().numpy(), FORWARD[dtype], "h'")
        assert_close(d_x, xt.grad.numpy(), GRADIENT[dtype], "d_x")
        assert_close(d_h, ht.grad.numpy(), GRADIENT[dtype], "d_h")
        for k, p in tc.named_parameters():
            assert_close(d_p[k], p.grad.numpy(), GRADIENT[dtype], k)
        # unbatched, and h None (zeros), as torch
        assert_close(
            jc.apply({"params": params}, x[0], h[0]),
            out.detach().numpy()[0],
            FORWARD[dtype],
            "unbatched",
        )
        assert_close(
            jc.apply({"params": params}, x),
            tc(torch.from_numpy(x)).detach().numpy(),
            FORWARD[dtype],
            "h=None",
        )


@pytest.mark.parametrize("module", ["GRU", "RNN"])
@pytest.mark.parametrize(
    "impl, remat", [("custom_vjp", 0), ("scan", 0), ("hoisted", 0), ("custom_vjp", 4)]
)
def test_packed_sequences_match_pack_padded_sequence(module: str, impl: str, remat: int) -> None:
    case = Case(
        module=module, num_layers=2, bidirectional=True, batch_first=True, h0=True, impl=impl,
        remat=remat,
    )  # fmt: skip
    tm, jm = torch_module(case), jax_module(case)
    x, h0 = inputs(case)
    lengths = np.array([6, 2, 5, 1])
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    out_p, h_n = tm(packed, torch.from_numpy(h0))
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=STEPS)
    g_out, g_h = cotangents(tuple(out.shape), tuple(h_n.shape), F32)
    ((out * torch.from_numpy(g_out)).sum() + (h_n * torch.from_numpy(g_h)).sum()).backward()
    params = {k: jnp.asarray(v.detach().numpy()) for k, v in tm.state_dict().items()}
    x_nan = x.copy()
    x_nan[1, 2:] = np.nan  # torch never reads the padding; neither may we

    def loss(params: dict, x: jax.Array) -> tuple:
        mine, h_mine = jm.apply({"params": params}, x, h0, seq_lengths=lengths)
        return jnp.sum(mine * g_out) + jnp.sum(h_mine * g_h), (mine, h_mine)

    (d_params, d_x), (mine, h_mine) = jax.grad(loss, argnums=(0, 1), has_aux=True)(
        params, jnp.asarray(x_nan)
    )
    assert_close(mine, out.detach().numpy(), FORWARD[F32], "output")
    assert_close(h_mine, h_n.detach().numpy(), FORWARD[F32], "h_n")
    assert_close(d_x, xt.grad.numpy(), GRADIENT[F32], "d_x")
    for name, p in tm.named_parameters():
        assert_close(d_params[name], p.grad.numpy(), GRADIENT[F32], f"d_{name}")


def loop_stack(kind: kinds.Kind, params: dict, x: jax.Array, h0: jax.Array, layers: int) -> tuple:
    """The stack as Python loops over layers and steps of ``kind.step`` (unidirectional)."""
    layer_input, finals = x, []
    for layer in range(layers):
        w = kind.weights(cell_params(params, layer, 0))
        h, hs = h0[layer], []
        for t in range(x.shape[0]):
            h, _ = kind.step(w, h, layer_input[t])
            hs.append(h)
        layer_input = jnp.stack(hs)
        finals.append(h)
    return layer_input, jnp.stack(finals)


@pytest.mark.parametrize("mode", ["GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("impl", ["scan", "custom_vjp", "hoisted"])
def test_scan_matches_per_step_loop(mode: str, impl: str) -> None:
    """Forward and gradients of each driver (and its remat) against Python loops of the
    same step differentiated by JAX."""
    config = RecurrentConfig(hidden_size=HIDDEN, input_size=INPUT, num_layers=2, mode=mode)
    rng = np.random.default_rng(5)
    params = {
        k: jnp.asarray(rng.uniform(-0.5, 0.5, s), jnp.float32)
        for k, s in config.param_shapes().items()
    }
    x = jnp.asarray(rng.standard_normal((STEPS, BATCH, INPUT)), jnp.float32)
    h0 = jnp.asarray(rng.standard_normal((2, BATCH, HIDDEN)), jnp.float32)
    g_out = jnp.asarray(rng.standard_normal((STEPS, BATCH, HIDDEN)), jnp.float32)

    def loss(run: Callable, params: dict, x: jax.Array, h0: jax.Array) -> tuple:
        out, h_n = run(params, x, h0)
        return jnp.sum(out * g_out) + jnp.sum(jnp.sin(h_n)), (out, h_n)

    def reference(params: dict, x: jax.Array, h0: jax.Array) -> tuple:
        return loop_stack(kinds.kind_of(mode), params, x, h0, 2)

    grad = jax.grad(loss, argnums=(1, 2, 3), has_aux=True)
    ref_grads, (ref_out, ref_h) = grad(reference, params, x, h0)
    for remat in (0, 4):  # remat recomputes chunks; the function is the same

        def mine(params: dict, x: jax.Array, h0: jax.Array, remat: int = remat) -> tuple:
            return core.lstm(params, x, h0, config, impl=impl, remat=remat)

        grads, (out, h_n) = grad(mine, params, x, h0)
        assert_close(out, ref_out, FORWARD[F32], f"output, remat={remat}")
        assert_close(h_n, ref_h, FORWARD[F32], f"h_n, remat={remat}")
        for name, a, b in zip(["params", "x", "h0"], grads, ref_grads, strict=True):
            for leaf, ref in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
                assert_close(leaf, ref, GRADIENT[F32], f"d_{name}, remat={remat}")


def _swap_rz(weight: np.ndarray) -> np.ndarray:
    r, z, n = np.split(weight, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def test_tolerance_catches_swapped_gates_and_a_folded_bias() -> None:
    case = Case(h0=True)
    tm, jm = torch_module(case), jax_module(case)
    x, h0 = inputs(case)
    reference = tm(torch.from_numpy(x), torch.from_numpy(h0))[0].detach().numpy()
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    right = np.asarray(jm.apply({"params": sd}, x, h0)[0])
    assert scaled_error(right, reference) <= FORWARD[F32]
    swapped = sd | {
        k: _swap_rz(sd[k]) for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    }
    # a folded bias (Flax's GRUCell): b_hn moved out of the reset gate's product
    H = HIDDEN
    folded_ih = sd["bias_ih_l0"] + np.concatenate(
        [sd["bias_hh_l0"][: 2 * H], sd["bias_hh_l0"][2 * H :]]
    )
    folded = sd | {"bias_ih_l0": folded_ih, "bias_hh_l0": np.zeros_like(sd["bias_hh_l0"])}
    for name, params in (("swapped r/z", swapped), ("folded bias", folded)):
        wrong = np.asarray(jm.apply({"params": params}, x, h0)[0])
        assert scaled_error(wrong, reference) > 100 * FORWARD[F32], name


def test_dropout_between_layers_uses_the_stack_convention() -> None:
    """Training mode: layer 1 reads layer 0's output through ``core.dropout`` with the key
    the stack splits off, as the LSTM's stack does (the keys of ``lstm_jax.LSTM``)."""
    config = RecurrentConfig(
        hidden_size=HIDDEN, input_size=INPUT, num_layers=2, dropout=0.5, mode="GRU"
    )
    rng = np.random.default_rng(6)
    params = {
        k: jnp.asarray(rng.uniform(-0.5, 0.5, s), jnp.float32)
        for k, s in config.param_shapes().items()
    }
    x = jnp.asarray(rng.standard_normal((STEPS, BATCH, INPUT)), jnp.float32)
    key = jax.random.key(7)
    out, _ = core.lstm(params, x, None, config, dropout_rng=key)
    one = RecurrentConfig(hidden_size=HIDDEN, input_size=INPUT, mode="GRU")
    first = {k: v for k, v in params.items() if k.endswith("_l0")}
    second = {k.replace("_l1", "_l0"): v for k, v in params.items() if k.endswith("_l1")}
    mid, _ = core.lstm(first, x, None, one)
    _, sub = jax.random.split(key)
    expected, _ = core.lstm(second, core.dropout(sub, mid, 0.5), None, one)
    assert_close(out, expected, FORWARD[F32], "output")
    eval_out, _ = core.lstm(params, x, None, config)
    assert scaled_error(out, eval_out) > 1e-2
    # the module: train mode needs a key, eval mode is deterministic
    jm = lstm_jax.GRU(HIDDEN, num_layers=2, dropout=0.5)
    with pytest.raises(ValueError, match="GRU: deterministic=False"):
        jm.apply({"params": params}, x, deterministic=False)
    a = jm.apply({"params": params}, x, deterministic=False, rngs={"dropout": key})[0]
    assert scaled_error(a, jm.apply({"params": params}, x)[0]) > 1e-2


class Tagger(torch.nn.Module):
    """torch: a batch-first GRU (or RNN) and a linear head on the last step."""

    def __init__(self, module: str) -> None:
        super().__init__()
        cls = torch.nn.GRU if module == "GRU" else torch.nn.RNN
        self.rnn = cls(INPUT, HIDDEN, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(HIDDEN, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def flax_tagger(module: str):
    import flax.linen as nn

    class FlaxTagger(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            cls = lstm_jax.GRU if module == "GRU" else lstm_jax.RNN
            out, _ = cls(HIDDEN, num_layers=2, batch_first=True, name="rnn")(x)
            return lstm_jax.Linear(2, name="head")(out[:, -1])

    return FlaxTagger()


@pytest.mark.parametrize("module", ["GRU", "RNN"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_follows_torch(module: str, optimizer: str) -> None:
    torch.manual_seed(8)
    tm = Tagger(module)
    rng = np.random.default_rng(9)
    xs = rng.standard_normal((12, STEPS, INPUT)).astype(np.float32)
    ys = np.stack([xs[:, :, 0].mean(1), xs[:, -1, 1]], axis=1).astype(np.float32)
    nested: dict = {}
    for key, value in tm.state_dict().items():
        scope, name = key.split(".")
        nested.setdefault(scope, {})[name] = jnp.asarray(value.numpy())
    variables = {"params": nested}
    spec = lstm_jax.SGD(0.1) if optimizer == "sgd" else lstm_jax.Adam(0.01)
    epochs, batch = 4, 4
    _, losses = lstm_jax.fit(
        flax_tagger(module),
        variables,
        xs,
        ys,
        optimizer=spec,
        epochs=epochs,
        batch_size=batch,
        shuffle_seed=0,
        batch_first=True,
    )
    opt = (
        torch.optim.SGD(tm.parameters(), lr=0.1)
        if optimizer == "sgd"
        else torch.optim.Adam(tm.parameters(), lr=0.01)
    )
    expected = []
    for order in lstm_jax.epoch_orders(len(xs), epochs, 0):
        total = 0.0
        for start in range(0, len(xs), batch):
            rows = order[start : start + batch]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(
                tm(torch.from_numpy(xs[rows])), torch.from_numpy(ys[rows])
            )
            loss.backward()
            opt.step()
            total += loss.item()
        expected.append(total)
    assert_close(losses, np.array(expected), TRAINING[F32], "per-epoch losses")
    assert expected[-1] < expected[0]


@pytest.mark.parametrize("module", ["GRU", "RNN"])
def test_bfloat16_compute_gradients_are_float32_gradients_rounded(module: str) -> None:
    """One SGD step (lr 1) with the hand-written backward computing in bfloat16 moves the
    float32 parameters by float32's gradient, rounded."""
    import optax

    from lstm_jax.common.tolerances import BFLOAT16_COMPUTE

    model = flax_tagger(module)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((8, STEPS, INPUT)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    variables = model.init(jax.random.key(0), x)
    moves = {}
    for name, dtype in (("f32", None), ("bf16", jnp.bfloat16)):
        step = lstm_jax.make_train_step(model, optax.sgd(1.0), compute_dtype=dtype)
        new = step(variables, optax.sgd(1.0).init(variables["params"]), x, y)[0]
        assert {leaf.dtype for leaf in jax.tree.leaves(new)} == {jnp.dtype(jnp.float32)}
        moves[name] = jax.tree.map(lambda a, b: np.asarray(a - b), variables, new)
    errors = jax.tree.leaves(jax.tree.map(scaled_error, moves["bf16"], moves["f32"]))
    assert max(errors) <= BFLOAT16_COMPUTE["gradient"], errors
    assert min(errors) > 0, "bfloat16 gradients equal float32's: the compute was not bf16"


def test_bad_options_and_inputs_name_the_module() -> None:
    with pytest.raises(
        ValueError, match="RNN: expected nonlinearity 'tanh' or 'relu', got 'sigmoid'"
    ):
        lstm_jax.RNN(4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="GRU: impl='wavefront' supports only LSTM"):
        lstm_jax.GRU(4, impl="wavefront")
    with pytest.raises(TypeError, match="num_layers should be of type int"):
        lstm_jax.GRU(4, num_layers=1.0)
    case = Case(h0=True)
    tm, jm = torch_module(case), jax_module(case)
    params = {k: v.numpy() for k, v in tm.state_dict().items()}
    x, h0 = inputs(case)
    with pytest.raises(ValueError, match=r"GRU: expected h_0 of shape \(1, 4, 5\)"):
        jm.apply({"params": params}, x, h0[:, :2])
    with pytest.raises(TypeError, match="GRU: expected h as one array"):
        jm.apply({"params": params}, x, (h0, h0))
    with pytest.raises(ValueError, match=r"GRU: input\.size"):
        jm.apply({"params": params}, x[..., :2], h0)
    lstm_params = {k: v.numpy() for k, v in torch.nn.LSTM(INPUT, HIDDEN).state_dict().items()}
    with pytest.raises(
        ValueError, match=r"size mismatch for weight_ih_l0: expected \(15, 3\), got \(20, 3\)"
    ):
        jm.apply({"params": lstm_params}, x, h0)
    assert rnn_mode("relu") == "RNN_RELU"

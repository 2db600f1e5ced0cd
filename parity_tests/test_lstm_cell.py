"""``lstm_jax.LSTMCell`` against ``torch.nn.LSTMCell``: names, forward and gradients,
batched and unbatched, ``None`` state, and a small attention decoder loop written with
``nn.LSTMCell`` ported step for step."""

from __future__ import annotations

import re

import flax.linen as fnn
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import lstm_jax
from lstm_jax.common.tolerances import FORWARD, GRADIENT, scaled_error

I, H = 3, 5


def torch_cell(bias: bool = True, dtype: torch.dtype = torch.float32) -> torch.nn.LSTMCell:
    torch.manual_seed(0)
    return torch.nn.LSTMCell(I, H, bias=bias).to(dtype)


CASES = [
    ("batched", (4, I), True, True, "float32"),
    ("unbatched", (I,), True, True, "float32"),
    ("no-state", (4, I), False, True, "float32"),
    ("no-bias-f64", (2, I), True, False, "float64"),
    ("unbatched-no-state-f64", (I,), False, True, "float64"),
]


@pytest.mark.parametrize(
    ("x_shape", "with_state", "bias", "dtype"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_forward_and_gradients_match_torch(
    x_shape: tuple[int, ...], with_state: bool, bias: bool, dtype: str
) -> None:
    np_dtype = np.dtype(dtype)
    tc = torch_cell(bias, helpers.TORCH_DTYPES[np_dtype])
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np_dtype)
    state_shape = (*x_shape[:-1], H)
    state = tuple(rng.standard_normal(state_shape).astype(np_dtype) for _ in range(2))
    g_h, g_c = (rng.standard_normal(state_shape).astype(np_dtype) for _ in range(2))

    # torch: the reference
    tx = torch.tensor(x, requires_grad=True)
    ts = tuple(torch.tensor(s, requires_grad=True) for s in state) if with_state else None
    th, tcell = tc(tx, ts)
    loss = (th * torch.from_numpy(g_h)).sum() + (tcell * torch.from_numpy(g_c)).sum()
    wrt = [tx, *(ts or ()), *tc.parameters()]
    torch_grads = [g.numpy() for g in torch.autograd.grad(loss, wrt)]

    with helpers.x64_if(dtype):
        cell = lstm_jax.LSTMCell(H, bias=bias)
        variables = lstm_jax.params_from_torch(tc.state_dict())
        assert sorted(variables["params"]) == sorted(tc.state_dict())

        def scalar(params, x, state):
            h, c = cell.apply({"params": params}, x, state)
            return jnp.sum(h * g_h) + jnp.sum(c * g_c), (h, c)

        argnums = (0, 1, 2) if with_state else (0, 1)
        grad_fn = jax.grad(scalar, argnums=argnums, has_aux=True)
        grads, (h, c) = grad_fn(variables["params"], x, state if with_state else None)

    assert h.shape == tuple(th.shape) and c.shape == tuple(tcell.shape) == state_shape
    assert scaled_error(h, th.detach().numpy()) <= FORWARD[np_dtype]
    assert scaled_error(c, tcell.detach().numpy()) <= FORWARD[np_dtype]
    param_grads, x_grad, *state_grads = grads
    jax_grads = [
        x_grad,
        *(state_grads[0] if with_state else ()),
        *(param_grads[k] for k, _ in tc.named_parameters()),
    ]
    for got, want in zip(jax_grads, torch_grads, strict=True):
        assert scaled_error(got, want) <= GRADIENT[np_dtype]


def test_tolerance_catches_a_swapped_gate() -> None:
    """Swapping the f and g quarters of weight_ih moves h far beyond FORWARD."""
    tc = torch_cell()
    x = np.random.default_rng(2).standard_normal((4, I)).astype(np.float32)
    with torch.no_grad():
        want = tc(torch.from_numpy(x))[0].numpy()
    sd = {k: v.clone() for k, v in tc.state_dict().items()}
    w = sd["weight_ih"]
    sd["weight_ih"] = torch.cat([w[:H], w[2 * H : 3 * H], w[H : 2 * H], w[3 * H :]])
    h, _ = lstm_jax.LSTMCell(H).apply(lstm_jax.params_from_torch(sd), x)
    assert scaled_error(h, want) > 100 * FORWARD[np.dtype(np.float32)]


def test_transfer_round_trip_and_init_follow_torch() -> None:
    tc = torch_cell()
    variables = lstm_jax.params_from_torch(tc.state_dict())
    back = lstm_jax.params_to_torch(variables)
    fresh = torch.nn.LSTMCell(I, H)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    for key, value in tc.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    init = lstm_jax.LSTMCell(H).init(jax.random.key(0), jnp.zeros((2, I)))["params"]
    assert {k: v.shape for k, v in init.items()} == {
        k: tuple(v.shape) for k, v in tc.state_dict().items()
    }
    bound = 1 / np.sqrt(H)
    assert all(float(jnp.max(jnp.abs(v))) <= bound for v in init.values())
    no_bias = lstm_jax.params_from_torch(torch.nn.LSTMCell(I, H, bias=False).state_dict())
    assert sorted(no_bias["params"]) == ["weight_hh", "weight_ih"]
    with pytest.raises(ValueError, match=re.escape("missing key(s): bias_hh")):
        sd = dict(tc.state_dict())
        del sd["bias_hh"]
        lstm_jax.params_from_torch(sd)
    with pytest.raises(ValueError, match="GRUCell or RNNCell"):
        lstm_jax.params_from_torch(torch.nn.GRUCell(I, H).state_dict())
    with pytest.raises(ValueError, match="GRUCell or RNNCell"):
        lstm_jax.params_from_torch(torch.nn.GRUCell(I, 4).state_dict())  # 3H = 12 rows


def test_bad_calls_say_what_was_expected() -> None:
    cell = lstm_jax.LSTMCell(H)
    variables = lstm_jax.params_from_torch(torch_cell().state_dict())
    with pytest.raises(ValueError, match=r"LSTMCell: expected input to be 1-D \(I,\) or 2-D"):
        cell.apply(variables, jnp.zeros((2, 3, I)))
    with pytest.raises(ValueError, match=r"LSTMCell: expected input of size 3.*got shape \(2, 4\)"):
        cell.apply(variables, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"LSTMCell: expected h of shape \(2, 5\).*got \(3, 5\)"):
        cell.apply(variables, jnp.zeros((2, I)), (jnp.zeros((3, H)), jnp.zeros((2, H))))
    with pytest.raises(
        TypeError, match="LSTMCell: expected a floating point input, got dtype int32"
    ):
        cell.apply(variables, jnp.zeros((2, I), jnp.int32))
    with pytest.raises(ValueError, match="hidden_size a positive int, got 0"):
        lstm_jax.LSTMCell(0)


def test_cell_checks_its_variables_and_takes_torch_tensors() -> None:
    """As the LSTM modules: variables of another configuration or without their
    wrapper are named, not Flax scope errors; CPU torch tensors are read as numpy."""
    cell, tc = lstm_jax.LSTMCell(H), torch_cell()
    variables = lstm_jax.params_from_torch(tc.state_dict())
    no_bias = lstm_jax.params_from_torch(torch_cell(bias=False).state_dict())
    x = torch.randn(2, I)
    with pytest.raises(ValueError, match=r"missing key\(s\): bias_ih, bias_hh"):
        cell.apply(no_bias, x.numpy())
    with pytest.raises(ValueError, match=r"size mismatch for weight_ih: expected \(24, 3\), got"):
        lstm_jax.LSTMCell(H + 1).apply(variables, x.numpy())
    with pytest.raises(ValueError, match=r"LSTMCell.apply: expected variables of the form"):
        cell.apply(variables["params"], x.numpy())
    state = (torch.randn(2, H), torch.randn(2, H))
    h, c = cell.apply(variables, x, state)
    with torch.no_grad():
        th, tcc = tc(x, state)
    assert scaled_error(h, th.numpy()) <= FORWARD[np.dtype(np.float32)]
    assert scaled_error(c, tcc.numpy()) <= FORWARD[np.dtype(np.float32)]


# --- a decoder loop over nn.LSTMCell, ported ------------------------------------------------

V, E, S = 9, 4, 6  # vocabulary, embedding, encoder length


class TorchAttnDecoder(torch.nn.Module):
    """Luong-style: embed the previous token, one LSTMCell step with the last context
    concatenated, dot-product attention over the encoder outputs, predict."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(V, E)
        self.cell = torch.nn.LSTMCell(E + H, H)
        self.attn = torch.nn.Linear(H, H, bias=False)
        self.out = torch.nn.Linear(2 * H, V)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        # tokens (T, B) teacher-forced inputs; memory (S, B, H) encoder outputs
        batch = tokens.shape[1]
        h = c = torch.zeros(batch, H, dtype=memory.dtype)
        context = torch.zeros(batch, H, dtype=memory.dtype)
        logits = []
        for t in range(tokens.shape[0]):
            x = torch.cat([self.embedding(tokens[t]), context], dim=-1)
            h, c = self.cell(x, (h, c))
            scores = torch.einsum("sbh,bh->sb", memory, self.attn(h))
            weights = torch.softmax(scores, dim=0)
            context = torch.einsum("sb,sbh->bh", weights, memory)
            logits.append(self.out(torch.cat([h, context], dim=-1)))
        return torch.stack(logits)


class FlaxAttnDecoder(fnn.Module):
    def setup(self) -> None:
        self.embedding = fnn.Embed(V, E)
        self.cell = lstm_jax.LSTMCell(H)
        self.attn = fnn.Dense(H, use_bias=False)
        self.out = fnn.Dense(V)

    def __call__(self, tokens: jax.Array, memory: jax.Array) -> jax.Array:
        batch = tokens.shape[1]
        state = None
        context = jnp.zeros((batch, H), memory.dtype)
        logits = []
        for t in range(tokens.shape[0]):
            x = jnp.concatenate([self.embedding(tokens[t]), context], axis=-1)
            state = self.cell(x, state)
            scores = jnp.einsum("sbh,bh->sb", memory, self.attn(state.h))
            weights = jax.nn.softmax(scores, axis=0)
            context = jnp.einsum("sb,sbh->bh", weights, memory)
            logits.append(self.out(jnp.concatenate([state.h, context], axis=-1)))
        return jnp.stack(logits)


def test_attention_decoder_loop_ports_from_nn_lstmcell() -> None:
    torch.manual_seed(3)
    tm = TorchAttnDecoder().eval()
    jm = FlaxAttnDecoder()
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, V, (5, 2))
    memory = rng.standard_normal((S, 2, H)).astype(np.float32)
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(tokens, memory))
    assert sorted(variables["params"]["cell"]) == ["bias_hh", "bias_ih", "weight_hh", "weight_ih"]
    with torch.no_grad():
        want = tm(torch.from_numpy(tokens), torch.from_numpy(memory)).numpy()
    assert scaled_error(jm.apply(variables, tokens, memory), want) <= FORWARD[np.dtype(np.float32)]
    report = lstm_jax.compare_with_torch(tm, jm, variables, tokens, memory)
    assert report.ok, str(report)
    assert {"grad args[1]", "grad cell.weight_hh", "grad attn.weight"} <= {
        d.name for d in report.differences
    }
    back = lstm_jax.params_to_torch(variables, model=jm)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)

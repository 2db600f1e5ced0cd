"""``lstm_jax.nnx.GRU`` / ``RNN`` / ``GRUCell`` / ``RNNCell`` against torch (issue 21):
torch's constructors, ``load_state_dict`` / ``state_dict`` bitwise, forward and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax
from lstm_jax.common.tolerances import FORWARD, GRADIENT, assert_close

F32 = np.dtype(np.float32)


def pair(name: str) -> tuple[torch.nn.Module, nnx.Module]:
    torch.manual_seed(0)
    rngs = nnx.Rngs(0)
    if name == "GRU":
        return torch.nn.GRU(3, 5, 2, batch_first=True, bidirectional=True), lstm_jax.nnx.GRU(
            3, 5, 2, batch_first=True, bidirectional=True, rngs=rngs
        )
    if name == "RNN":
        return torch.nn.RNN(3, 5, 2, "relu", bias=False), lstm_jax.nnx.RNN(
            3, 5, 2, "relu", bias=False, rngs=rngs
        )
    if name == "GRUCell":
        return torch.nn.GRUCell(3, 5), lstm_jax.nnx.GRUCell(3, 5, rngs=rngs)
    return torch.nn.RNNCell(3, 5, nonlinearity="tanh"), lstm_jax.nnx.RNNCell(3, 5, rngs=rngs)


@pytest.mark.parametrize("name", ["GRU", "RNN", "GRUCell", "RNNCell"])
def test_nnx_module_matches_torch(name: str) -> None:
    tm, jm = pair(name)
    assert {k: v.shape for k, v in jm.state_dict().items()} == {
        k: tuple(v.shape) for k, v in tm.state_dict().items()
    }
    assert jm.load_state_dict(tm.state_dict()) == ([], [])
    for key, value in jm.state_dict().items():
        np.testing.assert_array_equal(value, tm.state_dict()[key].numpy())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3) if "Cell" in name else (2, 6, 3)).astype(np.float32)
    if hasattr(jm, "eval"):
        jm.eval()
    xt = torch.tensor(x, requires_grad=True)
    out = tm(xt)
    reference = out if "Cell" in name else out[0]
    reference.square().sum().backward()

    def loss(model: nnx.Module, x: jax.Array) -> jax.Array:
        result = model(x)
        return jnp.sum((result if "Cell" in name else result[0]) ** 2)

    d_model, d_x = nnx.grad(loss, argnums=(0, 1))(jm, jnp.asarray(x))
    result = jm(x)
    assert_close(
        result if "Cell" in name else result[0], reference.detach().numpy(), FORWARD[F32], name
    )
    assert_close(d_x, xt.grad.numpy(), GRADIENT[F32], "d_x")
    grads = nnx.state(d_model, nnx.Param)
    for key, p in tm.named_parameters():
        assert_close(np.asarray(grads[key].get_value()), p.grad.numpy(), GRADIENT[F32], key)


def test_nnx_gru_dropout_and_errors() -> None:
    model = lstm_jax.nnx.GRU(3, 4, 2, dropout=0.5, rngs=nnx.Rngs(0))
    x = np.ones((5, 2, 3), np.float32)
    train_a, train_b = model(x)[0], model(x)[0]  # training mode: fresh masks each call
    assert not np.allclose(train_a, train_b)
    model.eval()
    np.testing.assert_array_equal(model(x)[0], model(x)[0])
    with pytest.raises(ValueError, match="RNN: expected nonlinearity"):
        lstm_jax.nnx.RNN(3, 4, nonlinearity="gelu", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="GRU: impl='cudnn' supports only LSTM"):
        lstm_jax.nnx.GRU(3, 4, impl="cudnn", rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"size mismatch for weight_ih_l0: expected \(12, 3\), got \(16, 3\)"
    ):
        lstm_jax.nnx.GRU(3, 4, rngs=nnx.Rngs(0)).load_state_dict(torch.nn.LSTM(3, 4).state_dict())


@pytest.mark.parametrize(
    ("linen_model", "x"),
    [
        (lstm_jax.GRU(4, 2, bidirectional=True), np.ones((5, 2, 3), np.float32)),
        (lstm_jax.RNN(4, nonlinearity="relu", batch_first=True), np.ones((2, 5, 3), np.float32)),
        (lstm_jax.RNNCell(4, nonlinearity="relu"), np.ones((2, 3), np.float32)),
    ],
    ids=["GRU", "RNN", "RNNCell"],
)
def test_from_linen_and_to_linen_build_the_twins(linen_model: object, x: np.ndarray) -> None:
    variables = linen_model.init(jax.random.key(0), x)  # type: ignore[attr-defined]
    twin = lstm_jax.nnx.from_linen(linen_model, variables)
    if hasattr(twin, "eval"):
        twin.eval()
    back_model, back = lstm_jax.nnx.to_linen(twin)
    assert type(back_model) is type(linen_model)
    assert jax.tree.all(jax.tree.map(np.array_equal, back, variables))  # bitwise
    expected = linen_model.apply(variables, x)  # type: ignore[attr-defined]
    for got in (twin(x), back_model.apply(back, x)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(a, b)

"""An initial state is a pair as torch takes one: a tuple or a list of two arrays.

``torch.nn.LSTM(x, [h_0, c_0])`` and ``nn.LSTMCell(x, [h, c])`` accept a list; every
entry point of both backends takes it too and gives torch's result. Anything else
that is not a pair is named in the error (its type, and its length for a sequence).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import lstm_jax
import lstm_torch
from lstm_jax.common.tolerances import FORWARD, assert_close

T, B, I, H, LAYERS = 4, 2, 3, 5, 2
TOL = FORWARD[np.dtype(np.float32)]


def inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h, c = rng.standard_normal((2, LAYERS, B, H)).astype(np.float32)
    return x, h, c


def test_linen_lstm_takes_a_list_state_as_torch_does() -> None:
    x, h, c = inputs()
    reference = torch.nn.LSTM(I, H, LAYERS)
    with torch.no_grad():
        want, (want_h, want_c) = reference(torch.tensor(x), [torch.tensor(h), torch.tensor(c)])
    model = lstm_jax.LSTM(H, num_layers=LAYERS)
    variables = lstm_jax.params_from_torch(reference.state_dict())
    for call in (model.apply, jax.jit(model.apply)):
        out, (h_n, c_n) = call(variables, x, [h, c])
        for got, expected in ((out, want), (h_n, want_h), (c_n, want_c)):
            assert_close(np.asarray(got), expected.numpy(), TOL)


def test_linen_cell_takes_a_list_state_as_torch_does() -> None:
    x, h, c = inputs()
    reference = torch.nn.LSTMCell(I, H)
    with torch.no_grad():
        want_h, want_c = reference(torch.tensor(x[0]), [torch.tensor(h[0]), torch.tensor(c[0])])
    cell = lstm_jax.LSTMCell(H)
    variables = {"params": {k: v.numpy() for k, v in reference.state_dict().items()}}
    got_h, got_c = cell.apply(variables, x[0], [h[0], c[0]])
    assert_close(np.asarray(got_h), want_h.numpy(), TOL)
    assert_close(np.asarray(got_c), want_c.numpy(), TOL)


def test_modelers_take_a_list_hidden_cell() -> None:
    x, h, c = inputs()
    torch_model = lstm_torch.LSTMModeler(I, H, 1, num_layers=LAYERS)
    torch_model.hidden_cell = (torch.tensor(h), torch.tensor(c))
    with torch.no_grad():
        want = torch_model(torch.tensor(x)).numpy()
    torch_model.hidden_cell = [torch.tensor(h), torch.tensor(c)]
    with torch.no_grad():
        np.testing.assert_array_equal(torch_model(torch.tensor(x)).numpy(), want)
    model = lstm_jax.LSTMModeler(I, H, 1, num_layers=LAYERS)
    variables = lstm_jax.params_from_torch(torch_model.state_dict())
    got, _ = model.apply(variables, x, [h, c])
    assert_close(np.asarray(got), want, TOL)


@pytest.mark.parametrize(
    "state, named",
    [
        (lambda h, c: [h], "a list of 1"),
        (lambda h, c: (h, c, c), "a tuple of 3"),
        (lambda h, c: h, "a ndarray"),
    ],
)
def test_a_state_that_is_not_a_pair_is_named(state, named: str) -> None:
    x, h, c = inputs()
    model = lstm_jax.LSTM(H, num_layers=LAYERS)
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(
        TypeError, match=rf"expected initial_state as a pair \(h_0, c_0\), got {named}"
    ):
        model.apply(variables, x, state(h, c))
    cell = lstm_jax.LSTMCell(H)
    cell_variables = cell.init(jax.random.key(0), x[0])
    with pytest.raises(TypeError, match=rf"expected state as a pair \(h, c\), got {named}"):
        cell.apply(cell_variables, x[0], state(h[0], c[0]))

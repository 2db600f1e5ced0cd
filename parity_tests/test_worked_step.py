"""The lecture's worked LSTM step, by hand and in both backends.

Input x = 32, h0 = 0, c0 = 2, no biases, hidden size 1; each gate's weights
[w_h, w_x]: forget [2, 1.5], input [-0.5, 0.3], candidate [1.3, -1], output [0.4, 1.2].
The lecture prints its sigmoid as 1/(1 - e^-x); the right one is 1/(1 + e^-x), and
with it c1 is about 1.0 and h1 about tanh(1) = 0.7616.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import helpers
import numpy as np
import pytest
import torch

import lstm_jax
from lstm_jax import core
from lstm_jax.common.tolerances import FORWARD, scaled_error

X, H0, C0 = 32.0, 0.0, 2.0
# gate: (w_h, w_x), listed in torch's gate order i, f, g, o
GATES = {"i": (-0.5, 0.3), "f": (2.0, 1.5), "g": (1.3, -1.0), "o": (0.4, 1.2)}


def logistic(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def hand_step(sigmoid: Callable[[float], float] = logistic) -> tuple[float, float]:
    """(c1, h1) in plain Python floats."""
    z = {gate: w_h * H0 + w_x * X for gate, (w_h, w_x) in GATES.items()}
    c1 = sigmoid(z["f"]) * C0 + sigmoid(z["i"]) * math.tanh(z["g"])
    return c1, sigmoid(z["o"]) * math.tanh(c1)


def lecture_state_dict(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """nn.LSTM(1, 1, bias=False)'s weights, built by hand in the gate order i, f, g, o."""
    w_hh = [[w_h] for w_h, _ in GATES.values()]
    w_ih = [[w_x] for _, w_x in GATES.values()]
    return {
        "weight_ih_l0": torch.tensor(w_ih, dtype=dtype),
        "weight_hh_l0": torch.tensor(w_hh, dtype=dtype),
    }


def test_hand_computation_is_the_lectures_result() -> None:
    c1, h1 = hand_step()
    assert abs(c1 - 1.0) < 1e-3
    assert abs(h1 - math.tanh(1.0)) < 1e-3
    assert abs(h1 - 0.7616) < 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_backends_take_the_lectures_step(dtype: str) -> None:
    np_dtype = np.dtype(dtype)
    torch_dtype = helpers.TORCH_DTYPES[np_dtype]
    reference = np.array(hand_step())
    state_dict = lecture_state_dict(torch_dtype)
    x = np.array([[X]], np_dtype)  # one unbatched step: (T=1, I=1)
    h0, c0 = np.array([[H0]], np_dtype), np.array([[C0]], np_dtype)  # (D*L=1, H=1)

    torch_lstm = torch.nn.LSTM(1, 1, bias=False).to(torch_dtype)
    torch_lstm.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        out, (h1, c1) = torch_lstm(
            torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0))
        )
    torch_result = np.array([c1.item(), h1.item()])
    assert out.item() == h1.item()

    cell = torch.nn.LSTMCell(1, 1, bias=False).to(torch_dtype)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in state_dict.items()})
    with torch.no_grad():
        h1, c1 = cell(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    cell_result = np.array([c1.item(), h1.item()])

    with helpers.x64_if(dtype):
        variables = lstm_jax.params_from_torch(state_dict)
        out, state = lstm_jax.LSTM(1, bias=False).apply(variables, x, (h0, c0))
        jax_result = np.array([float(state.c[0, 0]), float(state.h[0, 0])])
        assert float(out[0, 0]) == float(state.h[0, 0])
        p = core.cell_params(variables["params"], 0, 0)
        step, _ = core.lstm_cell(core.step_weights(p), core.LSTMState(h0, c0), x)
        core_result = np.array([float(step.c[0, 0]), float(step.h[0, 0])])

    for name, result in [
        ("torch.nn.LSTM", torch_result),
        ("torch.nn.LSTMCell", cell_result),
        ("lstm_jax.LSTM", jax_result),
        ("lstm_jax.core.lstm_cell", core_result),
    ]:
        err = scaled_error(result, reference)
        assert err <= FORWARD[np_dtype], f"{name}: (c1, h1) = {result}, hand {reference}"
        assert abs(result[0] - 1.0) < 1e-3 and abs(result[1] - math.tanh(1.0)) < 1e-3


def test_the_lectures_printed_sigmoid_would_be_caught() -> None:
    """1/(1 - e^-x) moves c1 by about 1e-4: far outside the float64 tolerance, so the
    backends' agreement with the hand step pins the right sigmoid."""
    wrong = np.array(hand_step(lambda z: 1.0 / (1.0 - math.exp(-z))))
    with helpers.x64_if("float64"):
        variables = lstm_jax.params_from_torch(lecture_state_dict(torch.float64))
        x = np.array([[X]])
        _, state = lstm_jax.LSTM(1, bias=False).apply(
            variables, x, (np.array([[H0]]), np.array([[C0]]))
        )
        result = np.array([float(state.c[0, 0]), float(state.h[0, 0])])
    assert scaled_error(result, wrong) > 100 * FORWARD[np.dtype(np.float64)]

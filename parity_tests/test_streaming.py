"""``lstm_jax.streaming_step``: one time step per call, the state carried by the caller,
against torch run over the whole sequence and torch called one step at a time."""

from __future__ import annotations

import helpers
import jax
import numpy as np
import pytest
import torch

import lstm_jax
import lstm_torch
from lstm_jax.common.tolerances import FORWARD


@pytest.mark.parametrize(
    "case",
    [
        helpers.Case(num_layers=2, proj_size=2, state="given"),
        helpers.Case(num_layers=3, bias=False, hidden_size=4, dtype="float64"),
        helpers.Case(num_layers=1, batch_size=1),
    ],
    ids=lambda c: c.id,
)
def test_steps_match_torch_over_the_sequence_and_step_by_step(case: helpers.Case) -> None:
    module = helpers.make_torch_lstm(case)
    inputs = helpers.random_inputs(case)
    x = inputs["x"]
    state = (inputs["h_0"], inputs["c_0"]) if "h_0" in inputs else None
    with torch.no_grad():
        t_state = None if state is None else tuple(torch.from_numpy(a) for a in state)
        whole, (h_n, c_n) = module(torch.from_numpy(x), t_state)
        stepped = []
        for t in range(case.seq_len):
            y, t_state = module(torch.from_numpy(x[t : t + 1]), t_state)
            stepped.append(y[0].numpy())
    tol = FORWARD[case.np_dtype]
    with helpers.x64_if(case.dtype):
        step = lstm_jax.streaming_step(
            helpers.make_jax_lstm(case), lstm_jax.params_from_torch(module.state_dict())
        )
        outputs, carried = [], state
        for t in range(case.seq_len):
            y, carried = step(x[t], carried)
            outputs.append(np.asarray(y))
        final = {"h_n": np.asarray(carried.h), "c_n": np.asarray(carried.c)}
    helpers.assert_all_close(
        {"output": np.stack(outputs), **final},
        {"output": whole.numpy(), "h_n": h_n.numpy(), "c_n": c_n.numpy()},
        tol,
        case.id,
    )
    helpers.assert_all_close({"y": np.stack(outputs)}, {"y": np.stack(stepped)}, tol, case.id)


def test_modeler_step_gives_the_lecture_prediction() -> None:
    """The modeler's step returns the head's prediction of each step; after the whole
    sequence it is ``LSTMModeler.forward``'s (the last step's) prediction."""
    torch.manual_seed(0)
    tm = lstm_torch.LSTMModeler(3, 6, 2, num_layers=2)
    x = np.random.default_rng(0).standard_normal((5, 4, 3)).astype(np.float32)
    with torch.no_grad():
        tm.hidden_cell = tm.zero_hidden_cell(4)
        expected = tm(torch.from_numpy(x)).numpy()
    jm = lstm_jax.LSTMModeler(3, 6, 2, num_layers=2)
    step = lstm_jax.streaming_step(jm, lstm_jax.params_from_torch(tm.state_dict()))
    state = step.zero_state(4)
    for t in range(5):
        y, state = step(x[t], state)
    helpers.assert_all_close({"y": np.asarray(y)}, {"y": expected}, FORWARD[np.dtype("float32")])
    assert state.h.shape == state.c.shape == (2, 4, 6)


def test_bad_calls_say_what_was_expected() -> None:
    model = lstm_jax.LSTM(5, num_layers=2)
    variables = model.init(jax.random.key(0), np.zeros((2, 3, 4), np.float32))
    step = lstm_jax.streaming_step(model, variables)
    with pytest.raises(ValueError, match=r"expected x_t of shape \(B, 4\), got \(3, 7\)"):
        step(np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match="expected a state"):
        step(np.zeros((3, 4), np.float32), step.zero_state(2))
    with pytest.raises(ValueError, match="expected a unidirectional LSTM"):
        lstm_jax.streaming_step(lstm_jax.LSTM(5, bidirectional=True), variables)
    with pytest.raises(ValueError, match=r"expected variables as \{'params'"):
        lstm_jax.streaming_step(model, variables["params"])
    with pytest.raises(ValueError, match="weight_hh_l0"):
        lstm_jax.streaming_step(lstm_jax.LSTM(6, num_layers=2), variables)
    with pytest.raises(TypeError, match=r"expected an lstm_jax\.LSTM or LSTMModeler"):
        lstm_jax.streaming_step(object(), variables)  # type: ignore[arg-type]


def test_cpu_torch_tensors_are_read_as_numpy() -> None:
    """As ``LSTM.apply``: the input and a stored ``hidden_cell`` may be CPU torch tensors."""
    torch.manual_seed(0)
    tm = lstm_torch.LSTMModeler(3, 6, 2)
    x = torch.randn(4, 1, 3)
    with torch.no_grad():
        tm.hidden_cell = tm.zero_hidden_cell(1)
        expected = tm(x).numpy()
    step = lstm_jax.streaming_step(
        lstm_jax.LSTMModeler(3, 6, 2), lstm_jax.params_from_torch(tm.state_dict())
    )
    state = tm.zero_hidden_cell(1)
    for t in range(4):
        y, state = step(x[t], state)
    helpers.assert_all_close({"y": np.asarray(y)}, {"y": expected}, FORWARD[np.dtype("float32")])


def test_a_state_of_the_callers_own_is_not_consumed() -> None:
    """A full-sequence apply's (h_n, c_n) continues the stream as torch's whole run, and
    stays the caller's (it was donated and deleted); one zeros array as both h and c
    (XLA refused to donate a buffer twice) steps too."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4, num_layers=2, proj_size=2)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    model = lstm_jax.LSTM(4, num_layers=2, proj_size=2)
    variables = lstm_jax.params_from_torch(module.state_dict())
    _, (h_2, c_2) = model.apply(variables, x[:2])
    step = lstm_jax.streaming_step(model, variables)
    state, outputs = (h_2, c_2), []
    for t in range(2, 5):
        y, state = step(x[t], state)
        outputs.append(np.asarray(y))
    helpers.assert_all_close(
        {"y": np.stack(outputs)}, {"y": expected[2:]}, FORWARD[np.dtype("float32")]
    )
    assert np.isfinite(np.asarray(h_2)).all() and np.isfinite(np.asarray(c_2)).all()
    zeros = jax.numpy.zeros((1, 2, 5), np.float32)
    cell_step = lstm_jax.streaming_step(
        lstm_jax.LSTM(5), lstm_jax.LSTM(5).init(jax.random.key(0), x)
    )
    y, _ = cell_step(x[0], (zeros, zeros))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(cell_step(x[0])[0]))
    assert not zeros.is_deleted()


def test_more_bad_calls_say_what_was_expected() -> None:
    model = lstm_jax.LSTM(5)
    step = lstm_jax.streaming_step(
        model, model.init(jax.random.key(0), np.zeros((1, 2, 4), np.float32))
    )
    with pytest.raises(TypeError, match="expected a floating point input, got dtype int32"):
        step(np.ones((2, 4), np.int32))
    with pytest.raises(TypeError, match=r"expected state as a pair \(h, c\), got a tuple of 3"):
        step(np.ones((2, 4), np.float32), (np.zeros((1, 2, 5)),) * 3)
    with pytest.raises(ValueError, match=r"zero_state: expected batch_size >= 0, got -1"):
        step.zero_state(-1)
    _, first = step(np.ones((2, 4), np.float32))
    step(np.ones((2, 4), np.float32), first)  # first is donated
    with pytest.raises(ValueError, match="donated to an earlier call"):
        step(np.ones((2, 4), np.float32), first)
    with pytest.raises(TypeError, match=r"got torch\.nn\.modules\.rnn\.LSTM"):
        lstm_jax.streaming_step(torch.nn.LSTM(4, 5), {"params": {}})  # type: ignore[arg-type]


def test_the_step_traces_inside_a_scan_as_torch_over_the_sequence() -> None:
    """A user's own ``lax.scan`` / ``jax.jit`` around the step (its state checks must
    not read a tracer's value)."""
    torch.manual_seed(1)
    module = torch.nn.LSTM(3, 4, num_layers=2)
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    step = lstm_jax.streaming_step(
        lstm_jax.LSTM(4, num_layers=2), lstm_jax.params_from_torch(module.state_dict())
    )

    def body(state, x_t):
        y, state = step(x_t, state)
        return state, y

    _, outputs = jax.jit(lambda s, xs: jax.lax.scan(body, s, xs))(step.zero_state(2), x)
    helpers.assert_all_close(
        {"y": np.asarray(outputs)}, {"y": expected}, FORWARD[np.dtype("float32")]
    )

"""Forward and gradient parity of the Flax NNX modules with torch.

``lstm_jax.nnx.LSTM`` against ``torch.nn.LSTM`` and ``lstm_jax.nnx.LSTMModeler`` against
``lstm_torch.LSTMModeler`` over the same pairwise grids as the linen modules
(``helpers.LSTM_GRID`` / ``MODELER_GRID``, float32 and float64), the weights copied
with ``load_state_dict``; gradients with ``nnx.value_and_grad`` under ``nnx.jit``.
Also ``nnx.LSTMCell`` against ``torch.nn.LSTMCell``, the speed knobs, dropout in
training and eval mode, and torch's initial distributions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax.nnx
from lstm_jax.common.config import modeler_param_shapes
from lstm_jax.common.tolerances import FORWARD, GRADIENT

Arrays = dict[str, np.ndarray]


def _initial_state(inputs: dict) -> tuple | None:
    return (inputs["h_0"], inputs["c_0"]) if "h_0" in inputs else None


def torch_side(
    module: torch.nn.Module,
    inputs: Arrays,
    forward: Callable[[torch.nn.Module, dict], dict],
) -> tuple[Arrays, Arrays, Arrays]:
    """torch's outputs, the random cotangents and torch's gradients of their projection."""
    t_in = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    t_out = forward(module, t_in)
    outputs = {k: v.detach().cpu().numpy() for k, v in t_out.items()}
    cotangents = helpers.random_cotangents(outputs)
    return outputs, cotangents, helpers.torch_loss_grads(module, t_out, t_in, cotangents)


def nnx_side(
    model: nnx.Module,
    inputs: Arrays,
    cotangents: Arrays,
    forward: Callable[[nnx.Module, dict], dict],
) -> tuple[Arrays, Arrays]:
    """The NNX model's outputs and the gradients (``nnx.value_and_grad`` under
    ``nnx.jit``) of the same projection: parameters under their state path joined
    by "." (torch's keys for these modules), inputs under their own names."""

    def loss(model: nnx.Module, inputs: dict) -> tuple[jax.Array, dict]:
        outputs = forward(model, inputs)
        return sum(jnp.vdot(outputs[k], cotangents[k]) for k in outputs), outputs

    grad_fn = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, outputs), (g_model, g_inputs) = grad_fn(
        model, {k: jnp.asarray(v) for k, v in inputs.items()}
    )
    grads = {
        ".".join(map(str, path)): np.asarray(v.get_value())
        for path, v in nnx.to_flat_state(g_model)
    }
    grads.update({k: np.asarray(v) for k, v in g_inputs.items()})
    return {k: np.asarray(v) for k, v in outputs.items()}, grads


def nnx_parity_run(
    case: helpers.Case,
    module: torch.nn.Module,
    inputs: Arrays,
    torch_forward: Callable[[torch.nn.Module, dict], dict],
    nnx_forward: Callable[[nnx.Module, dict], dict],
    make_model: Callable[[], nnx.Module],
) -> helpers.ParityRun:
    """Both sides of one case: torch's run, then the NNX model (built in the case's
    dtype mode) holding torch's weights through ``load_state_dict``."""
    with helpers.pinned_precision():
        t_out, cotangents, t_grads = torch_side(module, inputs, torch_forward)
        with helpers.x64_if(case.dtype):
            model = make_model()
            model.load_state_dict(module.state_dict())
            j_out, j_grads = nnx_side(model, inputs, cotangents, nnx_forward)
    return helpers.ParityRun(t_out, j_out, t_grads, j_grads)


@functools.cache
def nnx_lstm_run(case: helpers.Case) -> helpers.ParityRun:
    def torch_forward(module: torch.nn.Module, t: dict) -> dict:
        out, (h_n, c_n) = module(t["x"], _initial_state(t))
        return {"output": out, "h_n": h_n, "c_n": c_n}

    def nnx_forward(model: lstm_jax.nnx.LSTM, a: dict) -> dict:
        out, final = model(a["x"], _initial_state(a))
        return {"output": out, "h_n": final.h, "c_n": final.c}

    def make_model() -> lstm_jax.nnx.LSTM:
        return lstm_jax.nnx.LSTM(
            case.input_size,
            case.hidden_size,
            **case.options,
            param_dtype=case.np_dtype,
            rngs=nnx.Rngs(1),
        )

    module, inputs = helpers.make_torch_lstm(case), helpers.random_inputs(case)
    return nnx_parity_run(case, module, inputs, torch_forward, nnx_forward, make_model)


@functools.cache
def nnx_modeler_run(case: helpers.Case) -> helpers.ParityRun:
    """The lecture's model: the state goes in and comes out through ``hidden_cell``."""

    def torch_forward(module: torch.nn.Module, t: dict) -> dict:
        if "h_0" in t:
            module.hidden_cell = _initial_state(t)
        y = module(t["x"])
        h, c = module.hidden_cell
        return {"y": y, "h": h, "c": c}

    def nnx_forward(model: lstm_jax.nnx.LSTMModeler, a: dict) -> dict:
        if "h_0" in a:
            model.hidden_cell = _initial_state(a)
        y = model(a["x"])
        h, c = model.hidden_cell
        return {"y": y, "h": h, "c": c}

    def make_model() -> lstm_jax.nnx.LSTMModeler:
        return lstm_jax.nnx.LSTMModeler(
            case.input_size,
            case.hidden_size,
            case.output_size,
            **case.options,
            param_dtype=case.np_dtype,
            rngs=nnx.Rngs(1),
        )

    module, inputs = helpers.make_torch_modeler(case), helpers.random_inputs(case, modeler=True)
    return nnx_parity_run(case, module, inputs, torch_forward, nnx_forward, make_model)


def _expected_grad_names(params: dict, case: helpers.Case) -> set[str]:
    return set(params) | ({"x", "h_0", "c_0"} if case.state != "zero" else {"x"})


@pytest.mark.parametrize("case", helpers.LSTM_GRID, ids=helpers.ids(helpers.LSTM_GRID))
def test_nnx_lstm_matches_torch(case: helpers.Case) -> None:
    run = nnx_lstm_run(case)
    helpers.assert_all_close(run.jax_outputs, run.torch_outputs, FORWARD[case.np_dtype], case.id)


@pytest.mark.parametrize("case", helpers.LSTM_GRID, ids=helpers.ids(helpers.LSTM_GRID))
def test_nnx_lstm_gradients_match_torch(case: helpers.Case) -> None:
    run = nnx_lstm_run(case)
    assert set(run.torch_grads) == _expected_grad_names(case.config.param_shapes(), case)
    helpers.assert_all_close(run.jax_grads, run.torch_grads, GRADIENT[case.np_dtype], case.id)


@pytest.mark.parametrize("case", helpers.MODELER_GRID, ids=helpers.ids(helpers.MODELER_GRID))
def test_nnx_modeler_matches_torch(case: helpers.Case) -> None:
    run = nnx_modeler_run(case)
    helpers.assert_all_close(run.jax_outputs, run.torch_outputs, FORWARD[case.np_dtype], case.id)


@pytest.mark.parametrize("case", helpers.MODELER_GRID, ids=helpers.ids(helpers.MODELER_GRID))
def test_nnx_modeler_gradients_match_torch(case: helpers.Case) -> None:
    run = nnx_modeler_run(case)
    names = modeler_param_shapes(case.config, case.output_size)
    assert set(run.torch_grads) == _expected_grad_names(names, case)
    helpers.assert_all_close(run.jax_grads, run.torch_grads, GRADIENT[case.np_dtype], case.id)


# --- LSTMCell -----------------------------------------------------------------------------

CELL_CASES = [
    # (batched, bias, state given, dtype)
    (True, True, True, "float32"),
    (True, False, False, "float32"),
    (False, True, False, "float64"),
    (False, False, True, "float64"),
]


@pytest.mark.parametrize(("batched", "bias", "given", "dtype"), CELL_CASES)
def test_nnx_cell_matches_torch_lstm_cell(
    batched: bool, bias: bool, given: bool, dtype: str
) -> None:
    I, H, B = 3, 4, 2
    np_dtype = np.dtype(dtype)
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(I, H, bias=bias).to(helpers.TORCH_DTYPES[np_dtype])
    rng = np.random.default_rng(0)
    lead = (B,) if batched else ()
    inputs = {"x": rng.standard_normal((*lead, I)).astype(np_dtype)}
    if given:
        inputs["h_0"] = rng.standard_normal((*lead, H)).astype(np_dtype)
        inputs["c_0"] = rng.standard_normal((*lead, H)).astype(np_dtype)

    def torch_forward(module: torch.nn.Module, t: dict) -> dict:
        h, c = module(t["x"], _initial_state(t))
        return {"h": h, "c": c}

    def nnx_forward(model: lstm_jax.nnx.LSTMCell, a: dict) -> dict:
        h, c = model(a["x"], _initial_state(a))
        return {"h": h, "c": c}

    t_out, cotangents, t_grads = torch_side(cell, inputs, torch_forward)
    with helpers.x64_if(dtype):
        model = lstm_jax.nnx.LSTMCell(I, H, bias=bias, param_dtype=np_dtype, rngs=nnx.Rngs(0))
        model.load_state_dict(cell.state_dict())
        j_out, j_grads = nnx_side(model, inputs, cotangents, nnx_forward)
    helpers.assert_all_close(j_out, t_out, FORWARD[np_dtype], "LSTMCell forward")
    helpers.assert_all_close(j_grads, t_grads, GRADIENT[np_dtype], "LSTMCell gradients")


def test_nnx_cell_bad_input_says_what_was_expected() -> None:
    cell = lstm_jax.nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"LSTMCell: expected input of size 3 .*\(2, 5\)"):
        cell(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"LSTMCell: expected input to be 1-D .* got 3-D"):
        cell(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected h of shape \(2, 4\) .*got \(3, 4\)"):
        cell(np.zeros((2, 3), np.float32), (np.zeros((3, 4)), np.zeros((3, 4))))
    with pytest.raises(TypeError, match="floating point input"):
        cell(np.zeros((2, 3), np.int32))


# --- speed knobs, dropout, init ---------------------------------------------------------


@pytest.mark.parametrize(
    "knobs", [{"impl": "scan"}, {"impl": "custom_vjp", "remat": 2}, {"unroll": 3}]
)
def test_nnx_speed_knobs_keep_torch_results(knobs: dict) -> None:
    case = helpers.Case(num_layers=2, bidirectional=True, state="given")
    module = helpers.make_torch_lstm(case)
    inputs = helpers.random_inputs(case)
    out, (h, c) = module(
        torch.from_numpy(inputs["x"]),
        (torch.from_numpy(inputs["h_0"]), torch.from_numpy(inputs["c_0"])),
    )
    model = lstm_jax.nnx.LSTM(3, 5, 2, bidirectional=True, rngs=nnx.Rngs(0), **knobs)
    model.load_state_dict(module.state_dict())

    @nnx.jit
    def forward(model: lstm_jax.nnx.LSTM, x: jax.Array, h: jax.Array, c: jax.Array) -> tuple:
        return model(x, (h, c))

    j_out, (j_h, j_c) = forward(model, inputs["x"], inputs["h_0"], inputs["c_0"])
    helpers.assert_all_close(
        {"output": j_out, "h_n": j_h, "c_n": j_c},
        {"output": out.detach().numpy(), "h_n": h.detach().numpy(), "c_n": c.detach().numpy()},
        FORWARD[np.dtype(np.float32)],
        str(knobs),
    )


@pytest.mark.slow  # over 10 s on 2 cores (14 s of CPU measured)
def test_nnx_dropout_follows_train_and_eval_modes() -> None:
    """eval(): torch's eval result exactly; train(): masks from the module's ``dropout``
    stream (a new mask per call, the same sequence for the same seed); dropout 1.0 in
    training mode zeroes every layer's input but the first, on both sides alike."""
    case = helpers.Case(num_layers=3, dropout=0.5)
    module = helpers.make_torch_lstm(case)
    x = helpers.random_inputs(case)["x"]
    model = lstm_jax.nnx.LSTM(3, 5, 3, dropout=0.5, rngs=nnx.Rngs(0))
    model.load_state_dict(module.state_dict())
    assert model.deterministic is False  # a new module trains, as torch's
    module.eval()
    model.eval()
    reference = module(torch.from_numpy(x))[0].detach().numpy()
    assert model.deterministic is True
    evaluated = np.asarray(model(x)[0])
    helpers.assert_all_close({"o": evaluated}, {"o": reference}, FORWARD[np.dtype(np.float32)])

    model.train()
    first, second = np.asarray(model(x)[0]), np.asarray(model(x)[0])
    assert not np.allclose(first, reference) and not np.allclose(first, second)
    twin = lstm_jax.nnx.LSTM(3, 5, 3, dropout=0.5, rngs=nnx.Rngs(0))
    twin.load_state_dict(module.state_dict())
    assert np.array_equal(np.asarray(twin(x)[0]), first)  # same seed, same masks
    assert np.array_equal(np.asarray(model(x, deterministic=True)[0]), evaluated)

    @nnx.jit
    def jitted(model: lstm_jax.nnx.LSTM, x: jax.Array) -> jax.Array:
        return model(x)[0]

    assert not np.array_equal(np.asarray(jitted(model, x)), np.asarray(jitted(model, x)))

    all_dropped = helpers.Case(num_layers=3, dropout=1.0)
    torch_full = helpers.make_torch_lstm(all_dropped)  # training mode
    nnx_full = lstm_jax.nnx.LSTM(3, 5, 3, dropout=1.0, rngs=nnx.Rngs(0))
    nnx_full.load_state_dict(torch_full.state_dict())
    helpers.assert_all_close(
        {"o": nnx_full(x)[0]},
        {"o": torch_full(torch.from_numpy(x))[0].detach().numpy()},
        FORWARD[np.dtype(np.float32)],
        "dropout 1.0",
    )


def test_nnx_init_draws_from_torch_distributions() -> None:
    H, I, O = 16, 3, 4
    model = lstm_jax.nnx.LSTMModeler(I, H, O, num_layers=2, proj_size=8, rngs=nnx.Rngs(0))
    torch_model = helpers.make_torch_modeler(
        helpers.Case(input_size=I, hidden_size=H, output_size=O, num_layers=2, proj_size=8)
    )
    sd = model.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {
        k: tuple(v.shape) for k, v in torch_model.state_dict().items()
    }
    assert list(sd) == list(torch_model.state_dict())  # torch's order too
    for key, value in sd.items():
        bound = 1 / np.sqrt(8 if key.startswith("linear.") else H)  # the head's fan-in is P
        assert value.dtype == np.float32
        assert np.abs(value).max() <= bound, key
        if value.size >= 64:  # U(-b, b): spread over the whole interval, centred
            assert np.abs(value).max() > 0.9 * bound, key
            assert abs(value.mean()) < 0.2 * bound, key
    same = lstm_jax.nnx.LSTMModeler(I, H, O, num_layers=2, proj_size=8, rngs=nnx.Rngs(0))
    other = lstm_jax.nnx.LSTMModeler(I, H, O, num_layers=2, proj_size=8, rngs=nnx.Rngs(1))
    assert all(np.array_equal(v, same.state_dict()[k]) for k, v in sd.items())
    assert not np.array_equal(sd["lstm.weight_ih_l0"], other.state_dict()["lstm.weight_ih_l0"])
    assert len({v.tobytes() for v in sd.values()}) == len(sd)  # every tensor drawn apart


def test_nnx_constructor_checks_as_torch() -> None:
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        lstm_jax.nnx.LSTM(3, 4, proj_size=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        lstm_jax.nnx.LSTM(3, 4, dropout=1.5, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="hidden_size should be of type int"):
        lstm_jax.nnx.LSTM(3, 4.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="impl"):
        lstm_jax.nnx.LSTM(3, 4, impl="fast", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"rngs=nnx\.Rngs"):
        lstm_jax.nnx.LSTM(3, 4, rngs=0)
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        lstm_jax.nnx.LSTMModeler(3, 4, 0, rngs=nnx.Rngs(0))
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        lstm_jax.nnx.LSTM(3, 4, dropout=0.5, rngs=nnx.Rngs(0))
    with pytest.warns(UserWarning, match="dropout=0.5 and num_layers=1"):
        lstm_jax.nnx.LSTMModeler(3, 4, 1, dropout=0.5, rngs=nnx.Rngs(0))
    model = lstm_jax.nnx.LSTM(3, 4, rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"input.size\(-1\) must be equal to input_size. Expected 3, got 2"
    ):
        model(np.zeros((5, 1, 2), np.float32))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(1, 1, 4\)"):
        model(np.zeros((5, 1, 3), np.float32), (np.zeros((1, 2, 4)), np.zeros((1, 1, 4))))


def test_nnx_seq_lengths_match_torchs_packed_sequences() -> None:
    """``seq_lengths`` (traced under ``nnx.jit``) against torch's pack_padded_sequence ->
    LSTM -> pad_packed_sequence, for the LSTM and the modeler (prediction at each row's
    last valid step, the stored hidden_cell at each row's end)."""
    case = helpers.Case(num_layers=2, bidirectional=True, batch_first=True, state="given")
    inputs = helpers.random_inputs(case)
    x, h0, c0 = inputs["x"], inputs["h_0"], inputs["c_0"]
    lengths = np.array([6, 2, 5, 1])
    torch_lstm = helpers.make_torch_lstm(case)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    t_packed, (t_h, t_c) = torch_lstm(packed, (torch.from_numpy(h0), torch.from_numpy(c0)))
    t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_packed, batch_first=True, total_length=6)
    model = lstm_jax.nnx.LSTM(3, 5, 2, batch_first=True, bidirectional=True, rngs=nnx.Rngs(0))
    model.load_state_dict(torch_lstm.state_dict())

    @nnx.jit
    def run(
        model: lstm_jax.nnx.LSTM, x: jax.Array, h: jax.Array, c: jax.Array, n: jax.Array
    ) -> tuple:
        return model(x, (h, c), seq_lengths=n)

    out, (h, c) = run(model, x, h0, c0, lengths)
    tol = FORWARD[np.dtype(np.float32)]
    expected = {"output": t_out, "h_n": t_h, "c_n": t_c}
    helpers.assert_all_close(
        {"output": out, "h_n": h, "c_n": c},
        {k: v.detach().numpy() for k, v in expected.items()},
        tol,
        "LSTM seq_lengths",
    )

    tm = helpers.make_torch_modeler(case)
    tm.hidden_cell = (torch.from_numpy(h0), torch.from_numpy(c0))
    ty = tm(torch.from_numpy(x), seq_lengths=torch.from_numpy(lengths))
    mm = lstm_jax.nnx.LSTMModeler(
        3, 5, 2, 2, batch_first=True, bidirectional=True, rngs=nnx.Rngs(0)
    )
    mm.load_state_dict(tm.state_dict())
    mm.hidden_cell = (h0, c0)
    y = mm(x, seq_lengths=lengths)
    helpers.assert_all_close(
        {"y": y, "h": mm.hidden_cell.h, "c": mm.hidden_cell.c},
        {
            "y": ty.detach().numpy(),
            "h": tm.hidden_cell[0].detach().numpy(),
            "c": tm.hidden_cell[1].detach().numpy(),
        },
        tol,
        "modeler seq_lengths",
    )
    with pytest.raises(ValueError, match=r"every seq_length must be in \[1, T=6\]"):
        model(x, seq_lengths=np.array([7, 2, 5, 1]))


def test_nnx_modules_take_torch_tensors_as_torch_does() -> None:
    """Input, initial state and lengths as CPU torch tensors give what numpy arrays give."""
    case = helpers.Case(num_layers=2, state="given")
    a = helpers.random_inputs(case)
    t = {k: torch.from_numpy(v) for k, v in a.items()}
    lengths = np.array([6, 3, 1, 4])
    model = lstm_jax.nnx.LSTM(3, 5, 2, rngs=nnx.Rngs(0))
    out, (h, c) = model(t["x"], (t["h_0"], t["c_0"]), seq_lengths=torch.from_numpy(lengths))
    ref, (ref_h, ref_c) = model(a["x"], (a["h_0"], a["c_0"]), seq_lengths=lengths)
    assert all(np.array_equal(p, q) for p, q in ((out, ref), (h, ref_h), (c, ref_c)))
    modeler = lstm_jax.nnx.LSTMModeler(3, 5, 2, 2, rngs=nnx.Rngs(0))
    modeler.hidden_cell = (t["h_0"], t["c_0"])
    y = modeler(t["x"], seq_lengths=torch.from_numpy(lengths))
    modeler.hidden_cell = (a["h_0"], a["c_0"])
    assert np.array_equal(y, modeler(a["x"], seq_lengths=lengths))
    cell = lstm_jax.nnx.LSTMCell(3, 5, rngs=nnx.Rngs(0))
    step = cell(t["x"][0], (t["h_0"][0], t["c_0"][0]))
    assert np.array_equal(step.h, cell(a["x"][0], (a["h_0"][0], a["c_0"][0])).h)

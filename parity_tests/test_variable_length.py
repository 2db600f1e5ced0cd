"""Variable-length batches: ``seq_lengths`` against torch's packed sequences.

References, each independent of the JAX code:
- torch's packed path (``pack_padded_sequence(enforce_sorted=False)`` -> ``nn.LSTM`` ->
  ``pad_packed_sequence(total_length=T)``) for outputs, final states and gradients;
- each row run alone, unpadded, through ``nn.LSTM`` (no packing at all): a row's
  outputs, its final states and its reverse direction (which must start at the
  row's own last step) cannot depend on the other rows or on the padding.
"""

from __future__ import annotations

import re

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from packed_reference import PackedCase, assert_parity, check_case, one_torch_thread, run_both

import lstm_jax
import lstm_torch
from lstm_jax.common.tolerances import FORWARD, GRADIENT, assert_close

LENGTHS = (3, 6, 1, 4)  # unsorted, one full row, one of length 1


def _pc(L: int, bi: bool, P: int, bf: bool, state: str, **kw: object) -> PackedCase:
    lengths = kw.pop("lengths", LENGTHS)
    impl, remat = kw.pop("impl", "auto"), kw.pop("remat", 0)
    case = helpers.Case(
        num_layers=L, bidirectional=bi, proj_size=P, batch_first=bf, state=state, **kw
    )
    return PackedCase(case, lengths=lengths, impl=impl, remat=remat)


# Every layer count with both directions, projections, both layouts and both state
# kinds (each pair of these options occurs), then the edge cases.
# fmt: off
CASES = [
    #   L  bi     P  bf     state
    _pc(1, False, 0, False, "zero"),
    _pc(1, True,  2, True,  "given"),
    _pc(1, True,  0, False, "zero", bias=False),
    _pc(2, False, 2, False, "given"),
    _pc(2, True,  0, True,  "zero"),
    _pc(2, True,  2, False, "given", dtype="float64"),
    _pc(3, False, 0, True,  "given"),
    _pc(3, True,  2, False, "zero"),
    _pc(3, True,  2, True,  "given"),
    _pc(2, True,  0, False, "given", lengths=(4, 2, 5, 3)),   # every row padded (max < T)
    _pc(2, True,  0, True,  "given", lengths=(6, 5, 3, 1)),   # sorted, as enforce_sorted wants
    _pc(2, True,  0, False, "given", lengths=(6, 6, 6, 6)),   # no padding at all
    _pc(2, True,  2, False, "given", batch_size=1, lengths=(4,)),
    _pc(1, True,  0, False, "given", seq_len=1, lengths=(1, 1, 1, 1)),
    # the other implementations of the JAX recurrence and rematerialization
    _pc(2, True,  2, True,  "given", impl="scan"),
    _pc(2, True,  0, False, "given", impl="cudnn"),  # jax.experimental.rnn's reference on CPU
    _pc(2, True,  2, False, "given", remat=2),
    _pc(2, True,  2, False, "given", remat=2, impl="scan"),
]
# fmt: on


@pytest.mark.parametrize("pc", CASES, ids=[pc.id for pc in CASES])
def test_packed_parity_forward_and_gradients(pc: PackedCase) -> None:
    """Outputs, h_n, c_n and the gradients w.r.t. every parameter, x, h_0, c_0."""
    run = check_case(pc)
    # the packed semantics, on torch's own results: zeros at padded steps and no
    # gradient flowing into padded input positions
    padded = _padding_mask(pc)
    assert np.all(run.torch_outputs["output"][padded] == 0)
    assert np.all(run.jax_outputs["output"][padded] == 0)
    assert np.all(run.torch_grads["x"][padded] == 0)
    assert np.all(run.jax_grads["x"][padded] == 0)


def _padding_mask(pc: PackedCase) -> np.ndarray:
    """(T, B) or (B, T) boolean: True at padded steps (the input's layout)."""
    case = pc.case
    t = np.arange(case.seq_len)[:, None]
    lengths = np.asarray(pc.lengths or [case.seq_len] * case.batch_size)[None, :]
    mask = t >= lengths
    return mask.T if case.batch_first else mask


@pytest.mark.parametrize(
    "pc",
    [_pc(1, True, 0, False, "given"), _pc(3, True, 2, True, "given")],
    ids=lambda pc: pc.id,
)
def test_each_row_equals_that_row_run_alone(pc: PackedCase) -> None:
    """Row b of the padded batch = nn.LSTM on x[:len_b, b] alone (no packing): forward
    direction ends and reverse direction starts at the row's own last valid step."""
    case = pc.case
    inputs = helpers.random_inputs(case)
    module = helpers.make_torch_lstm(case)
    model = pc.jax_lstm()
    variables = lstm_jax.params_from_torch(module.state_dict())
    x_tm = np.swapaxes(inputs["x"], 0, 1) if case.batch_first else inputs["x"]  # (T, B, I)
    out, (h_n, c_n) = model.apply(
        variables, inputs["x"], (inputs["h_0"], inputs["c_0"]), seq_lengths=pc.lengths
    )
    out_tm = np.swapaxes(np.asarray(out), 0, 1) if case.batch_first else np.asarray(out)
    tol = FORWARD[case.np_dtype]
    with torch.no_grad():
        module.batch_first = False  # one unbatched (T, I) sequence per row
        for b, n in enumerate(pc.lengths):
            state = tuple(torch.from_numpy(inputs[k][:, b]) for k in ("h_0", "c_0"))
            ref_out, (ref_h, ref_c) = module(torch.from_numpy(x_tm[:n, b]), state)
            assert_close(out_tm[:n, b], ref_out.numpy(), tol, f"row {b} output")
            assert np.all(out_tm[n:, b] == 0), f"row {b}: padded outputs are not zero"
            assert_close(np.asarray(h_n)[:, b], ref_h.numpy(), tol, f"row {b} h_n")
            assert_close(np.asarray(c_n)[:, b], ref_c.numpy(), tol, f"row {b} c_n")


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_padding_content_does_not_matter(fill: float) -> None:
    """NaN or inf in the padding reach neither the outputs nor any gradient: torch's
    packed LSTM never reads the padding, and the parity with it still holds."""
    pc = _pc(2, True, 2, False, "given")
    inputs = helpers.random_inputs(pc.case)
    inputs["x"] = np.where(_padding_mask(pc)[..., None], fill, inputs["x"]).astype(np.float32)
    run = run_both(pc, inputs)
    assert_parity(pc, run)
    for name, value in {**run.jax_outputs, **run.jax_grads}.items():
        assert np.all(np.isfinite(value)), name


# --- the lecture's LSTMModeler -------------------------------------------------------------


MODELER_CASES = [
    helpers.Case(),
    helpers.Case(num_layers=2, bidirectional=True, proj_size=2, batch_first=True, state="given"),
    helpers.Case(num_layers=2, state="stored1"),  # a (L, 1, H) hidden_cell broadcast to B
]


@pytest.mark.parametrize("case", MODELER_CASES, ids=helpers.ids(MODELER_CASES))
def test_modeler_predicts_from_each_rows_last_valid_step(case: helpers.Case) -> None:
    """jax LSTMModeler vs lstm_torch.LSTMModeler (packed) with lengths: prediction,
    new hidden_cell and gradients; and each row's prediction equals the modeler's
    prediction for that row alone, unpadded."""
    lengths = LENGTHS
    inputs = helpers.random_inputs(case, modeler=True)
    with one_torch_thread():
        module = helpers.make_torch_modeler(case)
        t_in = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
        if "h_0" in t_in:
            module.hidden_cell = (t_in["h_0"], t_in["c_0"])
        y = module(t_in["x"], seq_lengths=torch.tensor(lengths))
        t_out = {"y": y, "h": module.hidden_cell[0], "c": module.hidden_cell[1]}
        cot = helpers.random_cotangents({k: v.detach().numpy() for k, v in t_out.items()})
        t_grads = helpers.torch_loss_grads(module, t_out, t_in, cot)

    model = helpers.make_jax_modeler(case)

    def apply(variables: dict, inputs: dict) -> dict[str, jax.Array]:
        hidden_cell = (inputs["h_0"], inputs["c_0"]) if "h_0" in inputs else None
        y, (h, c) = model.apply(
            variables, inputs["x"], hidden_cell, seq_lengths=np.asarray(lengths)
        )
        return {"y": y, "h": h, "c": c}

    with helpers.x64_if(case.dtype):
        variables = lstm_jax.params_from_torch(module.state_dict())
        j_out, j_grads = helpers.jax_loss_grads(apply, variables, inputs, cot)
    t_out = {k: v.detach().numpy() for k, v in t_out.items()}
    helpers.assert_all_close(j_out, t_out, FORWARD[case.np_dtype], "modeler")
    helpers.assert_all_close(j_grads, t_grads, GRADIENT[case.np_dtype], "modeler grads")

    # each row alone: the lecture's model on the unpadded (T_b, 1, I) sequence
    x_tm = np.swapaxes(inputs["x"], 0, 1) if case.batch_first else inputs["x"]
    for b, n in enumerate(lengths):
        row = x_tm[:n, b : b + 1]
        hidden_cell = None
        if "h_0" in inputs:  # (D*L, B, ·), or a stored (D*L, 1, ·) shared by every row
            row_index = slice(0, 1) if inputs["h_0"].shape[1] == 1 else slice(b, b + 1)
            hidden_cell = tuple(inputs[k][:, row_index] for k in ("h_0", "c_0"))
        if case.batch_first:
            row = np.swapaxes(row, 0, 1)
        y_row, _ = model.apply(variables, row, hidden_cell)
        assert_close(j_out["y"][b], np.asarray(y_row)[0], FORWARD[case.np_dtype], f"row {b}")


def test_unbatched_input_with_a_length() -> None:
    """An unbatched (T, I) input takes one length (a scalar or shape (1,)): the result
    is nn.LSTM on x[:n], zero-padded to T."""
    case = helpers.Case(num_layers=2, bidirectional=True, x_ndim=2, state="given")
    inputs = helpers.random_inputs(case)
    module = helpers.make_torch_lstm(case)
    variables = lstm_jax.params_from_torch(module.state_dict())
    model = helpers.make_jax_lstm(case)
    state = (inputs["h_0"], inputs["c_0"])
    n = 4
    with torch.no_grad():
        ref_out, (ref_h, ref_c) = module(
            torch.from_numpy(inputs["x"][:n]), tuple(torch.from_numpy(s) for s in state)
        )
    for lengths in (n, np.array([n]), jnp.array(n, jnp.int32)):
        out, (h_n, c_n) = model.apply(variables, inputs["x"], state, seq_lengths=lengths)
        assert out.shape == (case.seq_len, 2 * case.hidden_size)
        assert_close(out[:n], ref_out.numpy(), FORWARD[case.np_dtype], "output")
        assert np.all(np.asarray(out[n:]) == 0)
        assert_close(h_n, ref_h.numpy(), FORWARD[case.np_dtype], "h_n")
        assert_close(c_n, ref_c.numpy(), FORWARD[case.np_dtype], "c_n")


def test_lengths_in_any_integer_container_give_the_same_result() -> None:
    """A list, numpy int32/int64, a jax array (and for torch a tensor or a list)."""
    case = helpers.Case(num_layers=1, bidirectional=True)
    inputs = helpers.random_inputs(case)
    module = helpers.make_torch_modeler(case)
    variables = lstm_jax.params_from_torch(module.state_dict())
    model = helpers.make_jax_modeler(case)
    forms = [
        list(LENGTHS),
        np.array(LENGTHS, np.int32),
        np.array(LENGTHS, np.int64),
        jnp.array(LENGTHS),
    ]
    results = [np.asarray(model.apply(variables, inputs["x"], seq_lengths=f)[0]) for f in forms]
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
    x = torch.from_numpy(inputs["x"])
    torch_results = []
    for form in (list(LENGTHS), torch.tensor(LENGTHS, dtype=torch.int32)):
        module.hidden_cell = module.zero_hidden_cell()  # the model keeps its state between calls
        with torch.no_grad():
            torch_results.append(module(x, seq_lengths=form).numpy())
    np.testing.assert_array_equal(torch_results[1], torch_results[0])
    assert_close(results[0], torch_results[0], FORWARD[case.np_dtype], "y")


# --- bad lengths ---------------------------------------------------------------------------

T, B = 6, 4
BAD_LENGTHS = {
    # mistake: (lengths, exception type, message excerpt)
    "a zero length": ([3, 0, 1, 4], ValueError, "in [1, T=6]"),
    "a negative length": ([3, -2, 1, 4], ValueError, "in [1, T=6]"),
    "a length beyond T": ([3, 7, 1, 4], ValueError, "in [1, T=6]"),
    "one length too few": ([3, 6, 1], ValueError, "expected 4 seq_lengths"),
    "one length too many": ([3, 6, 1, 4, 2], ValueError, "expected 4 seq_lengths"),
    "2-D lengths": ([[3, 6], [1, 4]], ValueError, "expected seq_lengths of shape (4,)"),
    "float lengths": ([3.0, 6.0, 1.0, 4.0], TypeError, "expected integer seq_lengths"),
    "bool lengths": ([True, True, True, True], TypeError, "expected integer seq_lengths"),
}


def _models() -> tuple[lstm_jax.LSTM, lstm_jax.LSTMModeler, lstm_torch.LSTMModeler, dict]:
    case = helpers.Case(bidirectional=True)
    torch_modeler = helpers.make_torch_modeler(case)
    variables = lstm_jax.params_from_torch(torch_modeler.state_dict())
    return helpers.make_jax_lstm(case), helpers.make_jax_modeler(case), torch_modeler, variables


@pytest.mark.parametrize("mistake", list(BAD_LENGTHS))
def test_bad_lengths_raise_on_both_backends(mistake: str) -> None:
    lengths, error, excerpt = BAD_LENGTHS[mistake]
    jax_lstm, jax_modeler, torch_modeler, variables = _models()
    x = np.zeros((T, B, 3), np.float32)
    with pytest.raises(error, match=re.escape(excerpt)):
        jax_lstm.apply({"params": variables["params"]["lstm"]}, x, seq_lengths=lengths)
    with pytest.raises(error, match=re.escape(excerpt)):
        jax_modeler.apply(variables, x, seq_lengths=np.asarray(lengths))
    with pytest.raises(error, match=re.escape(excerpt)):
        torch_modeler(torch.from_numpy(x), seq_lengths=torch.tensor(lengths))


@pytest.mark.parametrize(
    "mistake", ["one length too few", "one length too many", "2-D lengths", "float lengths"]
)
def test_bad_length_shapes_and_dtypes_raise_under_jit(mistake: str) -> None:
    """Traced lengths have a shape and dtype but no values: those are still checked,
    before tracing reaches XLA (a ValueError/TypeError, not a jax error)."""
    lengths, error, excerpt = BAD_LENGTHS[mistake]
    jax_lstm, jax_modeler, _, variables = _models()
    x = np.zeros((T, B, 3), np.float32)
    lstm_vars = {"params": variables["params"]["lstm"]}
    with pytest.raises(error, match=re.escape(excerpt)):
        jax.jit(lambda v, x, n: jax_lstm.apply(v, x, seq_lengths=n))(lstm_vars, x, lengths)
    with pytest.raises(error, match=re.escape(excerpt)):
        jax.jit(lambda v, x, n: jax_modeler.apply(v, x, seq_lengths=n))(
            variables, x, np.asarray(lengths)
        )


def test_out_of_range_traced_lengths_give_nan_rows() -> None:
    """Under jax.jit the values of traced lengths cannot be checked: a row whose length
    lies outside [1, T] comes out NaN (output, h_n, c_n, the modeler's prediction),
    and the other rows are exactly what eager evaluation gives."""
    jax_lstm, jax_modeler, _, variables = _models()
    x = np.random.default_rng(0).standard_normal((T, B, 3)).astype(np.float32)
    lstm_vars = {"params": variables["params"]["lstm"]}
    good = np.array(LENGTHS, np.int32)
    bad = np.array([3, 0, 1, T + 3], np.int32)  # rows 1 and 3 out of range
    run_lstm = jax.jit(lambda v, x, n: jax_lstm.apply(v, x, seq_lengths=n))
    run_modeler = jax.jit(lambda v, x, n: jax_modeler.apply(v, x, seq_lengths=n)[0])
    out, (h_n, c_n) = run_lstm(lstm_vars, x, bad)
    y = run_modeler(variables, x, bad)
    ref_out, (ref_h, ref_c) = jax_lstm.apply(lstm_vars, x, seq_lengths=good)
    ref_y = jax_modeler.apply(variables, x, seq_lengths=good)[0]
    for got, ref, axis in ((out, ref_out, 1), (h_n, ref_h, 1), (c_n, ref_c, 1), (y, ref_y, 0)):
        got, ref = np.moveaxis(np.asarray(got), axis, 0), np.moveaxis(np.asarray(ref), axis, 0)
        assert np.all(np.isnan(got[[1, 3]]))
        assert_close(got[[0, 2]], ref[[0, 2]], FORWARD[np.dtype(np.float32)], "valid rows")

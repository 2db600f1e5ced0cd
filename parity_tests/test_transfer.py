"""Weight transfer: torch -> JAX -> torch (and JAX -> torch -> JAX) is bitwise exact,
keeps names, order and dtype, and loads into torch with ``strict=True``."""

from __future__ import annotations

import re

import helpers
import jax
import numpy as np
import pytest
import torch

import lstm_jax
from lstm_jax.interop.transfer import flatten


def assert_bitwise_equal(actual: dict, reference: dict, ordered: bool = True) -> None:
    """Same keys (in the same order if ``ordered``); every array equal bit for bit, with
    the same dtype."""
    assert (list(actual) if ordered else sorted(actual)) == (
        list(reference) if ordered else sorted(reference)
    )
    for key, ref in reference.items():
        got, ref = _numpy(actual[key]), _numpy(ref)
        assert got.dtype == ref.dtype, f"{key}: dtype {got.dtype}, expected {ref.dtype}"
        assert got.shape == ref.shape, f"{key}: shape {got.shape}, expected {ref.shape}"
        assert np.array_equal(got.view(np.uint8), ref.view(np.uint8)), f"{key}: bits differ"


def _numpy(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def round_trip(module: torch.nn.Module, case: helpers.Case) -> None:
    """torch -> params_from_torch -> params_to_torch -> load_state_dict(strict) -> torch."""
    state_dict = module.state_dict()
    with helpers.x64_if(case.dtype):
        variables = lstm_jax.params_from_torch(state_dict)
        for value in jax.tree.leaves(variables):
            assert isinstance(value, jax.Array) and value.dtype == case.np_dtype
        back = lstm_jax.params_to_torch(variables)
    assert_bitwise_equal(back, state_dict)
    fresh = type(module)(*_constructor_args(module, case), **case.options).to(case.torch_dtype)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    assert_bitwise_equal(fresh.state_dict(), state_dict)


def _constructor_args(module: torch.nn.Module, case: helpers.Case) -> tuple:
    if isinstance(module, torch.nn.LSTM):
        return (case.input_size, case.hidden_size)
    return (case.input_size, case.hidden_size, case.output_size)


@pytest.mark.parametrize("case", helpers.LSTM_GRID, ids=helpers.ids(helpers.LSTM_GRID))
def test_nn_lstm_round_trip_is_bitwise(case: helpers.Case) -> None:
    round_trip(helpers.make_torch_lstm(case), case)


@pytest.mark.parametrize("case", helpers.MODELER_GRID, ids=helpers.ids(helpers.MODELER_GRID))
def test_modeler_round_trip_is_bitwise(case: helpers.Case) -> None:
    round_trip(helpers.make_torch_modeler(case), case)


JAX_CASES = [
    ("lstm", helpers.Case(num_layers=2, bidirectional=True, proj_size=2)),
    ("modeler", helpers.Case(num_layers=3, bias=False, dtype="float64")),
]


@pytest.mark.parametrize(
    ("kind", "case"), JAX_CASES, ids=[f"{kind}-{case.id}" for kind, case in JAX_CASES]
)
def test_jax_init_round_trip_through_torch_is_bitwise(kind: str, case: helpers.Case) -> None:
    x = helpers.random_inputs(case)["x"]
    with helpers.x64_if(case.dtype):
        if kind == "lstm":
            model, module = helpers.make_jax_lstm(case), helpers.make_torch_lstm(case)
        else:
            model, module = helpers.make_jax_modeler(case), helpers.make_torch_modeler(case)
        model = model.clone(param_dtype=case.np_dtype)
        variables = jax.jit(model.init)(jax.random.key(0), x)
        state_dict = lstm_jax.params_to_torch(variables)
        assert all(isinstance(v, np.ndarray) for v in state_dict.values())
        module.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
        again = lstm_jax.params_from_torch(module.state_dict(), model=model)
    # jax.jit returns dicts with sorted keys: the names match, the order need not
    assert_bitwise_equal(flatten(again["params"]), flatten(variables["params"]), ordered=False)
    # the "params" collection itself is accepted too
    assert_bitwise_equal(lstm_jax.params_to_torch(variables["params"]), state_dict)


def test_parameters_that_require_grad_pass() -> None:
    case = helpers.Case(num_layers=2, proj_size=2)
    module = helpers.make_torch_modeler(case)
    parameters = dict(module.named_parameters())
    assert all(p.requires_grad for p in parameters.values())
    variables = lstm_jax.params_from_torch(parameters)
    assert_bitwise_equal(lstm_jax.params_to_torch(variables), module.state_dict())


MODEL_CASE = helpers.Case(num_layers=2, bidirectional=True, proj_size=2)


def test_model_argument_accepts_its_own_configuration() -> None:
    module = helpers.make_torch_modeler(MODEL_CASE)
    model = helpers.make_jax_modeler(MODEL_CASE)
    variables = lstm_jax.params_from_torch(module.state_dict(), model=model)
    assert_bitwise_equal(lstm_jax.params_to_torch(variables), module.state_dict())
    lstm = helpers.make_torch_lstm(MODEL_CASE)
    variables = lstm_jax.params_from_torch(
        lstm.state_dict(), model=helpers.make_jax_lstm(MODEL_CASE)
    )
    assert_bitwise_equal(lstm_jax.params_to_torch(variables), lstm.state_dict())


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (dict(hidden_size=6), "weight_ih_l0: expected (24, 3), got (20, 3)"),
        (dict(num_layers=3), "missing key(s): lstm.weight_ih_l2"),
        (dict(num_layers=1), "unexpected key(s): lstm.weight_ih_l1"),
        (dict(bidirectional=False), "unexpected key(s): lstm.weight_ih_l0_reverse"),
        (dict(proj_size=0), "unexpected key(s): lstm.weight_hr_l0"),
        (dict(proj_size=3), "weight_hr_l0: expected (3, 5), got (2, 5)"),
        (dict(bias=False), "unexpected key(s): lstm.bias_ih_l0"),
        (dict(input_size=4), "weight_ih_l0: expected (20, 4), got (20, 3)"),
        (dict(output_size=3), "linear.weight: expected (3, 4), got (2, 4)"),
    ],
    ids=["hidden", "layers+", "layers-", "uni", "noproj", "proj3", "nobias", "input", "output"],
)
def test_model_argument_checks_against_the_models_configuration(changes: dict, named: str) -> None:
    state_dict = helpers.make_torch_modeler(MODEL_CASE).state_dict()
    other = helpers.make_jax_modeler(MODEL_CASE.with_(**changes))
    with pytest.raises(ValueError, match=re.escape(named)):
        lstm_jax.params_from_torch(state_dict, model=other)


@pytest.mark.parametrize("kind", ["lstm", "own model"])
def test_transferred_weights_are_copies(kind: str) -> None:
    """As torch's load_state_dict copies: an in-place step on the torch model after
    the transfer leaves the JAX variables as they were."""
    import flax.linen as nn

    torch_lstm = torch.nn.LSTM(2, 3)
    x = np.zeros((4, 1, 2), np.float32)
    if kind == "lstm":
        variables = lstm_jax.params_from_torch(torch_lstm.state_dict())
    else:

        class Own(nn.Module):
            @nn.compact
            def __call__(self, x):
                return lstm_jax.LSTM(3, name="rnn")(x)[0]

        holder = torch.nn.Module()
        holder.rnn = torch_lstm
        variables = lstm_jax.params_from_torch(holder.state_dict(), model=Own(), example=(x,))
    before = jax.tree.map(np.array, variables)
    with torch.no_grad():
        for p in torch_lstm.parameters():
            p.add_(1.0)
    after = jax.tree.map(np.array, variables)
    assert jax.tree.all(jax.tree.map(np.array_equal, before, after))

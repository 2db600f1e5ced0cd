"""Bad input gets a clear ``ValueError``/``TypeError`` naming what was expected and what
came, on both backends, and for JAX before anything is traced (also under ``jax.jit``).
Weight transfer refuses what does not fit, naming the key and the shapes."""

from __future__ import annotations

import re
from collections.abc import Callable

import helpers
import jax
import numpy as np
import pytest
import torch

import lstm_jax
import lstm_torch

T, B, I, H = 5, 2, 3, 4


def esc(*parts: object) -> str:
    """A regex matching ``parts`` in order, each literally (shapes have parentheses)."""
    return ".*".join(re.escape(str(p)) for p in parts)


# --- invalid options: every constructor -------------------------------------------------

BAD_OPTIONS = [
    # (options, error type, regex naming expected and got)
    (dict(proj_size=H), ValueError, esc("smaller than hidden_size", f"proj_size={H}", H)),
    (dict(proj_size=H + 3), ValueError, esc("smaller than hidden_size", f"proj_size={H + 3}")),
    (dict(proj_size=-1), ValueError, esc("positive integer or zero", "got -1")),
    (dict(proj_size=1.5), TypeError, esc("proj_size should be of type int", "float")),
    (dict(dropout=1.5), ValueError, esc("range [0, 1]", "got 1.5")),
    (dict(dropout=-0.1), ValueError, esc("range [0, 1]", "got -0.1")),
    (dict(dropout=float("nan")), ValueError, esc("range [0, 1]", "got nan")),
    (dict(dropout="0.5"), TypeError, esc("dropout should be a number in [0, 1]", "'0.5'")),
    (dict(num_layers=0), ValueError, esc("num_layers must be greater than or equal to 1", "got 0")),
    (dict(num_layers=2.0), TypeError, esc("num_layers should be of type int", "float")),
    (dict(hidden_size=2.5), TypeError, esc("hidden_size should be of type int", "float")),
    (
        dict(hidden_size=0),
        ValueError,
        esc("hidden_size must be greater than or equal to 1", "got 0"),
    ),
    (dict(bias="yes"), TypeError, esc("bias should be a bool", "'yes'")),
    (dict(batch_first=1), TypeError, esc("batch_first should be a bool", "1")),
]
CONSTRUCTORS: dict[str, Callable[..., object]] = {
    "jax.LSTM": lambda hidden_size=H, **kw: lstm_jax.LSTM(hidden_size, **kw),
    "jax.LSTMModeler": lambda hidden_size=H, **kw: lstm_jax.LSTMModeler(I, hidden_size, 1, **kw),
    "torch.LSTMModeler": lambda hidden_size=H, **kw: lstm_torch.LSTMModeler(
        I, hidden_size, 1, **kw
    ),
}


@pytest.mark.parametrize("who", list(CONSTRUCTORS))
@pytest.mark.parametrize(
    ("options", "error", "match"), BAD_OPTIONS, ids=[str(o[0]) for o in BAD_OPTIONS]
)
def test_invalid_options_are_refused_at_construction(
    who: str, options: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        CONSTRUCTORS[who](**options)


@pytest.mark.parametrize("who", ["jax.LSTMModeler", "torch.LSTMModeler"])
@pytest.mark.parametrize("output_size", [0, -2, True, 2.0])
def test_invalid_output_size_is_refused_at_construction(who: str, output_size: object) -> None:
    make = lstm_jax.LSTMModeler if who.startswith("jax") else lstm_torch.LSTMModeler
    with pytest.raises(ValueError, match=esc("output_size must be a positive int", output_size)):
        make(I, H, output_size)


def test_input_size_is_checked_by_the_modelers() -> None:
    for make in (lstm_jax.LSTMModeler, lstm_torch.LSTMModeler):
        with pytest.raises(ValueError, match=esc("input_size must be greater", "got 0")):
            make(0, H, 1)


# --- bad calls: lstm_jax.LSTM, eager and under jit ---------------------------------------

LSTM_MODEL = lstm_jax.LSTM(H, num_layers=2)  # D*L = 2, H_out = H
F32 = np.float32


def _zeros(*shape: int, dtype: object = F32) -> np.ndarray:
    return np.zeros(shape, dtype)


@pytest.fixture(scope="module")
def lstm_variables() -> dict:
    return jax.jit(LSTM_MODEL.init)(jax.random.key(0), _zeros(T, B, I))


BAD_LSTM_CALLS = {
    # name: (x, initial_state, error, match)
    "feature-size": (_zeros(T, B, I + 1), None, ValueError, esc("Expected 3, got 4")),
    "feature-size-unbatched": (_zeros(T, 1), None, ValueError, esc("Expected 3, got 1")),
    "rank-1": (_zeros(T), None, ValueError, esc("2-D", "3-D", "got 1-D", (T,))),
    "rank-4": (_zeros(T, B, I, 1), None, ValueError, esc("2-D", "3-D", "got 4-D", (T, B, I, 1))),
    "no-steps": (_zeros(0, B, I), None, ValueError, esc("at least one time step", (0, B, I))),
    "empty-batch": (_zeros(T, 0, I), None, ValueError, esc("at least one sequence", (T, 0, I))),
    "int-input": (_zeros(T, B, I, dtype=np.int32), None, TypeError, esc("floating", "int32")),
    "bool-input": (_zeros(T, B, I, dtype=bool), None, TypeError, esc("floating", "bool")),
    "h0-layers": (
        _zeros(T, B, I),
        (_zeros(1, B, H), _zeros(2, B, H)),
        ValueError,
        esc("h_0 of shape", (2, B, H), "got", (1, B, H)),
    ),
    "c0-batch": (
        _zeros(T, B, I),
        (_zeros(2, B, H), _zeros(2, B + 1, H)),
        ValueError,
        esc("c_0 of shape", (2, B, H), "got", (2, B + 1, H)),
    ),
    "h0-unbatched": (
        _zeros(T, I),
        (_zeros(2, B, H), _zeros(2, B, H)),
        ValueError,
        esc("h_0 of shape", (2, H), "got", (2, B, H)),
    ),
    "h0-int": (
        _zeros(T, B, I),
        (_zeros(2, B, H, dtype=np.int32), _zeros(2, B, H)),
        TypeError,
        esc("floating point h_0", "int32"),
    ),
    "state-not-a-pair": (
        _zeros(T, B, I),
        (_zeros(2, B, H),),
        TypeError,
        esc("pair (h_0, c_0)", "tuple"),
    ),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    ("x", "state", "error", "match"), BAD_LSTM_CALLS.values(), ids=list(BAD_LSTM_CALLS)
)
def test_lstm_bad_call(
    lstm_variables: dict, x: np.ndarray, state: tuple, error: type, match: str, jit: bool
) -> None:
    apply = jax.jit(LSTM_MODEL.apply) if jit else LSTM_MODEL.apply
    with pytest.raises(error, match=match) as info:
        apply(lstm_variables, x, state)
    assert type(info.value) is error  # ours, not a JAX error subclassing it


def test_lstm_refuses_variables_of_another_configuration(lstm_variables: dict) -> None:
    other = lstm_jax.LSTM(H + 1, num_layers=2)
    match = esc("weight_hh_l0: expected", (4 * H + 4, H + 1), "got", (4 * H, H))
    for apply in (other.apply, jax.jit(other.apply)):
        with pytest.raises(ValueError, match=match):
            apply(lstm_variables, _zeros(T, B, I))


# --- bad calls: the modelers -------------------------------------------------------------

JAX_MODELER = lstm_jax.LSTMModeler(I, H, 2, num_layers=2)


@pytest.fixture(scope="module")
def modeler_variables() -> dict:
    return jax.jit(JAX_MODELER.init)(jax.random.key(0), _zeros(T, I))


BAD_MODELER_CALLS = {
    # name: (x, hidden_cell, error, match); hidden_cell (D*L, B, ·) as the torch model stores it
    "feature-size-2d": (_zeros(T, I + 1), None, ValueError, esc("Expected 3, got 4")),
    "feature-size-1d": (_zeros(T), None, ValueError, esc("Expected 3, got 1")),
    "feature-size-3d": (_zeros(T, B, 1), None, ValueError, esc("Expected 3, got 1")),
    "rank-4": (_zeros(T, B, I, 1), None, ValueError, esc("1-D", "2-D", "3-D", "got 4-D")),
    "rank-0": (_zeros(), None, ValueError, esc("1-D", "2-D", "3-D", "got 0-D")),
    "no-steps": (_zeros(0, I), None, ValueError, esc("at least one time step", (0, I))),
    "int-input": (_zeros(T, I, dtype=np.int32), None, TypeError, esc("floating", "int32")),
    "h-layers": (
        _zeros(T, I),
        (_zeros(1, 1, H), _zeros(2, 1, H)),
        ValueError,
        esc("h_0 of shape", (2, 1, H), "got", (1, 1, H)),
    ),
    "c-size": (
        _zeros(T, B, I),
        (_zeros(2, B, H), _zeros(2, B, H + 1)),
        ValueError,
        esc("c_0 of shape", (2, B, H), "got", (2, B, H + 1)),
    ),
    "h-batch": (
        _zeros(T, B, I),
        (_zeros(2, B + 1, H), _zeros(2, B + 1, H)),
        ValueError,
        esc("h_0 of shape", (2, B, H), "got", (2, B + 1, H)),
    ),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    ("x", "hidden_cell", "error", "match"), BAD_MODELER_CALLS.values(), ids=list(BAD_MODELER_CALLS)
)
def test_jax_modeler_bad_call(
    modeler_variables: dict, x: np.ndarray, hidden_cell: tuple, error: type, match: str, jit: bool
) -> None:
    apply = jax.jit(JAX_MODELER.apply) if jit else JAX_MODELER.apply
    with pytest.raises(error, match=match) as info:
        apply(modeler_variables, x, hidden_cell)
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("x", "hidden_cell", "error", "match"), BAD_MODELER_CALLS.values(), ids=list(BAD_MODELER_CALLS)
)
def test_torch_modeler_bad_call(x: np.ndarray, hidden_cell: tuple, error: type, match: str) -> None:
    model = lstm_torch.LSTMModeler(I, H, 2, num_layers=2)
    if hidden_cell is not None:
        model.hidden_cell = tuple(torch.from_numpy(a) for a in hidden_cell)
    with pytest.raises(error, match=match):
        model(torch.from_numpy(x))


def test_torch_modeler_refuses_other_inputs() -> None:
    model = lstm_torch.LSTMModeler(I, H, 2)
    with pytest.raises(TypeError, match=esc("torch.Tensor", "ndarray")):
        model(_zeros(T, I))
    with pytest.raises(TypeError, match=esc("dtype torch.float32", "got torch.float64")):
        model(torch.zeros(T, I, dtype=torch.float64))


# --- weight transfer ---------------------------------------------------------------------


def _lstm_state_dict(**options: object) -> dict[str, torch.Tensor]:
    return dict(torch.nn.LSTM(I, H, **options).state_dict())


def test_missing_key_is_named() -> None:
    state_dict = _lstm_state_dict(num_layers=2)
    del state_dict["bias_hh_l1"]
    with pytest.raises(ValueError, match=esc("missing key(s): bias_hh_l1")):
        lstm_jax.params_from_torch(state_dict)
    with pytest.raises(ValueError, match=esc("missing key(s): bias_hh_l1")):
        lstm_jax.params_from_torch(state_dict, model=lstm_jax.LSTM(H, num_layers=2))


def test_unexpected_key_is_named() -> None:
    state_dict = _lstm_state_dict(num_layers=2)
    state_dict["weight_xx_l0"] = torch.zeros(2)
    with pytest.raises(ValueError, match=esc("unexpected key(s): weight_xx_l0")):
        lstm_jax.params_from_torch(state_dict)
    state_dict = _lstm_state_dict(num_layers=2)
    state_dict["weight_ih_l2"] = torch.zeros(4 * H, H)  # a third layer the model lacks
    with pytest.raises(ValueError, match=esc("unexpected key(s): weight_ih_l2")):
        lstm_jax.params_from_torch(state_dict, model=lstm_jax.LSTM(H, num_layers=2))


@pytest.mark.parametrize(
    ("key", "shape"),
    [("bias_ih_l1", (4 * H + 1,)), ("weight_ih_l1", (4 * H, H + 2)), ("weight_hr_l1", (1, H + 1))],
)
def test_shape_mismatch_names_key_and_both_shapes(key: str, shape: tuple[int, ...]) -> None:
    state_dict = _lstm_state_dict(num_layers=2, proj_size=1)
    expected = tuple(state_dict[key].shape)
    state_dict[key] = torch.zeros(shape)
    match = esc(f"{key}: expected", expected, "got", shape)
    with pytest.raises(ValueError, match=match):
        lstm_jax.params_from_torch(state_dict)
    with pytest.raises(ValueError, match=match):
        lstm_jax.params_from_torch(state_dict, model=lstm_jax.LSTM(H, num_layers=2, proj_size=1))


def test_projection_of_another_size_is_named() -> None:
    state_dict = _lstm_state_dict(proj_size=1)
    state_dict["weight_hr_l0"] = torch.zeros(2, H)  # the keys now describe proj_size 2
    with pytest.raises(ValueError, match=esc("weight_hh_l0", "expected 2 columns", (4 * H, 1))):
        lstm_jax.params_from_torch(state_dict)
    match = esc("weight_hr_l0: expected", (1, H), "got", (2, H))
    with pytest.raises(ValueError, match=match):
        lstm_jax.params_from_torch(state_dict, model=lstm_jax.LSTM(H, proj_size=1))


def test_recurrent_weight_of_the_wrong_width_names_both() -> None:
    state_dict = _lstm_state_dict()
    state_dict["weight_hh_l0"] = torch.zeros(4 * H, H + 2)
    with pytest.raises(ValueError, match=esc("weight_hh_l0", H, "columns", (4 * H, H + 2))):
        lstm_jax.params_from_torch(state_dict)


@pytest.mark.parametrize("hidden", [3, 4, 8])
@pytest.mark.parametrize("kind", [torch.nn.GRU, torch.nn.RNN])
def test_gru_or_rnn_state_dict_is_refused_clearly(kind: type, hidden: int) -> None:
    state_dict = kind(I, hidden).state_dict()
    with pytest.raises(ValueError, match=esc("weight_hh_l0", "GRU or RNN state dict?")):
        lstm_jax.params_from_torch(state_dict)


def test_state_dict_of_the_wrong_model_kind_is_refused() -> None:
    modeler_sd = lstm_torch.LSTMModeler(I, H, 1).state_dict()
    with pytest.raises(ValueError, match=esc("nn.LSTM state dict", "LSTM", "lstm.weight_hh_l0")):
        lstm_jax.params_from_torch(modeler_sd, model=lstm_jax.LSTM(H))
    with pytest.raises(ValueError, match=esc("missing key(s): lstm.weight_ih_l0")):
        lstm_jax.params_from_torch(_lstm_state_dict(), model=lstm_jax.LSTMModeler(I, H, 1))
    with pytest.raises(ValueError, match=esc("weight_ih_l0", "weight_hh_l0", "got keys []")):
        lstm_jax.params_from_torch({})


def test_float64_state_dict_without_x64_is_refused() -> None:
    state_dict = {k: v.double() for k, v in _lstm_state_dict().items()}
    with (
        jax.enable_x64(False),
        pytest.raises(ValueError, match=esc("weight_ih_l0 is float64", "32-bit mode")),
    ):
        lstm_jax.params_from_torch(state_dict)
    with helpers.x64_if("float64"):  # and accepted with float64 on
        variables = lstm_jax.params_from_torch(state_dict)
        assert variables["params"]["weight_ih_l0"].dtype == np.float64


def test_non_floating_or_non_mapping_state_dict_is_refused() -> None:
    state_dict = {k: v.to(torch.int32) for k, v in _lstm_state_dict().items()}
    with pytest.raises(TypeError, match=esc("weight_ih_l0", "floating point", "int32")):
        lstm_jax.params_from_torch(state_dict)
    with pytest.raises(TypeError, match=esc("mapping", "list")):
        lstm_jax.params_from_torch(list(_lstm_state_dict().values()))

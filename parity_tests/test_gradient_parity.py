"""Gradient parity with torch: the gradient of one random projection of the output and
of (h_n, c_n) with respect to every parameter, the input and the initial state, over the
same grids as the forward tests (float32 and float64)."""

from __future__ import annotations

import helpers
import pytest

from lstm_jax.common.config import modeler_param_shapes
from lstm_jax.common.tolerances import GRADIENT


def _expected_names(params: dict, case: helpers.Case) -> set[str]:
    inputs = {"x", "h_0", "c_0"} if case.state != "zero" else {"x"}
    return set(params) | inputs


@pytest.mark.parametrize("case", helpers.LSTM_GRID, ids=helpers.ids(helpers.LSTM_GRID))
def test_lstm_gradients_match_torch(case: helpers.Case) -> None:
    run = helpers.lstm_run(case)
    assert set(run.torch_grads) == _expected_names(case.config.param_shapes(), case)
    helpers.assert_all_close(run.jax_grads, run.torch_grads, GRADIENT[case.np_dtype], case.id)


@pytest.mark.parametrize("case", helpers.MODELER_GRID, ids=helpers.ids(helpers.MODELER_GRID))
def test_modeler_gradients_match_torch(case: helpers.Case) -> None:
    run = helpers.modeler_run(case)
    names = modeler_param_shapes(case.config, case.output_size)
    assert set(run.torch_grads) == _expected_names(names, case)
    helpers.assert_all_close(run.jax_grads, run.torch_grads, GRADIENT[case.np_dtype], case.id)

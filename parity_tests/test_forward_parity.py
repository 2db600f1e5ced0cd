"""Forward parity with torch: ``lstm_jax.LSTM`` against ``torch.nn.LSTM`` and
``lstm_jax.LSTMModeler`` against ``lstm_torch.LSTMModeler``, same weights, over pairwise
grids of every option (float32 and float64)."""

from __future__ import annotations

import helpers
import jax
import numpy as np
import pytest
import torch

import lstm_jax
from lstm_jax.common.tolerances import FORWARD, scaled_error


def test_precision_is_pinned_during_tests() -> None:
    assert jax.config.jax_default_matmul_precision == "highest"
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False
    assert helpers.precision_is_pinned()


@pytest.mark.parametrize(
    ("factors", "grid"),
    [(helpers.LSTM_FACTORS, helpers.LSTM_GRID), (helpers.MODELER_FACTORS, helpers.MODELER_GRID)],
    ids=["lstm", "modeler"],
)
def test_grid_covers_every_pair_of_option_values(
    factors: helpers.Factors, grid: list[helpers.Case]
) -> None:
    assert factors.uncovered_pairs(grid) == []


@pytest.mark.parametrize("case", helpers.LSTM_GRID, ids=helpers.ids(helpers.LSTM_GRID))
def test_lstm_matches_torch_nn_lstm(case: helpers.Case) -> None:
    run = helpers.lstm_run(case)
    helpers.assert_all_close(run.jax_outputs, run.torch_outputs, FORWARD[case.np_dtype], case.id)


@pytest.mark.parametrize("case", helpers.MODELER_GRID, ids=helpers.ids(helpers.MODELER_GRID))
def test_modeler_matches_torch_modeler(case: helpers.Case) -> None:
    run = helpers.modeler_run(case)
    helpers.assert_all_close(run.jax_outputs, run.torch_outputs, FORWARD[case.np_dtype], case.id)


def test_tolerance_catches_a_swapped_gate_and_a_lost_bias() -> None:
    """The forward tolerance is tight enough to see the usual porting mistakes."""
    case = helpers.Case(hidden_size=5, num_layers=1, seq_len=6)
    module = helpers.make_torch_lstm(case)
    x = helpers.random_inputs(case)["x"]
    reference = module(torch.from_numpy(x))[0].detach().numpy()
    variables = lstm_jax.params_from_torch(module.state_dict())
    apply = jax.jit(helpers.make_jax_lstm(case).apply)
    H = case.hidden_size

    def error(params: dict) -> float:
        return scaled_error(apply({"params": params}, x)[0], reference)

    params = dict(variables["params"])
    assert error(params) <= FORWARD[np.dtype(np.float32)]
    w = np.asarray(params["weight_ih_l0"])
    swapped = np.concatenate([w[H : 2 * H], w[:H], w[2 * H :]])  # gates f, i, g, o
    assert error({**params, "weight_ih_l0": swapped}) > 100 * FORWARD[np.dtype(np.float32)]
    lost = {**params, "bias_hh_l0": 0 * params["bias_hh_l0"]}  # one of the two biases
    assert error(lost) > 100 * FORWARD[np.dtype(np.float32)]

"""``init`` draws from torch's distributions and makes torch's names and shapes.

``nn.LSTM``: every tensor from U(-1/sqrt(H), 1/sqrt(H)); ``nn.Linear``: weight and bias
from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Checked statistically (range, mean, second
moment within 5 standard errors) on both backends' own draws.
"""

from __future__ import annotations

import math

import helpers
import jax
import numpy as np
import pytest

from lstm_jax.interop.transfer import flatten

SHAPE_CASES = [
    helpers.Case(),
    helpers.Case(num_layers=2, bidirectional=True, proj_size=2),
    helpers.Case(num_layers=3, bias=False, hidden_size=1),
    helpers.Case(num_layers=2, bidirectional=True, batch_first=True, input_size=1),
]


def _torch_shapes(module: object) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("case", SHAPE_CASES, ids=helpers.ids(SHAPE_CASES))
@pytest.mark.parametrize("kind", ["lstm", "modeler"])
def test_init_names_and_shapes_are_torchs(case: helpers.Case, kind: str) -> None:
    x = helpers.random_inputs(case)["x"]
    if kind == "lstm":
        model, module = helpers.make_jax_lstm(case), helpers.make_torch_lstm(case)
    else:
        model, module = helpers.make_jax_modeler(case), helpers.make_torch_modeler(case)
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    assert list(abstract) == ["params"]
    shapes = {k: tuple(v.shape) for k, v in flatten(abstract["params"]).items()}
    assert shapes == _torch_shapes(module)
    assert {v.dtype for v in flatten(abstract["params"]).values()} == {np.dtype(np.float32)}


def test_init_in_float64_keeps_the_dtype() -> None:
    case = helpers.Case(num_layers=2, proj_size=2)
    with helpers.x64_if("float64"):
        model = helpers.make_jax_modeler(case).clone(param_dtype=np.float64)
        x = helpers.random_inputs(case.with_(dtype="float64"))["x"]
        abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    assert {v.dtype for v in flatten(abstract["params"]).values()} == {np.dtype(np.float64)}


def uniform_statistics_problems(values: np.ndarray, bound: float) -> list[str]:
    """What, if anything, says ``values`` are not i.i.d. U(-bound, bound) draws."""
    x = np.asarray(values, np.float64).ravel()
    n = x.size
    problems = []
    if np.max(np.abs(x)) > bound:
        problems.append(f"max |x| {np.max(np.abs(x)):.4g} > bound {bound:.4g}")
    if np.max(np.abs(x)) < bound * (1 - 10 / n):  # P(fail) = e^-10 for a true U
        problems.append(f"max |x| {np.max(np.abs(x)):.4g} well below bound {bound:.4g}")
    mean_se = bound / math.sqrt(3 * n)
    if abs(x.mean()) > 5 * mean_se:
        problems.append(f"mean {x.mean():.4g} (standard error {mean_se:.3g})")
    second, second_se = bound**2 / 3, bound**2 * math.sqrt(4 / 45 / n)
    if abs(np.mean(x**2) - second) > 5 * second_se:
        problems.append(f"mean square {np.mean(x**2):.4g}, expected {second:.4g} ± {second_se:.2g}")
    return problems


STATS_CASE = helpers.Case(
    hidden_size=64, input_size=8, num_layers=2, bidirectional=True, proj_size=16, output_size=64
)


@pytest.fixture(scope="module")
def both_inits() -> dict[str, dict[str, np.ndarray]]:
    case = STATS_CASE
    model = helpers.make_jax_modeler(case)
    x = helpers.random_inputs(case)["x"]
    variables = jax.jit(model.init)(jax.random.key(0), x)
    module = helpers.make_torch_modeler(case)
    return {
        "jax": {k: np.asarray(v) for k, v in flatten(variables["params"]).items()},
        "torch": {k: v.numpy() for k, v in module.state_dict().items()},
    }


def _bound(name: str, case: helpers.Case) -> float:
    if name.startswith("linear."):
        return 1.0 / math.sqrt(case.config.num_directions * case.config.output_size)
    return 1.0 / math.sqrt(case.hidden_size)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_tensor_is_drawn_from_torchs_distribution(
    both_inits: dict[str, dict[str, np.ndarray]], backend: str
) -> None:
    params = both_inits[backend]
    assert sorted(params) == sorted(both_inits["torch"])
    problems = {
        name: p
        for name, value in params.items()
        if (p := uniform_statistics_problems(value, _bound(name, STATS_CASE)))
    }
    assert problems == {}


def test_jax_and_torch_init_statistics_agree(
    both_inits: dict[str, dict[str, np.ndarray]],
) -> None:
    """Pooled over all LSTM tensors, then the head: the two backends' means and mean
    squares differ by no more than their combined standard errors allow."""
    groups = {
        "lstm": lambda k: k.startswith("lstm."),
        "linear.weight": lambda k: k == "linear.weight",
    }
    for group, member in groups.items():
        jx = np.concatenate([v.ravel() for k, v in both_inits["jax"].items() if member(k)])
        tx = np.concatenate([v.ravel() for k, v in both_inits["torch"].items() if member(k)])
        bound = _bound("lstm." if group == "lstm" else group, STATS_CASE)
        se_mean = bound / math.sqrt(3) * math.sqrt(1 / jx.size + 1 / tx.size)
        se_square = bound**2 * math.sqrt(4 / 45) * math.sqrt(1 / jx.size + 1 / tx.size)
        assert abs(jx.astype(np.float64).mean() - tx.astype(np.float64).mean()) <= 5 * se_mean
        diff = np.mean(jx.astype(np.float64) ** 2) - np.mean(tx.astype(np.float64) ** 2)
        assert abs(diff) <= 5 * se_square, group


def test_tensors_are_independent_draws(both_inits: dict[str, dict[str, np.ndarray]]) -> None:
    params = both_inits["jax"]
    names = list(params)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if params[a].shape == params[b].shape:
                assert not np.array_equal(params[a], params[b]), f"{a} and {b} are equal"


def test_statistics_check_would_catch_a_wrong_bound() -> None:
    rng = np.random.default_rng(0)
    bound = 1 / 8
    assert uniform_statistics_problems(rng.uniform(-bound, bound, 4096), bound) == []
    assert uniform_statistics_problems(rng.uniform(-bound, bound, 4096), bound / 2)
    assert uniform_statistics_problems(rng.uniform(-bound / 2, bound / 2, 4096), bound)
    assert uniform_statistics_problems(rng.uniform(0, bound, 4096), bound)
    assert uniform_statistics_problems(rng.normal(0, bound / math.sqrt(3), 4096), bound)

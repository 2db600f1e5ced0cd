"""lstm_jax.BatchNorm1d / BatchNorm2d (linen and NNX) against torch.nn.BatchNorm1d / 2d:
outputs in train and eval, several steps of running-statistic updates, every
constructor option, float32 and float64, torch's input errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax
from lstm_jax.common.tolerances import FORWARD, assert_close
from parity_tests.helpers import x64_if

OPTIONS = [
    {},
    {"momentum": None},
    {"momentum": 0.3, "eps": 1e-3},
    {"affine": False},
    {"track_running_stats": False},
    {"affine": False, "track_running_stats": False, "momentum": None},
]
SHAPES = {"1d": [(6, 3), (5, 3, 4)], "2d": [(4, 3, 2, 5)]}
TORCH = {"1d": torch.nn.BatchNorm1d, "2d": torch.nn.BatchNorm2d}
LINEN = {"1d": lstm_jax.BatchNorm1d, "2d": lstm_jax.BatchNorm2d}
NNX = {"1d": lstm_jax.nnx.BatchNorm1d, "2d": lstm_jax.nnx.BatchNorm2d}
CASES = [(kind, shape) for kind, shapes in SHAPES.items() for shape in shapes]


def _torch_model(kind: str, dtype: np.dtype, options: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = TORCH[kind](3, **options).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():  # affine parameters away from ones/zeros: a swap would show
        for p in model.parameters():
            p.uniform_(-1.5, 1.5)
    return model


def _batches(shape: tuple[int, ...], dtype: np.dtype, n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [(rng.normal(size=shape) * 2 + 0.5).astype(dtype) for _ in range(n)]


def _check_buffers(got: dict, model: torch.nn.Module, tol: float) -> None:
    for name, buffer in model.named_buffers():
        want = buffer.numpy()
        if name == "num_batches_tracked":
            assert int(got[name]) == int(want), name
        else:
            assert_close(np.asarray(got[name]), want, tol, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize(("kind", "shape"), CASES)
def test_linen_matches_torch_in_train_and_eval(kind, shape, options, dtype):
    dtype = np.dtype(dtype)
    tol = FORWARD[dtype]
    with x64_if(dtype):
        tm = _torch_model(kind, dtype, options)
        fm = LINEN[kind](3, param_dtype=dtype, **options)
        batches = _batches(shape, dtype)
        variables = fm.init(jax.random.key(0), batches[0], use_running_average=False)
        variables = {
            **variables,
            **(
                {"params": {k: v.detach().numpy() for k, v in tm.named_parameters()}}
                if options.get("affine", True)
                else {}
            ),
        }
        _check_buffers(variables.get("batch_stats", {}), tm, 0.0)  # fresh buffers are torch's
        tm.train()
        for x in batches:  # several training steps: outputs and running statistics
            want = tm(torch.from_numpy(x)).detach().numpy()
            got, updates = fm.apply(
                variables, x, use_running_average=False, mutable=["batch_stats"]
            )
            variables = {**variables, **updates}
            assert got.dtype == dtype
            assert_close(np.asarray(got), want, tol, "train output")
            _check_buffers(variables.get("batch_stats", {}), tm, tol)
        tm.eval()
        for x in batches[:2]:
            want = tm(torch.from_numpy(x)).detach().numpy()
            got = fm.apply(variables, x, use_running_average=True)
            assert_close(np.asarray(got), want, tol, "eval output")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize(("kind", "shape"), CASES)
def test_nnx_matches_torch_in_train_and_eval(kind, shape, options, dtype):
    dtype = np.dtype(dtype)
    tol = FORWARD[dtype]
    with x64_if(dtype):
        tm = _torch_model(kind, dtype, options)
        fm = NNX[kind](3, param_dtype=dtype, **options)
        fm.load_state_dict(tm.state_dict())
        for x in _batches(shape, dtype):
            want = tm(torch.from_numpy(x)).detach().numpy()
            assert_close(np.asarray(fm(x)), want, tol, "train output")
            _check_buffers(fm.state_dict(), tm, tol)
        tm.eval()
        fm.eval()
        x = _batches(shape, dtype, 1)[0]
        assert_close(np.asarray(fm(x)), tm(torch.from_numpy(x)).detach().numpy(), tol, "eval")


def test_nnx_updates_inside_jit():
    bn = lstm_jax.nnx.BatchNorm1d(3)
    x = _batches((6, 3), np.dtype(np.float32), 1)[0]

    @nnx.jit
    def step(m, x):
        return m(x)

    step(bn, x)
    step(bn, x)
    tm = _torch_model("1d", np.dtype(np.float32), {})
    tm(torch.from_numpy(x))
    tm(torch.from_numpy(x))
    assert int(bn.num_batches_tracked.get_value()) == 2
    assert_close(np.asarray(bn.running_var.get_value()), tm.running_var.numpy(), 1e-5, "var")


def test_momentum_weights_the_new_value_and_variance_is_unbiased():
    """A hand computation, independent of torch: one step from fresh buffers."""
    x = np.array([[0.0], [2.0], [4.0]], np.float32)  # mean 2, biased var 8/3, unbiased 4
    bn = lstm_jax.BatchNorm1d(1, momentum=0.25)
    v = bn.init(jax.random.key(0), x, use_running_average=False)
    _, upd = bn.apply(v, x, use_running_average=False, mutable=["batch_stats"])
    assert np.allclose(upd["batch_stats"]["running_mean"], [0.25 * 2])
    assert np.allclose(upd["batch_stats"]["running_var"], [0.75 * 1 + 0.25 * 4])
    assert int(upd["batch_stats"]["num_batches_tracked"]) == 1


@pytest.mark.parametrize(
    ("kind", "shape", "message"),
    [
        ("1d", (2, 3, 4, 5), "expected 2D or 3D input (got 4D input)"),
        ("2d", (2, 3, 4), "expected 4D input (got 3D input)"),
        ("1d", (4, 5), "expected input with 3 channels on axis 1"),
    ],
)
def test_bad_input_is_refused_torch_style(kind, shape, message):
    x = np.ones(shape, np.float32)
    with pytest.raises((ValueError, RuntimeError)):  # torch: RuntimeError for channels
        TORCH[kind](3)(torch.from_numpy(x))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LINEN[kind](3).init(jax.random.key(0), x, use_running_average=True)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NNX[kind](3)(x)


def test_single_value_per_channel_is_refused_in_training():
    x = np.ones((1, 3), np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(3)(torch.from_numpy(x))
    bn = lstm_jax.BatchNorm1d(3)
    v = bn.init(jax.random.key(0), np.ones((2, 3), np.float32), use_running_average=False)
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        bn.apply(v, x, use_running_average=False, mutable=["batch_stats"])
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        lstm_jax.nnx.BatchNorm1d(3)(x)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"num_features": 0}, ValueError),
        ({"num_features": 3, "eps": -1.0}, ValueError),
        ({"num_features": 3, "momentum": "0.1"}, TypeError),
        ({"num_features": 3, "affine": 1}, TypeError),
    ],
)
def test_bad_options_are_refused(options, error):
    with pytest.raises(error, match="BatchNorm1d: expected"):
        lstm_jax.BatchNorm1d(**options)
    with pytest.raises(error, match="BatchNorm1d: expected"):
        lstm_jax.nnx.BatchNorm1d(**options)

"""The package's cells inside Flax's loop transforms (linen nn.RNN / nn.scan, nnx.RNN),
torch's parameter names kept, against torch's cell stepped by a Python loop; the
example's two-cell step loop with future steps against torch; its gradient compiles
in a time flat in T (slow)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax
from lstm_jax.linen.loop_cells import loop_cell
from lstm_jax.nnx.loop_cells import loop_cell as nnx_loop_cell

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "step_loop.py"


def _example():
    spec = importlib.util.spec_from_file_location("example_step_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class TorchLoop(torch.nn.Module):
    """torch's nn.LSTMCell under ``rnn.cell`` stepped over (B, T, I) by a Python loop."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.Module()
        self.rnn.cell = torch.nn.LSTMCell(3, 5)

    def forward(self, x):
        h = c = torch.zeros(x.shape[0], 5, dtype=x.dtype)
        outputs = []
        for t in range(x.shape[1]):
            h, c = self.rnn.cell(x[:, t], (h, c))
            outputs.append(h)
        return torch.stack(outputs, 1)


class LinenRNN(nn.Module):
    def setup(self) -> None:
        self.rnn = nn.RNN(loop_cell(lstm_jax.LSTMCell)(5))

    def __call__(self, x):
        return self.rnn(x)


class LinenScan(nn.Module):
    """nn.scan of the cell class itself, parameters broadcast (not stacked over T)."""

    def setup(self) -> None:
        scan = nn.scan(
            loop_cell(lstm_jax.LSTMCell),
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        self.rnn = _Holder(scan)

    def __call__(self, x):
        return self.rnn(x)


class _Holder(nn.Module):
    """``rnn.cell`` as torch's: the scanned cell named ``cell``."""

    scan: type

    def setup(self) -> None:
        self.cell = self.scan(5)

    def __call__(self, x):
        carry = self.cell.initialize_carry(None, x[:, 0].shape)
        return self.cell(carry, x)[1]


class NnxRNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.rnn = nnx.RNN(nnx_loop_cell(lstm_jax.nnx.LSTMCell)(3, 5, rngs=rngs))

    def __call__(self, x):
        return self.rnn(x)


KEYS = ["rnn.cell.bias_hh", "rnn.cell.bias_ih", "rnn.cell.weight_hh", "rnn.cell.weight_ih"]


@pytest.mark.parametrize("model", [LinenRNN(), LinenScan()], ids=["nn.RNN", "nn.scan"])
def test_linen_loop_transforms_keep_torch_names_and_match(model, tmp_path):
    torch.manual_seed(0)
    tm = TorchLoop()
    x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    variables = lstm_jax.params_from_torch(tm.state_dict(), model, example=(x,))
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes == {
        "rnn": {"cell": {k.split(".")[-1]: tuple(tm.state_dict()[k].shape) for k in KEYS}}
    }
    assert sorted(lstm_jax.params_to_torch(variables, model)) == KEYS
    report = lstm_jax.compare_with_torch(tm, model, variables, x)
    assert report.ok, report
    path = tmp_path / "loop.safetensors"
    lstm_jax.save_checkpoint(path, variables, model)
    fresh = TorchLoop()
    import lstm_torch

    lstm_torch.load_checkpoint(path, fresh)
    assert all(torch.equal(fresh.state_dict()[k], tm.state_dict()[k]) for k in KEYS)


def test_nnx_rnn_keeps_torch_names_and_matches():
    torch.manual_seed(0)
    tm = TorchLoop()
    model = NnxRNN(nnx.Rngs(0))
    assert sorted(lstm_jax.nnx.state_dict(model)) == KEYS
    lstm_jax.nnx.load_state_dict(model, tm.state_dict())
    x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    report = lstm_jax.compare_with_torch(tm, model, x)
    assert report.ok, report


def test_loop_cell_carry_is_the_cells_zero_state():
    cell = loop_cell(lstm_jax.LSTMCell)(4)
    carry = cell.initialize_carry(jax.random.key(0), (2, 3))
    assert isinstance(carry, lstm_jax.LSTMState)
    assert carry.h.shape == carry.c.shape == (2, 4) and not np.any(carry.h)
    assert cell.num_feature_axes == 1
    with pytest.raises(TypeError, match="loop_cell: expected an lstm_jax linen cell class"):
        loop_cell(lambda x: x)


def test_fit_trains_a_loop_transform_model():
    xs = np.random.default_rng(1).normal(size=(8, 6, 3)).astype(np.float32)
    ys = xs[:, -1, :2]

    class Head(nn.Module):
        def setup(self) -> None:
            self.rnn = nn.RNN(loop_cell(lstm_jax.LSTMCell)(5))
            self.fc = nn.Dense(2)

        def __call__(self, x):
            return self.fc(self.rnn(x)[:, -1])

    variables = Head().init(jax.random.key(0), xs[:2])
    trained, losses = lstm_jax.fit(
        Head(),
        variables,
        xs,
        ys,
        optimizer=lstm_jax.SGD(0.1),
        epochs=3,
        batch_size=4,
        batch_first=True,
    )
    assert losses[-1] < losses[0]
    assert jax.tree.structure(trained["params"]) == jax.tree.structure(variables["params"])


def test_step_loop_example_matches_torch_with_future_steps():
    example = _example()
    config = example.Config(steps=12, future=4, hidden=6, compile_steps=(5,))
    results = example.main(config)
    assert results["ok"] == 1.0
    jax.config.update("jax_enable_x64", False)


@pytest.mark.slow
def test_step_loop_gradient_compiles_flat_in_t():
    """The scan compiles once: at T = 1000 no slower than about at T = 10 (a Python loop
    grows linearly: 2.6 s at T = 10, 37.6 s at T = 40 in the issue's measurement)."""
    example = _example()
    results = example.main(example.Config(steps=1000, future=20, hidden=51))
    jax.config.update("jax_enable_x64", False)
    assert results["ok"] == 1.0
    assert results["T=1000"] < 2.0 * results["T=10"] + 1.0, results

"""Import isolation: ``lstm_jax`` works without torch and ``lstm_torch`` without JAX.

Each check runs in a fresh interpreter. "Unimportable" is ``sys.modules[name] = None``
(``import name`` then raises ``ImportError``, as if it were not installed); "never
imported" means the name is absent from ``sys.modules`` after the work is done.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # every check starts a fresh interpreter


def run_python(*blocks: str) -> None:
    code = "\n".join(textwrap.dedent(block) for block in blocks)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr


def block(*names: str) -> str:
    return "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in names)


def assert_not_imported(*names: str) -> str:
    return (
        "import sys\n"
        f"leaked = [m for m in {names!r} if m in sys.modules]\n"
        "assert not leaked, f'imported: {leaked}'\n"
    )


USE_LSTM_JAX = """
import numpy as np
import jax
import lstm_jax

x = np.zeros((4, 2, 3), np.float32)
model = lstm_jax.LSTM(5, bidirectional=True, proj_size=2)
variables = jax.jit(model.init)(jax.random.key(0), x)
out, (h_n, c_n) = jax.jit(model.apply)(variables, x)
assert out.shape == (4, 2, 4) and h_n.shape == (2, 2, 2) and c_n.shape == (2, 2, 5)
variables = lstm_jax.params_from_torch(lstm_jax.params_to_torch(variables), model=model)
modeler = lstm_jax.LSTMModeler(3, 5, 1)
v = jax.jit(modeler.init)(jax.random.key(1), x[:, 0])
v = lstm_jax.params_from_torch(lstm_jax.params_to_torch(v))
y, _ = jax.jit(modeler.apply)(v, x[:, 0])
assert y.shape == (1,)
for name in lstm_jax.__all__:  # every public name loads
    getattr(lstm_jax, name)
"""

USE_LSTM_TORCH = """
import torch
import lstm_torch

model = lstm_torch.LSTMModeler(3, 5, 1, num_layers=2)
assert model(torch.zeros(4, 3)).shape == (1,)
for name in lstm_torch.__all__:  # every public name loads
    getattr(lstm_torch, name)
"""


def test_lstm_jax_works_with_torch_unimportable() -> None:
    run_python(block("torch"), USE_LSTM_JAX)


def test_lstm_jax_never_imports_torch() -> None:
    run_python(USE_LSTM_JAX, assert_not_imported("torch"))


@pytest.mark.parametrize("unimportable", [True, False], ids=["unimportable", "never-imported"])
def test_lstm_torch_works_without_jax(unimportable: bool) -> None:
    jax_stack = ("jax", "jaxlib", "flax", "optax")
    if unimportable:
        run_python(block(*jax_stack), USE_LSTM_TORCH)
    else:
        run_python(USE_LSTM_TORCH, assert_not_imported(*jax_stack))

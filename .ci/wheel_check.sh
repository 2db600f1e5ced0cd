#!/usr/bin/env bash
# What a user installs: build the sdist and the wheel, check them, install the wheel (not
# editable) into a fresh virtual environment, and use it from a folder outside the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m build -q --outdir "$work/dist" . >/dev/null
check-wheel-contents "$work"/dist/*.whl
twine check --strict "$work"/dist/*
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "torch==2.13.0" "$(ls "$work"/dist/*.whl)[torch]"
cd "$work"  # outside the tree: only the installed wheel can be imported
"$work/venv/bin/python" - "$root" <<'PY'
import sys
from importlib.metadata import version

import numpy as np
import torch

import lstm_jax
import lstm_jax.nnx
import lstm_torch

root = sys.argv[1]
for module in (lstm_jax, lstm_jax.nnx, lstm_torch):
    assert not module.__file__.startswith(root), f"{module.__name__} came from the tree: {module.__file__}"
assert lstm_jax.__version__ == version("lstm-jax"), lstm_jax.__version__

torch.manual_seed(0)
reference = torch.nn.LSTM(3, 5, num_layers=2)
x = torch.randn(7, 2, 3)
expected, _ = reference(x)
variables = lstm_jax.params_from_torch(reference.state_dict())
out, _ = lstm_jax.LSTM(5, num_layers=2).apply(variables, np.asarray(x))
error = float(np.max(np.abs(np.asarray(out) - expected.detach().numpy())))
assert error < 1e-5, f"installed lstm_jax.LSTM differs from torch.nn.LSTM by {error}"
print(f"wheel lstm-jax {lstm_jax.__version__}: imports outside the tree, forward within {error:.1e} of torch.nn.LSTM")
PY
"$work/venv/bin/python" -m lstm_jax.check --help >/dev/null
echo "wheel: python -m lstm_jax.check --help runs"

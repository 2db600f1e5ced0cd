"""Determinism: the same seeds give bitwise the same parameters and losses on CPU,
across fresh processes (for each backend on its own).

Each run is a fresh ``python -c`` process that initialises the lecture's model (two
layers, dropout between them, so the dropout masks' random streams count too) from
a seed, trains it a few epochs with ``fit`` (Adam, shuffled batches), and prints
sha256 digests of the initial parameters, the per-epoch losses and the trained
parameters. Two processes per backend, started with different ``PYTHONHASHSEED``
values, must print the same digests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

COMMON = """
import hashlib, json
import numpy as np

def digest(named):
    h = hashlib.sha256()
    for key in sorted(named):
        value = named[key]
        value = value.detach().numpy() if hasattr(value, "detach") else value
        a = np.ascontiguousarray(np.asarray(value))
        h.update(f"{key}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()

rng = np.random.default_rng(0)
xs = rng.standard_normal((24, 6, 1)).astype(np.float32)   # (N, T, I)
ys = rng.standard_normal((24, 1)).astype(np.float32)      # (N, O)
OPTIONS = dict(num_layers=2, dropout=0.25)
FIT = dict(epochs=3, batch_size=5, shuffle_seed=0)
"""

SCRIPTS = {
    "lstm_jax": COMMON
    + """
import jax, lstm_jax
from lstm_jax.interop.transfer import flatten
model = lstm_jax.LSTMModeler(1, 8, 1, **OPTIONS)
variables = model.init(jax.random.key(0), xs[0])
trained, losses = lstm_jax.fit(
    model, variables, xs, ys, optimizer=lstm_jax.Adam(lr=1e-2), rng=jax.random.key(1), **FIT
)
print(json.dumps({
    "init": digest(flatten(variables["params"])),
    "init_other_seed": digest(flatten(model.init(jax.random.key(7), xs[0])["params"])),
    "losses": digest({"losses": losses}),
    "trained": digest(flatten(trained["params"])),
    "finite": bool(np.all(np.isfinite(losses))),
}))
""",
    "lstm_torch": COMMON
    + """
import torch, lstm_torch, lstm_jax.common.optim
torch.manual_seed(0)
model = lstm_torch.LSTMModeler(1, 8, 1, **OPTIONS)
init = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
losses = lstm_torch.fit(model, xs, ys, optimizer=lstm_jax.common.optim.Adam(lr=1e-2), **FIT)
torch.manual_seed(7)
other = lstm_torch.LSTMModeler(1, 8, 1, **OPTIONS)
print(json.dumps({
    "init": digest(init),
    "init_other_seed": digest(other.state_dict()),
    "losses": digest({"losses": losses}),
    "trained": digest({k: v.detach().numpy() for k, v in model.state_dict().items()}),
    "finite": bool(np.all(np.isfinite(losses))),
}))
""",
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(SCRIPTS))
def test_same_seeds_give_bitwise_identical_runs_across_processes(backend: str) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPTS[backend]],
            env=dict(os.environ, PYTHONHASHSEED=str(seed)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    first, second = results
    assert first["finite"]
    assert first["init"] != first["init_other_seed"]  # the digests do see the seed
    assert first == second, f"{backend}: runs differ: {first} vs {second}"

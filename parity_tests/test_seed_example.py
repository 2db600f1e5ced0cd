"""Smoke test of the README's first command, ``python examples/seed_lstm.py``, with few epochs.

It runs in a subprocess (as a user runs it), so the persistent compilation cache
it turns on stays out of the test process.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import lstm_jax
from lstm_jax.common.tolerances import TRAINING, scaled_error

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed_lstm.py"
ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s*$")


def test_seed_example_runs_and_agrees(tmp_path: Path) -> None:
    plot = tmp_path / "plots" / "losses.png"
    cache = tmp_path / "jax_cache"
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--epochs",
            "12",
            "--plot",
            str(plot),
            "--cache-dir",
            str(cache),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout

    rows = [ROW.match(line) for line in out.splitlines()]
    rows = [(int(m[1]), float(m[2]), float(m[3])) for m in rows if m]
    assert [r[0] for r in rows] == [1, 10, 12], out  # first, every 10th, last epoch
    torch_col = np.array([r[1] for r in rows])
    jax_col = np.array([r[2] for r in rows])
    assert np.all(np.isfinite(torch_col)) and np.all(torch_col > 0), out
    # Printed with 7 significant digits: the columns agree at the float32 training tolerance.
    assert scaled_error(jax_col, torch_col) <= TRAINING[np.dtype(np.float32)], out

    prediction = re.search(r"y_true: 28, y_hat torch: (\S+), y_hat jax: (\S+)", out)
    assert prediction, out
    assert abs(float(prediction[1]) - float(prediction[2])) < 1e-2, out
    for label in (
        "largest loss difference",
        "largest parameter difference",
        "torch loop:  first",
        "JAX fit:     first",
        "(compiled)",
    ):
        assert label in out, f"missing {label!r} in:\n{out}"

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(cache.iterdir()), "the persistent compilation cache stayed empty"


def test_seed_example_options() -> None:
    """The options parse (in-process: the example's module, not its main)."""
    spec = importlib.util.spec_from_file_location("seed_lstm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args([])
    lecture = (args.hidden, args.lr, args.epochs, args.batch_size, args.optimizer, args.float64)
    assert lecture == (10, 0.001, 100, 1, "sgd", False)
    args = module.parse_args(
        [
            "--hidden",
            "4",
            "--lr",
            "0.01",
            "--epochs",
            "3",
            "--batch-size",
            "2",
            "--seed",
            "5",
            "--optimizer",
            "adamw",
            "--float64",
            "--no-plot",
            "--plot",
            "x.png",
        ]
    )
    assert (args.hidden, args.seed, args.optimizer, args.float64, args.no_plot) == (
        4,
        5,
        "adamw",
        True,
        True,
    )
    assert module.make_optimizer(args) == lstm_jax.AdamW(0.01)

"""Smoke test of the README's first command, ``python examples/seed_lstm.py``, with few epochs.

It runs in a subprocess (as a user runs it), so the persistent compilation cache
it turns on stays out of the test process; a second process with the same cache
must say it loaded the program instead of compiling it, and write its plot under
``out/``, which git ignores.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstm_jax
from lstm_jax.common.tolerances import TRAINING, scaled_error

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "seed_lstm.py"
ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s*$")
JAX_TIMES = re.compile(r"JAX fit: +first \S+ s \(([^)]*)\), second \S+ s \(([^)]*)\)")


def run_example(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "12", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_seed_example_runs_and_agrees(tmp_path: Path) -> None:
    plot = tmp_path / "plots" / "losses.png"
    cache = tmp_path / "jax_cache"
    out = run_example(tmp_path, "--plot", str(plot), "--cache-dir", str(cache))

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
    ):
        assert label in out, f"missing {label!r} in:\n{out}"
    times = JAX_TIMES.search(out)
    assert times, out
    # A fresh cache: the first call compiles; the second reuses the program in memory.
    assert times.groups() == ("compiled", "already compiled in this process"), out

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(cache.iterdir()), "the persistent compilation cache stayed empty"

    # A second process with the same cache loads the program instead of compiling it;
    # without --plot the plot goes to out/ (relative to where it runs).
    again = run_example(tmp_path, "--cache-dir", str(cache))
    times = JAX_TIMES.search(again)
    assert times and times[1] == "loaded from the compilation cache", again
    assert (tmp_path / "out" / "seed_lstm_losses.png").read_bytes()[:4] == b"\x89PNG"
    assert "saved out/seed_lstm_losses.png" in again


def test_how_compiled_names_what_the_events_say() -> None:
    module = load_module()
    events = {"programs": module.PROGRAM_EVENT, "hits": module.CACHE_HIT_EVENT}

    def said(programs: int, hits: int) -> str:
        counts = module.Counter({events["programs"]: programs, events["hits"]: hits})
        return module.how_compiled(counts)

    assert said(3, 0) == "compiled"
    assert said(3, 3) == "loaded from the compilation cache"
    assert said(3, 1) == "compiled 2 program(s), loaded 1 from the compilation cache"
    assert said(0, 0) == "already compiled in this process"


PLOTTING_EXAMPLES = sorted(
    path.stem
    for path in EXAMPLE.parent.glob("[!_]*.py")
    if "--plot" in path.read_text() or "savefig" in path.read_text()
)


@pytest.mark.slow
@pytest.mark.parametrize("example", PLOTTING_EXAMPLES)
def test_example_outputs_go_where_git_ignores_them(example: str) -> None:
    """Each example that writes a plot has its default in out/, which .gitignore covers
    (README command 1 leaves ``git status`` clean)."""
    module = load_module(example)
    default = module.parse_args([]).plot
    assert Path(default).parts[0] == "out", default
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", str(default)], cwd=ROOT, timeout=30
    )
    assert ignored.returncode == 0, f"{default} is not git-ignored"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", f"examples/{default}"], cwd=ROOT, timeout=30
    )
    assert ignored.returncode == 0, f"examples/{default} (run from examples/) is not git-ignored"


def load_module(name: str = "seed_lstm"):
    """An example script as a module (its folder on sys.path for ``_plotting``)."""
    if str(EXAMPLE.parent) not in sys.path:
        sys.path.insert(0, str(EXAMPLE.parent))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLE.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_help_shows_every_default() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for default in ("(default: 10)", "(default: 0.001)", "(default: out/seed_lstm_losses.png)"):
        assert default in " ".join(result.stdout.split()), result.stdout


def test_seed_example_options() -> None:
    """The options parse (in-process: the example's module, not its main)."""
    module = load_module()
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

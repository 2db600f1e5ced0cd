"""``examples/seq2seq_gru.py`` at tiny settings: both backends train along one trajectory."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_jax.common.tolerances import TRAINING, assert_close

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_seq2seq_gru_tiny_run(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(
        "example_seq2seq_gru", EXAMPLES / "seq2seq_gru.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    result = module.main(["--epochs", "2", "--train", "64", "--test", "16", "--hidden", "16"])
    out = capsys.readouterr().out
    assert "torch loss" in out and "reversed exactly" in out, out
    torch_losses, jax_losses = np.array(result["torch_losses"]), np.array(result["jax_losses"])
    assert_close(jax_losses, torch_losses, TRAINING[np.dtype(np.float32)], "per-epoch losses")
    assert torch_losses[-1] < torch_losses[0]
    data = module.make_data(4, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(data[2], data[0][:, ::-1])  # the target is the reversal
    assert (data[1][:, 0] == module.BOS).all()


@pytest.mark.slow
def test_gru_benchmark_smoke() -> None:
    """``benchmarks/gru_benchmark.py --smoke``: every row ran on both backends (no timing
    is asserted)."""
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "gru_benchmark", root / "benchmarks" / "gru_benchmark.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--smoke"])
    impls = ("scan", "custom_vjp", "hoisted")
    assert set(results) == {f"{k} impl={i}" for k in ("GRU", "RNN") for i in impls}
    for row in results.values():
        assert row["forward ratio"] > 0 and row["train ratio"] > 0

"""bfloat16 compute with float32 master parameters: ``lstm_jax.fit(..., compute_dtype=)``.

The reference is float32 training of the same model from the same start: bfloat16
gradients must lie within bfloat16 rounding of the float32 ones (and not equal
them: the compute really ran in bfloat16), and bfloat16 training must train and
end within a stated factor of the float32 run, with float32 master parameters.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lstm_jax
from lstm_jax.common.tolerances import BFLOAT16_COMPUTE, scaled_error

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# bfloat16 keeps 8 significant bits: one rounding is up to 2**-8 = 0.4% of a value;
# a forward and backward pass through 20 steps and 2 layers compounds a few of them.
BF16_GRADIENT_SCALED_ERROR = BFLOAT16_COMPUTE["gradient"]
# bfloat16 training must end within this factor of float32's final loss (both ways).
FINAL_LOSS_FACTOR = 1.5


@functools.cache
def example() -> ModuleType:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(
        "example_mixed_precision", EXAMPLES / "mixed_precision.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def synthetic_batch() -> tuple[lstm_jax.LSTMModeler, dict, np.ndarray, np.ndarray]:
    tasks = example()
    xs, ys = tasks.synthetic_data(8)
    model = lstm_jax.LSTMModeler(**tasks.SYNTHETIC_MODEL)
    variables = model.init(jax.random.key(0), xs[0])
    return model, variables, np.swapaxes(xs, 0, 1), ys


@pytest.mark.slow  # over 10 s on 2 cores (13 s of CPU measured)
def test_bf16_gradients_are_float32_gradients_rounded() -> None:
    """One SGD step with lr 1 moves the parameters by minus the gradient."""
    model, variables, x, y = synthetic_batch()
    params = variables["params"]
    moves, losses = {}, {}
    for name, dtype in (("f32", None), ("bf16", jnp.bfloat16)):
        step = lstm_jax.make_train_step(model, optax.sgd(1.0), compute_dtype=dtype)
        opt_state = optax.sgd(1.0).init(params)
        new, _, loss = step(variables, opt_state, x, y)
        assert {leaf.dtype for leaf in jax.tree.leaves(new)} == {jnp.dtype(jnp.float32)}
        assert loss.dtype == jnp.float32
        moves[name] = jax.tree.map(lambda a, b: np.asarray(a - b), params, new["params"])
        losses[name] = float(loss)
    errors = jax.tree.leaves(jax.tree.map(scaled_error, moves["bf16"], moves["f32"]))
    assert max(errors) <= BF16_GRADIENT_SCALED_ERROR, errors
    assert min(errors) > 0, "bfloat16 gradients equal float32's: the compute was not bf16"
    assert losses["bf16"] != losses["f32"]
    assert losses["bf16"] == pytest.approx(losses["f32"], rel=2e-2)


def test_compute_dtype_of_the_parameters_is_plain_training() -> None:
    model, variables, x, y = synthetic_batch()
    xs, ys = np.swapaxes(x, 0, 1), y
    options = {"optimizer": lstm_jax.SGD(0.05), "epochs": 2, "batch_size": 4}
    _, plain = lstm_jax.fit(model, variables, xs, ys, **options)
    _, same = lstm_jax.fit(model, variables, xs, ys, compute_dtype=jnp.float32, **options)
    np.testing.assert_array_equal(same, plain)
    with pytest.raises(TypeError, match="compute_dtype: expected a floating point dtype"):
        lstm_jax.fit(model, variables, xs, ys, compute_dtype=jnp.int32, **options)
    with pytest.raises(TypeError, match="compute_dtype: expected a dtype"):
        lstm_jax.fit(model, variables, xs, ys, compute_dtype="half-ish", **options)


@pytest.mark.slow  # over 10 s on 2 cores (18 s of CPU measured)
def test_bf16_trains_like_float32_on_both_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``examples/mixed_precision.py`` at its defaults (the README's numbers)."""
    plot = tmp_path / "mp.png"
    assert example().main(["--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    finals = re.findall(
        r"final loss: float32 (\S+), bfloat16 (\S+) \(ratio (\S+)\); master parameters: (.+)$",
        out,
        flags=re.M,
    )
    assert len(finals) == 2, out
    first_rows = re.findall(r"^\s+1\s+(\S+)\s+(\S+)\s*$", out, flags=re.M)
    assert len(first_rows) == 2, out
    for (f32, bf16, ratio, dtypes), (f32_first, bf16_first) in zip(finals, first_rows, strict=True):
        f32, bf16, f32_first, bf16_first = map(float, (f32, bf16, f32_first, bf16_first))
        assert dtypes.strip() == "float32", out
        assert bf16 < 0.1 * bf16_first and f32 < 0.1 * f32_first, out  # both train
        assert 1 / FINAL_LOSS_FACTOR <= bf16 / f32 <= FINAL_LOSS_FACTOR, out
        assert float(ratio) == pytest.approx(bf16 / f32, rel=1e-2)
        assert bf16 != f32
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""The real-data examples and the vanishing-gradient example: their pieces against
independent references, tiny runs of each script, and the defaults' claims.

The scripts run in this process (``main(argv)``, stdout captured): they set no
global JAX configuration, and the torch thread count they set is restored.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from lstm_jax.common.tolerances import FORWARD, GRADIENT, TRAINING, scaled_error

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
F32 = np.dtype(np.float32)
PNG = b"\x89PNG\r\n\x1a\n"


@functools.cache
def load_example(name: str) -> ModuleType:
    """An example script as a module (its folder on sys.path for ``_two_backends``)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(module: ModuleType, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert module.main(argv) == 0
    return capsys.readouterr().out


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found in:\n{text}"
    return float(match[1])


# --- sunspots --------------------------------------------------------------------------


def sunspot_rmses(out: str) -> dict[str, float]:
    return {
        name: number(rf"(?m)^\s*{name}\s+(\S+)\s*$", out)
        for name in ("persistence", "lstm_torch", "lstm_jax")
    }


def test_sunspot_windows_and_split() -> None:
    sunspots = load_example("sunspots")
    years, values = sunspots.load_sunspots()
    assert (years[0], years[-1], len(values)) == (1700, 2008, 309)

    xs, target = sunspots.windows(values, 5)
    for n in (0, 17, len(xs) - 1):  # a window is the 5 values before its target
        assert target[n] == n + 5
        np.testing.assert_array_equal(xs[n], values[n : n + 5])

    split = sunspots.make_split(years, values, 12, 1950)
    train_years = years < 1950
    # The scaler sees the training years only.
    assert split.scaler.mean == pytest.approx(values[train_years].mean())
    assert split.scaler.std == pytest.approx(values[train_years].std())
    np.testing.assert_array_equal(split.test_years, years[years >= 1950])
    np.testing.assert_array_equal(split.test_truth, values[years >= 1950])
    assert len(split.x_train) == int(train_years.sum()) - 12
    assert split.x_train.shape[1:] == (12, 1) and split.y_train.shape[1:] == (1,)
    # The last test window ends the year before the last target, in original units.
    np.testing.assert_allclose(
        split.scaler.inverse(split.x_test[-1, :, 0]), values[-13:-1], rtol=1e-5
    )
    with pytest.raises(ValueError, match="no training or no test targets"):
        sunspots.make_split(years, values, 12, 2100)


def test_sunspots_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sunspots = load_example("sunspots")
    plot = tmp_path / "out" / "sun.png"
    out = run(sunspots, ["--epochs", "2", "--hidden", "8", "--plot", str(plot)], capsys)
    rmse = sunspot_rmses(out)
    # Persistence, computed here from the raw series: next year's forecast is this year's.
    years, values = sunspots.load_sunspots()
    test = np.flatnonzero(years >= 1950)
    expected = np.sqrt(np.mean((values[test] - values[test - 1]) ** 2))
    assert rmse["persistence"] == pytest.approx(expected, abs=0.01)
    assert rmse["lstm_jax"] == pytest.approx(rmse["lstm_torch"], rel=1e-3)
    assert plot.read_bytes()[:8] == PNG


@pytest.mark.slow
def test_sunspots_defaults_beat_persistence(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(load_example("sunspots"), ["--no-plot"], capsys)
    rmse = sunspot_rmses(out)
    assert rmse["lstm_torch"] < 0.6 * rmse["persistence"], out
    assert rmse["lstm_jax"] < 0.6 * rmse["persistence"], out
    assert number(r"forecast difference jax - torch: \S+ \(scaled (\S+)\)", out) <= TRAINING[F32]


# --- digits ----------------------------------------------------------------------------


def digit_numbers(out: str) -> tuple[float, float, float]:
    return (
        number(r"lstm_torch (\S+)", out),
        number(r"lstm_jax\s+(\S+)", out),
        number(r"agreement \(same predicted class\): (\S+)", out),
    )


def test_digits_rows_are_steps() -> None:
    from sklearn.datasets import load_digits

    digits = load_example("digits").load(0)
    assert digits.x_train.shape == (1347, 8, 8) and digits.x_test.shape == (450, 8, 8)
    assert digits.x_train.dtype == np.float32 and 0 <= digits.x_train.min()
    assert digits.x_train.max() <= 1
    # Every test sequence is an original image, row t at step t, scaled by 1/16.
    flat = load_digits().data / 16.0
    for k in (0, 99, 449):
        rows = digits.x_test[k]
        match = np.flatnonzero(np.all(np.isclose(flat, rows.reshape(-1)), axis=1))
        assert len(match) >= 1
        assert load_digits().target[match[0]] == digits.y_test[k]
    assert np.bincount(digits.y_test).min() >= 43  # stratified: about 45 of each class


def test_digits_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "digits.png"
    out = run(
        load_example("digits"), ["--epochs", "2", "--hidden", "16", "--plot", str(plot)], capsys
    )
    torch_acc, jax_acc, agreement = digit_numbers(out)
    assert 0.2 < torch_acc <= 1 and 0.2 < jax_acc <= 1, out  # 2 epochs already learn
    assert agreement >= 0.97, out
    rows = re.findall(r"^\s+(\d+)\s+(\S+)\s+(\S+)\s*$", out, flags=re.M)
    assert [int(r[0]) for r in rows] == [1, 2], out
    losses = np.array([[float(r[1]), float(r[2])] for r in rows])
    assert scaled_error(losses[:, 1], losses[:, 0]) <= TRAINING[F32], out
    assert plot.read_bytes()[:8] == PNG


@pytest.mark.slow
def test_digits_defaults_reach_95_percent(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(load_example("digits"), ["--no-plot"], capsys)
    torch_acc, jax_acc, agreement = digit_numbers(out)
    assert torch_acc >= 0.95 and jax_acc >= 0.95, out
    assert agreement >= 0.97, out


# --- vanishing gradients ---------------------------------------------------------------


def test_vanilla_rnn_matches_torch_rnn() -> None:
    """The example's pure-JAX RNN is torch's nn.RNN (tanh): outputs and dL/dx_t."""
    vg = load_example("vanishing_gradients")
    T, I, H = 15, 3, 6
    params = vg.rnn_params(H, I, seed=1, dtype=np.float32)
    torch_rnn = torch.nn.RNN(I, H, nonlinearity="tanh")
    torch_rnn.load_state_dict({f"{k}_l0": torch.from_numpy(v) for k, v in params.items()})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, I)).astype(np.float32)
    readout = rng.standard_normal(H).astype(np.float32)

    xt = torch.tensor(x, requires_grad=True)
    out_t, _ = torch_rnn(xt)
    (grad_t,) = torch.autograd.grad(torch.dot(torch.from_numpy(readout), out_t[-1]), xt)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    out_j = vg.rnn(jparams, jnp.asarray(x))
    assert scaled_error(out_j, out_t.detach().numpy()) <= FORWARD[F32]
    norms = vg.input_gradient_norms_jax(lambda s: vg.rnn(jparams, s), x, readout)
    reference = np.linalg.norm(grad_t.numpy().astype(np.float64), axis=-1)
    assert vg.max_relative_difference(norms, reference) <= GRADIENT[F32]


def test_open_forget_gate_touches_only_the_forget_bias() -> None:
    vg = load_example("vanishing_gradients")
    state = torch.nn.LSTM(2, 4).state_dict()
    opened = vg.open_forget_gate(state, 3.0)
    change = (opened["bias_ih_l0"] - state["bias_ih_l0"]).numpy()
    np.testing.assert_allclose(change, np.r_[np.zeros(4), np.full(4, 3.0), np.zeros(8)])
    for key in state:
        if key != "bias_ih_l0":
            assert torch.equal(opened[key], state[key])


def vanishing_table(out: str) -> dict[int, list[float]]:
    rows = re.findall(r"^\s+(\d+)((?:\s+\S+e[-+]\d+){5})\s*$", out, flags=re.M)
    return {int(d): [float(v) for v in values.split()] for d, values in rows}


def test_vanishing_gradients_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "vg.png"
    argv = ["--seq-len", "30", "--hidden", "8", "--input-size", "3", "--plot", str(plot)]
    out = run(load_example("vanishing_gradients"), argv, capsys)
    diffs = [float(d) for d in re.findall(r"max relative difference (\S+)", out)]
    assert len(diffs) == 2 and max(diffs) <= GRADIENT[F32], out
    table = vanishing_table(out)
    assert sorted(table) == [0, 1, 5, 10, 25, 29], out
    assert plot.read_bytes()[:8] == PNG


@pytest.mark.slow
def test_vanishing_gradients_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """T = 100: the RNN's gradient dies, the open-gate LSTM's does not; the JAX and
    torch LSTM curves coincide at every step."""
    out = run(load_example("vanishing_gradients"), ["--no-plot"], capsys)
    diffs = [float(d) for d in re.findall(r"max relative difference (\S+)", out)]
    assert len(diffs) == 2 and max(diffs) <= GRADIENT[F32], out
    far = vanishing_table(out)[99]  # [RNN, LSTM jax, LSTM torch, open jax, open torch]
    near = vanishing_table(out)[0]
    assert far[0] < 1e-15 * near[0], out
    assert far[3] > 1e-2 * near[3], out
    assert far[1] < 1e-10 * near[1], out  # torch's init: forget gate ~0.5, vanishes too


# --- language model (issue 12) ---------------------------------------------------------


def lm_numbers(out: str) -> dict[str, float]:
    before_torch, after_torch = re.search(r"torch\s+before\s+(\S+)\s+after\s+(\S+)", out).groups()
    before_jax, after_jax = re.search(r"lstm_jax\s+before\s+(\S+)\s+after\s+(\S+)", out).groups()
    return {
        "before_torch": float(before_torch),
        "after_torch": float(after_torch),
        "before_jax": float(before_jax),
        "after_jax": float(after_jax),
        "losses": number(r"scaled difference (\S+) per (?:chunk|epoch)", out),
    }


def test_language_model_streams_and_chunks() -> None:
    lm = load_example("language_model")
    ids = np.arange(23)
    data = lm.streams(ids, 4)  # 4 streams of 5 consecutive ids, time-major
    np.testing.assert_array_equal(data[:, 1], np.arange(5, 10))
    assert list(lm.chunk_starts(len(data), 2)) == [0, 2]  # targets stay inside the data
    corpus = lm.load_corpus(500)
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))[:500]
    assert corpus.decode(np.concatenate([corpus.train, corpus.valid])) == text


def test_language_model_tiny_tied_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "lm.png"
    argv = ["--chars", "6000", "--epochs", "1", "--embed", "16", "--hidden", "16", "--tie"]
    argv += ["--dropout", "0", "--bptt", "20", "--batch-size", "4", "--sample-chars", "40"]
    out = run(load_example("language_model"), [*argv, "--plot", str(plot)], capsys)
    assert re.search(r"initial models, compare_with_torch on one chunk: OK", out), out
    n = lm_numbers(out)
    assert n["before_torch"] == pytest.approx(n["before_jax"], rel=1e-5), out
    assert n["after_torch"] < n["before_torch"] and n["after_jax"] < n["before_jax"], out
    assert n["losses"] <= TRAINING[F32], out  # no dropout: step for step
    assert number(r"samples agree on (\d+) of 40", out) >= 35, out
    assert plot.read_bytes()[:8] == PNG


@pytest.mark.slow
def test_language_model_defaults_learn_in_both_backends(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(load_example("language_model"), ["--no-plot"], capsys)
    n = lm_numbers(out)
    assert n["after_torch"] < 0.1 * n["before_torch"], out
    assert n["after_jax"] == pytest.approx(n["after_torch"], rel=0.1), out  # dropout differs


# --- packed classifier (issue 12) ------------------------------------------------------


def classifier_numbers(out: str) -> tuple[float, float, float]:
    return (
        number(r"torch\s+(\d\.\d+)\n", out),
        number(r"lstm_jax\s+(\d\.\d+)\n", out),
        number(r"agreement \(same predicted class\): (\S+)", out),
    )


def test_packed_classifier_columns_are_the_image() -> None:
    from sklearn.datasets import load_digits

    pc = load_example("packed_classifier")
    image = load_digits().images[1]  # a "1": blank columns on both sides
    columns = pc.as_columns(image)
    inked = np.flatnonzero(image.sum(axis=0))
    assert columns.shape == (inked[-1] - inked[0] + 1, 8)
    np.testing.assert_allclose(columns[0], image[:, inked[0]] / 16)
    train, test = pc.load(0, limit=200)
    assert len(train.labels) + len(test.labels) == 200
    for n in (0, 7):  # padding after each length only
        assert not train.x[n, train.lengths[n] :].any() and train.x[n, train.lengths[n] - 1].any()


def test_packed_classifier_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "packed.png"
    argv = ["--epochs", "2", "--hidden", "8", "--limit", "400", "--plot", str(plot)]
    out = run(load_example("packed_classifier"), argv, capsys)
    assert re.search(r"compare_with_torch on 8 sequences: OK", out), out
    assert number(r"scaled difference (\S+)\n", out) <= TRAINING[F32], out
    torch_acc, jax_acc, agreement = classifier_numbers(out)
    assert torch_acc > 0.2 and jax_acc > 0.2 and agreement >= 0.95, out
    assert plot.read_bytes()[:8] == PNG


@pytest.mark.slow
def test_packed_classifier_defaults_reach_93_percent(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(load_example("packed_classifier"), ["--no-plot"], capsys)
    torch_acc, jax_acc, agreement = classifier_numbers(out)
    assert torch_acc >= 0.93 and jax_acc >= 0.93, out
    assert agreement >= 0.97, out

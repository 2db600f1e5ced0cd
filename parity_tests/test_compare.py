"""``lstm_jax.compare_with_torch`` and ``python -m lstm_jax.check``: the users' own parity check.

The report must be right, not merely green: with copied weights it passes; with
one JAX weight perturbed, the difference it reports must be the one torch
itself shows when given the same perturbation, and it must fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax
import lstm_jax.check
import lstm_torch
from lstm_jax.common.tolerances import FORWARD, GRADIENT, scaled_error

MODELER = dict(input_size=2, hidden_layer_size=4, output_size=2)


def modeler_pair(seed: int = 0, **options: object):
    torch.manual_seed(seed)
    tm = lstm_torch.LSTMModeler(**MODELER, **options)
    jm = lstm_jax.LSTMModeler(**MODELER, **options)
    return tm, jm, lstm_jax.params_from_torch(tm.state_dict())


def batch(shape: tuple[int, ...], seed: int = 0, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_copied_weights_pass_and_every_quantity_is_reported() -> None:
    tm, jm, variables = modeler_pair(bidirectional=True)
    report = lstm_jax.compare_with_torch(tm, jm, variables, batch((5, 3, 2)))

    assert report.ok, str(report)
    names = [d.name for d in report.differences]
    params = [f"grad {k}" for k in tm.state_dict()]
    assert names == ["output", "h_n", "c_n", "grad input", *params]
    f32 = np.dtype(np.float32)
    for d in report.differences:
        assert d.tolerance == (FORWARD[f32] if d.group != "gradient" else GRADIENT[f32])
        assert 0.0 <= d.scaled <= d.tolerance
    assert report.forward.name == "output"
    assert report.final_state.name in ("h_n", "c_n")
    assert report.gradient.group == "gradient"


def test_a_perturbed_weight_shows_its_size_and_fails() -> None:
    tm, jm, variables = modeler_pair()
    x = batch((6, 3, 2))
    delta = 1e-3
    params = jax.tree.map(np.array, variables["params"])
    params["lstm"]["weight_hh_l0"][5, 1] += delta
    report = lstm_jax.compare_with_torch(tm, jm, {"params": params}, x)

    # The reference: torch itself with the same weight moved by the same amount.
    with torch.no_grad():
        before = tm(torch.from_numpy(x)).numpy()
        h_before = tm.hidden_cell[0].numpy()
        tm.lstm.weight_hh_l0[5, 1] += delta
        tm.hidden_cell = tm.zero_hidden_cell()
        after = tm(torch.from_numpy(x)).numpy()
        h_after = tm.hidden_cell[0].numpy()
    expected_abs = np.max(np.abs(after - before))
    assert expected_abs > 1e-6  # the weight matters at all
    assert report.forward.max_abs == pytest.approx(expected_abs, rel=1e-2)
    assert report.forward.scaled == pytest.approx(scaled_error(after, before), rel=1e-2)
    h_n = next(d for d in report.differences if d.name == "h_n")
    assert h_n.max_abs == pytest.approx(np.max(np.abs(h_after - h_before)), rel=1e-2)
    assert not report.ok
    assert not report.forward.ok
    assert "FAIL" in str(report)
    # The head bias's gradient is the output cotangent itself, whatever the weights:
    bias = next(d for d in report.differences if d.name == "grad linear.bias")
    assert bias.ok


def test_a_moved_head_bias_shows_exactly_that_difference() -> None:
    tm, jm, variables = modeler_pair()
    x = batch((4, 3, 2))
    params = jax.tree.map(np.array, variables["params"])
    params["linear"]["bias"][1] += np.float32(0.25)
    report = lstm_jax.compare_with_torch(tm, jm, {"params": params}, x)
    with torch.no_grad():
        y = tm(torch.from_numpy(x)).numpy()
    # y[:, 1] moves by 0.25 and nothing else does (the bias enters only the output).
    assert report.forward.max_abs == pytest.approx(0.25, abs=1e-6)
    assert report.forward.scaled == pytest.approx(0.25 / np.max(np.abs(y)), rel=1e-5)
    assert report.final_state.ok
    assert [d.name for d in report.differences if not d.ok] == ["output"]


def test_nn_lstm_float64_with_initial_state() -> None:
    torch.manual_seed(1)
    tl = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True, proj_size=2).double()
    jl = lstm_jax.LSTM(5, num_layers=2, batch_first=True, proj_size=2)
    with jax.enable_x64(True):
        variables = lstm_jax.params_from_torch(tl.state_dict())
        x = batch((2, 4, 3), dtype=np.float64)
        state = (batch((2, 2, 2), 1, np.float64), batch((2, 2, 5), 2, np.float64))
        report = lstm_jax.compare_with_torch(tl, jl, variables, x, initial_state=state)
    assert report.ok, str(report)
    assert report.dtype == np.float64
    assert {"grad h_0", "grad c_0", "grad weight_hr_l1"} <= {d.name for d in report.differences}
    assert report.forward.tolerance == FORWARD[np.dtype(np.float64)]
    assert report.gradient.tolerance == GRADIENT[np.dtype(np.float64)]
    # as torch's call takes it: nn.LSTM(x, (h_0, c_0))
    with jax.enable_x64(True):
        positional = lstm_jax.compare_with_torch(tl, jl, variables, x, state)
    assert positional.ok, str(positional)
    assert {"grad h_0", "grad c_0"} <= {d.name for d in positional.differences}


def test_modeler_pair_with_seq_lengths_packs_both() -> None:
    """lstm_torch.LSTMModeler(x, seq_lengths) packs; the JAX modeler takes the same lengths."""
    tm, jm, variables = modeler_pair(3, bidirectional=True, batch_first=True)
    x, lengths = batch((3, 5, 2)), np.array([5, 2, 3])
    with torch.no_grad():
        tm.hidden_cell = None
        packed = tm(torch.from_numpy(x), torch.from_numpy(lengths)).numpy()
        tm.hidden_cell = None
        padded = tm(torch.from_numpy(x)).numpy()
    assert scaled_error(padded, packed) > 1e-3  # so a side that ignored them would fail
    report = lstm_jax.compare_with_torch(tm, jm, variables, x, seq_lengths=lengths)
    assert report.ok, str(report)
    from_tensor = lstm_jax.compare_with_torch(
        tm, jm, variables, x, seq_lengths=torch.from_numpy(lengths)
    )
    assert from_tensor.ok, str(from_tensor)


def test_nan_fails_and_model_state_is_left_as_it_was() -> None:
    tm, jm, variables = modeler_pair()
    tm.train()
    stored = (torch.ones(1, 1, 4), torch.ones(1, 1, 4))
    tm.hidden_cell = stored
    params = jax.tree.map(np.array, variables["params"])
    params["linear"]["weight"][0, 0] = np.nan
    report = lstm_jax.compare_with_torch(tm, jm, {"params": params}, batch((3, 2)))
    assert not report.ok
    assert "FAIL" in str(report)
    assert tm.training
    assert tm.hidden_cell is stored
    assert all(p.grad is None for p in tm.parameters())


def test_precision_is_pinned_while_running_and_restored_after() -> None:
    settings = {
        "cuda.matmul": torch.backends.cuda.matmul,
        "cudnn.rnn": torch.backends.cudnn.rnn,
        "mkldnn.matmul": torch.backends.mkldnn.matmul,
        "mkldnn.rnn": torch.backends.mkldnn.rnn,
    }
    seen = {}

    class Recording(torch.nn.LSTM):
        def forward(self, *args, **kwargs):
            seen.update({name: s.fp32_precision for name, s in settings.items()})
            seen["jax"] = jax.config.jax_default_matmul_precision
            return super().forward(*args, **kwargs)

    torch.manual_seed(0)
    tl = Recording(2, 3)
    variables = lstm_jax.params_from_torch(tl.state_dict())
    saved = {name: s.fp32_precision for name, s in settings.items()}
    fast = {
        "cuda.matmul": "tf32",
        "cudnn.rnn": "tf32",
        "mkldnn.matmul": "bf16",
        "mkldnn.rnn": "bf16",
    }
    try:
        for name, value in fast.items():
            settings[name].fp32_precision = value
        with jax.default_matmul_precision("bfloat16"):
            report = lstm_jax.compare_with_torch(tl, lstm_jax.LSTM(3), variables, batch((4, 2)))
            assert jax.config.jax_default_matmul_precision == "bfloat16"
        assert {name: s.fp32_precision for name, s in settings.items()} == fast
    finally:
        for name, value in saved.items():
            settings[name].fp32_precision = value
    assert seen == {**dict.fromkeys(fast, "ieee"), "jax": "highest"}
    assert report.ok


def test_mismatched_arguments_are_refused_clearly() -> None:
    tm, jm, variables = modeler_pair()
    with pytest.raises(TypeError, match=r"torch\.nn\.LSTM with lstm_jax\.LSTM"):
        lstm_jax.compare_with_torch(tm, lstm_jax.LSTM(4), variables, batch((3, 2)))
    with pytest.raises(TypeError, match="dtype float32, got float64"):
        lstm_jax.compare_with_torch(tm, jm, variables, batch((3, 2), dtype=np.float64))
    other = lstm_jax.params_from_torch(lstm_torch.LSTMModeler(2, 5, 2).state_dict())
    with pytest.raises(ValueError, match=r"size mismatch for lstm\.weight_ih_l0"):
        lstm_jax.compare_with_torch(tm, jm, other, batch((3, 2)))
    with pytest.raises(ValueError, match="expected h_0 of shape"):
        state = (np.zeros((1, 5, 4), np.float32), np.zeros((1, 5, 4), np.float32))
        lstm_jax.compare_with_torch(tm, jm, variables, batch((3, 2, 2)), initial_state=state)
    mm = lstm_jax.nnx.LSTMModeler(2, 4, 2, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"holds its parameters.*without variables"):
        lstm_jax.compare_with_torch(tm, mm, variables, batch((3, 2)))


# --- python -m lstm_jax.check ---------------------------------------------------------------


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lstm_jax.check", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_check_command_on_a_torch_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "torch.safetensors"
    torch.manual_seed(0)
    lstm_torch.save_checkpoint(path, lstm_torch.LSTMModeler(2, 4, 1, bidirectional=True))
    result = run_check(str(path), "--seq-len", "5", "--batch", "3", "--seed", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LSTMModeler(input_size=2, hidden_layer_size=4, output_size=1" in result.stdout
    assert "(5, 3, 2)" in result.stdout  # the input it drew: (T, B, I)
    assert "grad lstm.weight_hh_l0_reverse" in result.stdout
    assert "result: OK" in result.stdout


@pytest.mark.slow
def test_check_command_on_a_jax_float64_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "jax.safetensors"
    model = lstm_jax.LSTM(3, batch_first=True, proj_size=1)
    with jax.enable_x64(True):
        variables = model.init(jax.random.key(0), np.zeros((1, 2, 2)))
        variables = jax.tree.map(lambda a: a.astype(np.float64), variables)
        lstm_jax.save_checkpoint(path, variables, model.clone(param_dtype=np.float64))
    result = run_check(str(path), "--seq-len", "3", "--batch", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LSTM(input_size=2, hidden_size=3" in result.stdout
    assert "float64" in result.stdout
    assert "(2, 3, 2)" in result.stdout  # batch_first: (B, T, I)
    assert "result: OK" in result.stdout


@pytest.mark.slow
def test_check_command_on_a_bad_file_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    result = run_check(str(path))
    assert result.returncode == 2
    assert f"lstm_jax.check: error: {path}: not a readable safetensors file" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_command_exits_1_beyond_tolerance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "m.safetensors"
    torch.manual_seed(0)
    lstm_torch.save_checkpoint(path, torch.nn.LSTM(2, 3))
    compare = lstm_jax.compare_with_torch

    def with_a_wrong_weight(torch_model, jax_model, variables, x, **kwargs):
        params = jax.tree.map(np.array, variables["params"])
        params["bias_ih_l0"][0] += 0.1
        return compare(torch_model, jax_model, {"params": params}, x, **kwargs)

    monkeypatch.setattr(lstm_jax, "compare_with_torch", with_a_wrong_weight)
    assert lstm_jax.check.main([str(path), "--seq-len", "2"]) == 1
    assert "result: FAIL" in capsys.readouterr().out

    assert lstm_jax.check.main([str(tmp_path / "absent.safetensors")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_check_command_checks_an_lstm_cell_file(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An LSTMCell's file is checked one step against torch.nn.LSTMCell (it was refused
    as "a model of your own"); the torch cell float64 without biases, the JAX cell float32."""
    path = tmp_path / "cell.safetensors"
    if backend == "torch":
        torch.manual_seed(0)
        lstm_torch.save_checkpoint(path, torch.nn.LSTMCell(3, 4, bias=False).double())
        described = "LSTMCell(input_size=3, hidden_size=4, bias=False), float64"
    else:
        cell = lstm_jax.LSTMCell(4)
        lstm_jax.save_checkpoint(
            path, cell.init(jax.random.key(0), np.zeros((1, 3), np.float32)), cell
        )
        described = "LSTMCell(input_size=3, hidden_size=4, bias=True), float32"
    assert lstm_jax.check.main([str(path), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert described in out and "(2, 3)" in out  # the input it drew: (B, I)
    assert "grad weight_hh" in out and "result: OK" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch", "x"], "argument --batch: expected a positive integer, got 'x'"),
        (["--seed", "-1"], "argument --seed: expected a non-negative integer, got '-1'"),
    ],
)
def test_check_command_says_what_an_argument_expects(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    """Argparse's errors, not "invalid _positive_int value" or numpy's traceback."""
    with pytest.raises(SystemExit) as exit_:
        lstm_jax.check.main(["m.safetensors", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_check_command_says_an_input_too_large_for_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "m.safetensors"
    lstm_torch.save_checkpoint(path, torch.nn.LSTM(3, 2))
    assert lstm_jax.check.main([str(path), "--seq-len", "10000000000", "--batch", "99999"]) == 2
    assert "--seq-len 10000000000 and --batch 99999 does not fit in memory" in (
        capsys.readouterr().err
    )


def test_check_command_refuses_non_finite_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Both backends output NaN: the check cannot run (exit 2, naming the tensor), rather
    than a FAIL of every row that blames the port."""
    module = torch.nn.LSTM(2, 3)
    with torch.no_grad():
        module.weight_hh_l0[1, 2] = float("inf")
    path = tmp_path / "diverged.safetensors"
    lstm_torch.save_checkpoint(path, module)
    assert lstm_jax.check.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "non-finite parameters (NaN or inf) in weight_hh_l0 (1)" in err


def test_check_command_says_a_build_warning_once(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """torch and lstm_jax both warn on dropout with one layer: one line, not two warnings
    with their source lines."""
    path = tmp_path / "m.safetensors"
    with pytest.warns(UserWarning, match="dropout"):
        module = torch.nn.LSTM(2, 3, dropout=0.5)
    lstm_torch.save_checkpoint(path, module)
    assert lstm_jax.check.main([str(path), "--seq-len", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("dropout option adds dropout") == 1
    assert err.startswith("lstm_jax.check: warning: dropout option")

"""Where the mirror behaves as torch does for a new user (issue 11): ``hidden_cell=None``,
modules that enforce their own configuration, torch tensors as inputs, dropout's rng and
warning, pickled checkpoints, command-line help, and the README's carry snippet.

References are torch's own modules (``nn.LSTM(x, None)``, ``nn.LSTM`` on tensors) and the
numpy path of the same JAX call; errors must be ours (plain ValueError/TypeError naming
what was expected and what came), eagerly and under ``jax.jit``.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
import re
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from types import ModuleType

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch

import lstm_jax
import lstm_torch
from lstm_jax.common.tolerances import FORWARD, scaled_error

ROOT = Path(__file__).resolve().parents[1]
F32 = np.dtype(np.float32)
T, B = 5, 2
KEY = jax.random.key(0)


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def applies(model: nn.Module) -> list:
    """``model.apply`` eagerly and under ``jax.jit``."""
    return [model.apply, jax.jit(model.apply)]


# --- 1. hidden_cell None on the torch modeler -----------------------------------------------


@pytest.mark.parametrize(
    "options", [{}, {"num_layers": 2, "bidirectional": True}, {"proj_size": 2, "batch_first": True}]
)
def test_torch_hidden_cell_none_is_nn_lstm_with_none(options: dict) -> None:
    torch.manual_seed(0)
    model = lstm_torch.LSTMModeler(3, 4, 2, **options)
    x = torch.from_numpy(rand(T, B, 3))
    with torch.no_grad():
        model.hidden_cell = None
        got = model(x)
        out, (h_n, c_n) = model.lstm(x, None)  # the reference: nn.LSTM's own None
        time_major = out.transpose(0, 1) if options.get("batch_first") else out
        expected = model.linear(time_major[-1])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(model.hidden_cell[0], h_n, rtol=0, atol=0)  # stored, as forward does
    torch.testing.assert_close(model.hidden_cell[1], c_n, rtol=0, atol=0)


def test_torch_hidden_cell_none_for_one_sequence_and_float64() -> None:
    model = lstm_torch.LSTMModeler(1, 4, 1)
    model.hidden_cell = None
    model = model.double()  # converting the model keeps None
    assert model.hidden_cell is None
    x = torch.tensor([32.0, 37.0, 25.0], dtype=torch.float64)  # the lecture's 1-D input
    with torch.no_grad():
        got = model(x)
        expected = model.linear(model.lstm(x.view(3, 1, 1))[0][-1])[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert model.hidden_cell[0].dtype == torch.float64


def test_both_modelers_broadcast_a_stored_batch_of_one_which_nn_lstm_refuses() -> None:
    torch.manual_seed(0)
    model = lstm_torch.LSTMModeler(1, 4, 1, num_layers=2)
    x = torch.from_numpy(rand(T, 3, 1))  # a batch of 3
    stored = (torch.from_numpy(rand(2, 1, 4, seed=1)), torch.from_numpy(rand(2, 1, 4, seed=2)))
    with pytest.raises(RuntimeError, match="Expected hidden"):
        model.lstm(x, stored)  # plain nn.LSTM: the state's batch must be the input's
    with torch.no_grad():
        model.hidden_cell = stored
        got = model(x)
        expanded = tuple(t.expand(2, 3, 4).contiguous() for t in stored)
        expected = model.linear(model.lstm(x, expanded)[0][-1])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    jm = lstm_jax.LSTMModeler(1, 4, 1, num_layers=2)
    y, _ = jm.apply(lstm_jax.params_from_torch(model.state_dict()), x.numpy(), stored)
    assert scaled_error(np.asarray(y), expected.numpy()) <= FORWARD[F32]


# --- 2. the JAX modules enforce their configuration -----------------------------------------

MODELER = lstm_jax.LSTMModeler(3, 7, 2)  # 4H = 28
OTHER_CONFIGURATIONS = {
    # option: (other options, what the message must name, in order)
    "input size": (
        dict(input_size=4),
        (
            "size mismatch for lstm.weight_ih_l0: expected (28, 3), got (28, 4)",
            "input_size=4 (this module: 3)",
        ),
    ),
    "hidden size": (
        dict(hidden_layer_size=5),
        ("lstm.weight_ih_l0: expected (28, 3), got (20, 3)", "hidden_size=5 (this module: 7)"),
    ),
    "layers": (
        dict(num_layers=2),
        ("unexpected key(s):", "lstm.weight_ih_l1", "num_layers=2 (this module: 1)"),
    ),
    "directions": (
        dict(bidirectional=True),
        (
            "unexpected key(s):",
            "lstm.weight_ih_l0_reverse",
            "linear.weight: expected (2, 7), got (2, 14)",
        ),
    ),
    "projections": (
        dict(proj_size=3),
        (
            "unexpected key(s): lstm.weight_hr_l0",
            "lstm.weight_hh_l0: expected (28, 7), got (28, 3)",
        ),
    ),
    "bias": (
        dict(bias=False),
        ("missing key(s): lstm.bias_ih_l0, lstm.bias_hh_l0", "bias=False (this module: True)"),
    ),
    "output size": (
        dict(output_size=5),
        ("linear.weight: expected (2, 7), got (5, 7)", "output_size=5 (this module: 2)"),
    ),
}


def modeler_variables(**options: object) -> dict:
    kwargs = dict(input_size=3, hidden_layer_size=7, output_size=2) | options
    return lstm_jax.LSTMModeler(**kwargs).init(KEY, np.zeros((T, kwargs["input_size"]), F32))


def contains_in_order(message: str, parts: tuple[str, ...]) -> bool:
    position = 0
    for part in parts:
        position = message.find(part, position)
        if position < 0:
            return False
        position += len(part)
    return True


@pytest.mark.parametrize("case", list(OTHER_CONFIGURATIONS))
def test_modeler_refuses_variables_of_another_configuration(case: str) -> None:
    options, parts = OTHER_CONFIGURATIONS[case]
    variables = modeler_variables(**options)
    for apply in applies(MODELER):
        with pytest.raises(ValueError) as info:
            apply(variables, np.zeros((T, 3), F32))
        assert type(info.value) is ValueError
        message = str(info.value)
        assert message.startswith('Error(s) in LSTMModeler variables["params"]: '), message
        assert contains_in_order(message, parts), message


@pytest.mark.parametrize("case", list(OTHER_CONFIGURATIONS))
def test_module_of_another_configuration_refuses_the_plain_variables(case: str) -> None:
    """The other way round: the module has the option, the variables do not."""
    options, _ = OTHER_CONFIGURATIONS[case]
    kwargs = dict(input_size=3, hidden_layer_size=7, output_size=2) | options
    model = lstm_jax.LSTMModeler(**kwargs)
    x = np.zeros((T, kwargs["input_size"]), F32)
    for apply in applies(model):
        with pytest.raises(ValueError, match=re.escape('LSTMModeler variables["params"]')) as info:
            apply(modeler_variables(), x)
        assert type(info.value) is ValueError


@pytest.mark.parametrize(
    ("options", "parts"),
    [
        (dict(num_layers=2), ("unexpected key(s):", "weight_ih_l1", "num_layers=2 (this")),
        (dict(hidden_size=5), ("weight_hh_l0: expected (28, 7), got (20, 5)",)),
        (dict(bidirectional=True), ("unexpected key(s):", "weight_ih_l0_reverse")),
        (dict(proj_size=2), ("unexpected key(s): weight_hr_l0",)),
        (dict(bias=False), ("missing key(s): bias_ih_l0, bias_hh_l0",)),
    ],
)  # fmt: skip
def test_lstm_refuses_variables_of_another_configuration(options: dict, parts: tuple) -> None:
    kwargs = dict(hidden_size=7) | options
    variables = lstm_jax.LSTM(**kwargs).init(KEY, np.zeros((T, B, 3), F32))
    for apply in applies(lstm_jax.LSTM(7)):
        with pytest.raises(ValueError) as info:
            apply(variables, np.zeros((T, B, 3), F32))
        assert type(info.value) is ValueError
        assert str(info.value).startswith('Error(s) in LSTM variables["params"]: ')
        assert contains_in_order(str(info.value), parts), str(info.value)


def test_lstm_input_size_comes_from_its_variables() -> None:
    """lstm_jax.LSTM has no input_size: the variables' weight_ih_l0 fixes it, and an input
    of another feature size is named against it (as torch's nn.LSTM(4, 7) would)."""
    model = lstm_jax.LSTM(7)
    variables = model.init(KEY, np.zeros((T, B, 4), F32))
    for apply in applies(model):
        with pytest.raises(ValueError) as info:
            apply(variables, np.zeros((T, B, 3), F32))
        message = str(info.value)
        assert "input.size(-1) must be equal to input_size. Expected 4, got 3" in message
        assert "input_size from the variables' weight_ih_l0 of shape (28, 4)" in message


@pytest.mark.parametrize(
    ("x", "got"),
    [(np.zeros((T, 4), F32), 4), (np.zeros((T, B, 4), F32), 4), (np.zeros(T, F32), 1)],
    ids=["2-D", "3-D", "1-D"],
)
def test_modeler_init_checks_the_input_against_input_size(x: np.ndarray, got: int) -> None:
    for init in (MODELER.init, jax.jit(MODELER.init)):
        with pytest.raises(ValueError) as info:
            init(KEY, x)
        message = str(info.value)
        assert f"input_size. Expected 3, got {got}" in message, message
        assert message.startswith("LSTMModeler: "), message


@pytest.mark.parametrize("model", [MODELER, lstm_jax.LSTM(7)], ids=["LSTMModeler", "LSTM"])
def test_variables_without_or_with_a_double_params_wrapper(model: nn.Module) -> None:
    x = np.zeros((T, B, 3), F32)
    variables = model.init(KEY, x)
    who = type(model).__name__
    for apply in applies(model):
        with pytest.raises(ValueError, match=re.escape('pass {"params": params}')) as info:
            apply(variables["params"], x)
        assert str(info.value).startswith(f'{who}.apply: expected variables of the form {{"params"')
        with pytest.raises(ValueError, match=re.escape('wrapped twice ({"params": {"params"')):
            apply({"params": variables}, x)
    with pytest.raises(TypeError, match="expected variables as a mapping"):
        model.apply([variables], x)


def test_a_submodule_of_a_users_model_checks_its_variables() -> None:
    """Inside any Flax model the LSTM checks its own subtree before Flax reads it."""

    class Encoder(nn.Module):
        hidden: int

        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            return nn.Dense(1)(lstm_jax.LSTM(self.hidden, name="rnn")(x)[0])

    x = np.zeros((T, B, 3), F32)
    small = Encoder(4).init(KEY, x)
    variables = {"params": {**small["params"], "rnn": Encoder(5).init(KEY, x)["params"]["rnn"]}}
    with pytest.raises(ValueError, match=re.escape("weight_hh_l0: expected (16, 4), got (20, 5)")):
        Encoder(4).apply(variables, x)


# --- 3. CPU torch tensors as inputs -------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bidirectional": True, "proj_size": 2}])
def test_lstm_on_torch_tensors_matches_nn_lstm(options: dict) -> None:
    torch.manual_seed(0)
    reference = torch.nn.LSTM(3, 4, **options)
    variables = lstm_jax.params_from_torch(reference.state_dict())
    model = lstm_jax.LSTM(4, **options)
    d_l = (2 if options.get("bidirectional") else 1) * options.get("num_layers", 1)
    x = torch.from_numpy(rand(T, B, 3)).requires_grad_(True)  # a tensor with grad, too
    h0 = torch.from_numpy(rand(d_l, B, options.get("proj_size") or 4, seed=1))
    c0 = torch.from_numpy(rand(d_l, B, 4, seed=2))
    out, (h_n, c_n) = model.apply(variables, x, (h0, c0))
    with torch.no_grad():
        ref_out, (ref_h, ref_c) = reference(x, (h0, c0))
    for got, ref in ((out, ref_out), (h_n, ref_h), (c_n, ref_c)):
        assert scaled_error(np.asarray(got), ref.numpy()) <= FORWARD[F32]


def test_torch_tensors_give_what_their_numpy_gives() -> None:
    model = lstm_jax.LSTM(4, batch_first=True)
    x = rand(B, T, 3)
    variables = model.init(KEY, x)
    state = lstm_jax.LSTMState(rand(1, B, 4, seed=1), rand(1, B, 4, seed=2))
    tensor_state = lstm_jax.LSTMState(*(torch.from_numpy(a) for a in state))
    lengths = np.array([5, 2])
    expected = model.apply(variables, x, state, seq_lengths=lengths)
    got = model.apply(
        variables, torch.from_numpy(x), tensor_state, seq_lengths=torch.from_numpy(lengths)
    )
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    modeler = lstm_jax.LSTMModeler(1, 4, 1)
    v = modeler.init(KEY, np.zeros(3, F32))
    sequence = np.array([32.0, 37.0, 25.0], np.float32)
    np.testing.assert_array_equal(
        modeler.apply(v, torch.from_numpy(sequence))[0], modeler.apply(v, sequence)[0]
    )
    torch_model = lstm_torch.LSTMModeler(1, 4, 1)
    stored = torch_model.zero_hidden_cell(1)  # the torch model's hidden_cell as it stores it
    np.testing.assert_array_equal(
        modeler.apply(v, sequence, stored)[0], modeler.apply(v, sequence)[0]
    )


@pytest.mark.parametrize("where", ["input", "h_0", "seq_lengths"])
def test_a_torch_tensor_off_the_cpu_is_refused_clearly(where: str) -> None:
    """A CUDA tensor (the meta device stands in for one on a CPU-only machine)."""
    model = lstm_jax.LSTM(4)
    x = np.zeros((T, B, 3), F32)
    variables = model.init(KEY, x)
    meta = {
        "input": torch.zeros(T, B, 3, device="meta"),
        "h_0": torch.zeros(1, B, 4, device="meta"),
        "seq_lengths": torch.zeros(B, dtype=torch.int64, device="meta"),
    }[where]
    args = {
        "input": (meta, None, None),
        "h_0": (x, (meta, np.zeros((1, B, 4), F32)), None),
        "seq_lengths": (x, None, meta),
    }[where]
    with pytest.raises(ValueError) as info:
        model.apply(variables, args[0], args[1], seq_lengths=args[2])
    assert type(info.value) is ValueError
    assert f"LSTM: expected {where} as an array or a CPU torch tensor" in str(info.value)
    assert "on device meta" in str(info.value) and f"{where}.cpu()" in str(info.value)


def test_a_packed_sequence_is_refused_with_what_to_pass_instead() -> None:
    """A torch PackedSequence (linen and NNX modules) or a tensor off the CPU (NNX) gets
    a clear error, not numpy's "inhomogeneous shape" or a silent copy."""
    from flax import nnx
    from torch.nn.utils.rnn import pack_padded_sequence

    x = torch.zeros(T, B, 3)
    packed = pack_padded_sequence(x, torch.full((B,), T), enforce_sorted=False)
    model = lstm_jax.LSTM(4)
    variables = model.init(KEY, np.zeros((T, B, 3), F32))
    match = r"LSTM: expected input as a padded array, got a torch PackedSequence.*seq_lengths="
    with pytest.raises(TypeError, match=match):
        model.apply(variables, packed)
    with pytest.raises(TypeError, match=match):
        lstm_jax.nnx.LSTM(3, 4, rngs=nnx.Rngs(0))(packed)
    with pytest.raises(TypeError, match="LSTMModeler: expected input as a padded array"):
        lstm_jax.nnx.LSTMModeler(3, 4, 1, rngs=nnx.Rngs(0))(packed)
    with pytest.raises(ValueError, match="LSTM: expected input as an array or a CPU torch"):
        lstm_jax.nnx.LSTM(3, 4, rngs=nnx.Rngs(0))(torch.zeros(T, B, 3, device="meta"))


# --- 4. dropout: the rng and the one-layer warning -----------------------------------------


@pytest.mark.parametrize("who", ["LSTM", "LSTMModeler"])
def test_training_mode_without_a_dropout_rng_says_how_to_pass_one(who: str) -> None:
    if who == "LSTM":
        model: nn.Module = lstm_jax.LSTM(4, num_layers=2, dropout=0.5)
    else:
        model = lstm_jax.LSTMModeler(3, 4, 1, num_layers=2, dropout=0.5)
    x = np.ones((T, B, 3), F32)
    variables = model.init(KEY, x)

    def train(v: dict, x: np.ndarray, **rngs: jax.Array) -> object:
        return model.apply(v, x, deterministic=False, rngs=rngs or None)

    for run in (train, jax.jit(train)):
        with pytest.raises(ValueError) as info:
            run(variables, x)
        assert type(info.value) is ValueError
        message = str(info.value)
        assert message.startswith(f"{who}: deterministic=False with dropout=0.5"), message
        assert 'pass rngs={"dropout": key} to apply' in message
    a, b = (train(variables, x, dropout=jax.random.key(s))[0] for s in (1, 2))
    assert not np.allclose(a, b)  # with the key given, dropout acts
    no_dropout = lstm_jax.LSTM(4, num_layers=2)  # nothing to drop: no key needed, as torch
    no_dropout.apply(no_dropout.init(KEY, x), x, deterministic=False)


def dropout_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [
        w
        for w in caught
        if issubclass(w.category, UserWarning)
        and "non-zero dropout expects num_layers greater than 1" in str(w.message)
    ]


def test_one_layer_dropout_warns_once_at_construction() -> None:
    x = np.zeros((T, B, 3), F32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reference = torch.nn.LSTM(3, 4, dropout=0.5)  # torch's own warning, for comparison
        torch_warning = dropout_warnings(caught)
        caught.clear()
        model = lstm_jax.LSTM(4, dropout=0.5)
        assert [str(w.message) for w in dropout_warnings(caught)] == [
            str(w.message) for w in torch_warning
        ]
        assert dropout_warnings(caught)[0].filename == __file__  # points at the user's line
        variables = model.init(KEY, x)
        for _ in range(2):  # neither clones nor (jitted) calls warn again
            model.apply(variables, x, deterministic=False)
            jax.jit(model.apply)(variables, x)
            model.clone()
        assert len(dropout_warnings(caught)) == 1
        modeler = lstm_jax.LSTMModeler(3, 4, 1, dropout=0.5)  # once, not again for its LSTM
        modeler.apply(modeler.init(KEY, x), x)
        assert len(dropout_warnings(caught)) == 2
        lstm_jax.LSTM(4, num_layers=2, dropout=0.5)  # dropout applies: no warning
        lstm_jax.LSTMModeler(3, 4, 1, dropout=0.0)
        assert len(dropout_warnings(caught)) == 2
    del reference


def test_one_layer_dropout_inside_a_users_model_warns_at_init_only() -> None:
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            return lstm_jax.LSTM(4, dropout=0.5)(x)[0]  # rebuilt on every call

    x = np.zeros((T, B, 3), F32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        variables = Model().init(KEY, x)
        Model().apply(variables, x)
        Model().apply(variables, x)
    assert len(dropout_warnings(caught)) == 1


# --- 5. pickled checkpoints ------------------------------------------------------------------


class RunsCode:
    """A pickle that would create ``marker`` if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def pickles(tmp_path: Path) -> dict[str, Path]:
    model = lstm_torch.LSTMModeler(1, 4, 1)
    files = {
        "state_dict.pt": lambda p: torch.save(model.state_dict(), p),
        "model.pt": lambda p: torch.save(model, p),
        "legacy.pt": lambda p: torch.save(
            model.state_dict(), p, _use_new_zipfile_serialization=False
        ),
        "runs_code.pkl": lambda p: p.write_bytes(
            pickle.dumps({"x": RunsCode(tmp_path / "ran")}, protocol=4)
        ),
        "runs_code.pt": lambda p: torch.save({"x": RunsCode(tmp_path / "ran")}, p),
    }
    paths = {}
    for name, write in files.items():
        write(tmp_path / name)
        paths[name] = tmp_path / name
    return paths


@pytest.mark.parametrize(
    "load",
    [lstm_torch.load_checkpoint, lambda p: lstm_jax.load_checkpoint(p)],
    ids=["lstm_torch", "lstm_jax"],
)
def test_a_pickle_is_recognised_and_never_unpickled(tmp_path: Path, load) -> None:
    for name, path in pickles(tmp_path).items():
        with pytest.raises(lstm_jax.CheckpointError) as info:
            load(path)
        message = str(info.value)
        kind = "a pickle file" if name in ("legacy.pt", "runs_code.pkl") else "a torch.save file"
        assert message.startswith(f"{path}: {kind}"), message
        for part in (
            "It was not loaded: unpickling can run arbitrary code",
            "torch.load(path, weights_only=True)",
            'lstm_torch.save_checkpoint("model.safetensors", model)',
        ):
            assert part in message, message
    assert not (tmp_path / "ran").exists(), "a pickle was unpickled"


def test_checkpoint_errors_name_the_package_the_user_called(tmp_path: Path) -> None:
    path = pickles(tmp_path)["state_dict.pt"]
    for load, name in (
        (lstm_torch.load_checkpoint, "lstm_torch.CheckpointError"),
        (lstm_jax.load_checkpoint, "lstm_jax.CheckpointError"),
    ):
        with pytest.raises(lstm_jax.CheckpointError) as info:
            load(path)
        last_line = traceback.format_exception(info.value)[-1]
        assert last_line.startswith(f"{name}: {path}: a torch.save file"), last_line
        assert isinstance(info.value, ValueError)
    assert issubclass(lstm_torch.CheckpointError, lstm_jax.CheckpointError)  # one except


def test_other_files_are_not_taken_for_pickles(tmp_path: Path) -> None:
    npz, junk = tmp_path / "arrays.npz", tmp_path / "junk.bin"
    np.savez(npz, a=np.zeros(2))  # a zip archive without a pickle inside
    junk.write_bytes(b"\x80\x09 not a pickle protocol")
    for path in (npz, junk):
        with pytest.raises(lstm_jax.CheckpointError, match="not a readable safetensors file"):
            lstm_torch.load_checkpoint(path)


@pytest.mark.slow
def test_the_check_cli_says_so_for_a_pickle(tmp_path: Path) -> None:
    path = pickles(tmp_path)["model.pt"]
    result = subprocess.run(
        [sys.executable, "-m", "lstm_jax.check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "unpickling can run arbitrary code" in result.stderr


# --- 7. command-line help ---------------------------------------------------------------------


def help_entries(text: str) -> dict[str, str]:
    """``--option``: its help text (whitespace joined) from argparse's options section."""
    section = text.split("options:", 1)[1].split("\n\n", 1)[0]
    entries: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        match = re.match(r"^  (-\w, )?(--[\w-]+)", line)
        if match:
            current = match[2]
            entries[current] = line
        elif current:
            entries[current] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in entries.items() if k != "--help"}


def run_help(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, *command, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_check_cli_help_shows_every_default() -> None:
    entries = help_entries(run_help("-m", "lstm_jax.check"))
    assert set(entries) == {"--seq-len", "--batch", "--nonlinearity", "--seed"}
    assert "(default: 8)" in entries["--seq-len"] and "(default: 2)" in entries["--batch"]
    assert "(default: 0)" in entries["--seed"] and "(default: tanh)" in entries["--nonlinearity"]


@functools.cache
def benchmark_module() -> ModuleType:
    """benchmarks/jit_benchmark.py as a module (its folder on sys.path for ``report``)."""
    path = ROOT / "benchmarks" / "jit_benchmark.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("jit_benchmark_for_help", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_help_shows_every_default_and_the_shapes() -> None:
    text = run_help("benchmarks/jit_benchmark.py")
    entries = help_entries(text)
    assert {"--shapes", "--repeats", "--out", "--layers", "--device"} <= set(entries)
    for option, entry in entries.items():
        assert re.search(r"\bdefault\b", entry), f"{option} shows no default: {entry}"
    assert "(default: 7)" in entries["--repeats"] and "(default: [1, 2])" in entries["--layers"]
    bench = benchmark_module()
    for name, (t, b, i, h) in bench.SHAPES.items():
        assert re.search(rf"^  {name} +T={t} +B={b} +I={i} +H={h}", text, re.M), text


@pytest.mark.slow
def test_benchmark_default_output_spares_the_committed_results() -> None:
    bench = benchmark_module()
    committed = ROOT / "benchmarks" / "jit_benchmark_cpu.json"
    default = bench.default_out("cpu")
    assert default != committed and default.parent == ROOT / "out"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", str(default.relative_to(ROOT))],
        cwd=ROOT,
        timeout=30,
    )
    assert ignored.returncode == 0, f"{default} is not git-ignored"


# --- 8. the README ------------------------------------------------------------------------------


CARRY_GUIDE = ROOT / "docs" / "guides" / "carry-and-streaming.md"


def doc_block(page: Path, after: str) -> str:
    """The first ```python block after the line ``after`` in a documentation page."""
    text = page.read_text()
    rest = text[text.index(after) :]
    return rest.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_docs_carry_snippet_runs_and_matches_torch() -> None:
    """The carry guide's two snippets (carried across calls; a stored state broadcast to a
    batch), run as written, against torch."""
    ns: dict = {}
    exec(doc_block(CARRY_GUIDE, "## Carrying the state across calls"), ns)  # the page's code
    exec(doc_block(CARRY_GUIDE, "## A stored state and a batch"), ns)
    for jax_y, torch_y in (("y1", "t1"), ("y2", "t2"), ("yb", "tb")):
        assert scaled_error(np.asarray(ns[jax_y]), ns[torch_y].numpy()) <= FORWARD[F32]
    assert np.asarray(ns["yb"]).shape == (4, 1)
    fresh, _ = ns["jm"].apply(ns["variables"], ns["then"])  # the carry changes the answer
    assert not np.allclose(fresh, ns["y2"])


def test_readme_states_how_long_the_tests_take() -> None:
    quick_start = (ROOT / "README.md").read_text().split("## A short tour")[0]
    assert re.search(r"about \d+[–-]\d+ minutes on 2 CPU cores", quick_start)

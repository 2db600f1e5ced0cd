"""Checkpoints of models of one's own: torch's keys in the file (a plain
``load_state_dict(safetensors.torch.load_file(path), strict=True)`` reads it), bitwise
round trips across the backends, tied weights stored once and restored."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
import user_models as um
from test_transfer import assert_bitwise_equal

import lstm_jax
import lstm_torch
from lstm_jax.common.checkpoint_format import CheckpointError
from lstm_jax.interop.transfer import flatten

TIES = {"decoder.weight": "encoder.weight"}


def metadata_and_keys(path: Path) -> tuple[dict, list[str]]:
    with safetensors.safe_open(path, framework="np") as file:
        return file.metadata(), list(file.keys())


@pytest.mark.parametrize("kind", ["lm", "sentiment", "conv"])
def test_untied_models_round_trip_through_both_backends(kind: str, tmp_path: Path) -> None:
    tm, jm, args = um.torch_model(kind), um.flax_model(kind), um.example(kind)
    from_torch = tmp_path / "torch.safetensors"
    lstm_torch.save_checkpoint(from_torch, tm)
    meta, keys = metadata_and_keys(from_torch)
    assert (meta["kind"], meta["model_class"], json.loads(meta["tied"])) == (
        "model",
        type(tm).__name__,
        {},
    )
    assert sorted(keys) == sorted(tm.state_dict())

    plain = um.torch_model(kind, seed=9)  # torch alone reads the file
    plain.load_state_dict(safetensors.torch.load_file(from_torch), strict=True)
    assert_bitwise_equal(plain.state_dict(), tm.state_dict(), ordered=False)

    model, variables = lstm_jax.load_checkpoint(from_torch, jm, example=args)
    assert model is jm
    expected = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=args)
    assert_bitwise_equal(flatten(variables["params"]), flatten(expected["params"]), ordered=False)

    from_jax = tmp_path / "jax.safetensors"
    lstm_jax.save_checkpoint(from_jax, variables, jm)
    loaded = lstm_torch.load_checkpoint(from_jax, um.torch_model(kind, seed=8))
    assert_bitwise_equal(loaded.state_dict(), tm.state_dict(), ordered=False)
    plain = um.torch_model(kind, seed=7)
    plain.load_state_dict(safetensors.torch.load_file(from_jax), strict=True)
    assert_bitwise_equal(plain.state_dict(), tm.state_dict(), ordered=False)


def test_tied_weights_are_stored_once_and_restored(tmp_path: Path) -> None:
    tm, jm, args = um.torch_model("lm-tied"), um.flax_model("lm-tied"), um.example("lm-tied")
    from_torch = tmp_path / "torch.safetensors"
    lstm_torch.save_checkpoint(from_torch, tm)
    meta, keys = metadata_and_keys(from_torch)
    assert json.loads(meta["tied"]) == TIES
    assert "decoder.weight" not in keys and "encoder.weight" in keys
    assert len(keys) == len(tm.state_dict()) - 1

    restored = lstm_torch.load_checkpoint(from_torch, um.torch_model("lm-tied", seed=5))
    assert restored.decoder.weight is restored.encoder.weight
    assert_bitwise_equal(restored.state_dict(), tm.state_dict(), ordered=False)
    # safetensors' own loader for shared tensors reads the file too
    other = um.torch_model("lm-tied", seed=6)
    assert safetensors.torch.load_model(other, from_torch, strict=True) == (set(), [])
    assert_bitwise_equal(other.state_dict(), tm.state_dict(), ordered=False)

    _, variables = lstm_jax.load_checkpoint(from_torch, jm, example=args)
    assert "decoder" in variables["params"] and "kernel" not in variables["params"]["decoder"]
    from_jax = tmp_path / "jax.safetensors"
    lstm_jax.save_checkpoint(from_jax, variables, jm, tied=TIES)
    assert json.loads(metadata_and_keys(from_jax)[0]["tied"]) == TIES
    back = lstm_torch.load_checkpoint(from_jax, um.torch_model("lm-tied", seed=4))
    assert back.decoder.weight is back.encoder.weight
    assert_bitwise_equal(back.state_dict(), tm.state_dict(), ordered=False)
    # an untied Flax mirror holds both keys: it loads the tied file too
    _, both = lstm_jax.load_checkpoint(from_torch, um.flax_model("lm"), example=args)
    np.testing.assert_array_equal(both["params"]["decoder"]["kernel"].T, tm.decoder.weight.detach())


def test_float64_model(tmp_path: Path) -> None:
    tm = um.torch_model("conv", dtype=torch.float64)
    path = tmp_path / "f64.safetensors"
    lstm_torch.save_checkpoint(path, tm)
    args = um.example("conv", np.float64)
    with jax.enable_x64(False), pytest.raises(ValueError, match=r"float64.*32-bit"):
        lstm_jax.load_checkpoint(path, um.flax_model("conv"), example=args)
    with jax.enable_x64(True):
        _, variables = lstm_jax.load_checkpoint(path, um.flax_model("conv"), example=args)
        assert variables["params"]["conv"]["kernel"].dtype == np.float64
        lstm_jax.save_checkpoint(tmp_path / "back.safetensors", variables, um.flax_model("conv"))
    back = lstm_torch.load_checkpoint(
        tmp_path / "back.safetensors", um.torch_model("conv", dtype=torch.float64)
    )
    assert_bitwise_equal(back.state_dict(), tm.state_dict(), ordered=False)
    with pytest.raises(CheckpointError, match="dtype: float64 vs float32"):
        lstm_torch.load_checkpoint(path, um.torch_model("conv"))


def test_what_cannot_be_loaded_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "lm.safetensors"
    lstm_torch.save_checkpoint(path, um.torch_model("lm"))
    with pytest.raises(CheckpointError, match=r"holds a model of your own \(WordLM\)"):
        lstm_jax.load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"holds a model of your own \(WordLM\)"):
        lstm_torch.load_checkpoint(path)
    with pytest.raises(ValueError, match=r"unexpected key\(s\): decoder\.weight"):
        lstm_jax.load_checkpoint(path, um.flax_model("lm-tied"), example=um.example("lm"))
    other = um.torch_model("sentiment")
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(lstm_torch.CheckpointError, match=r"decoder\.weight"):
        lstm_torch.load_checkpoint(path, other)
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())  # untouched
    smaller = torch.nn.ModuleDict({"rnn": torch.nn.LSTM(um.EMBED, um.HIDDEN + 1)})
    with pytest.raises(lstm_torch.CheckpointError, match=r"size mismatch for rnn\.weight_ih_l0"):
        lstm_torch.load_checkpoint(path, smaller)
    with pytest.raises(CheckpointError, match="kind: model vs LSTM"):
        lstm_jax.load_checkpoint(path, lstm_jax.LSTM(4))
    builtin = tmp_path / "lstm.safetensors"
    lstm_torch.save_checkpoint(builtin, torch.nn.LSTM(2, 3))
    with pytest.raises(CheckpointError, match="kind: LSTM vs model"):
        lstm_torch.load_checkpoint(builtin, um.torch_model("lm"))
    assert metadata_and_keys(builtin)[0]["kind"] == "LSTM"  # built-ins keep their metadata

    class HoldsGRU(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(2, 3)

    # a GRU is mirrored since issue 21: stored as a model of one's own, loaded strictly
    saved = HoldsGRU()
    lstm_torch.save_checkpoint(tmp_path / "gru.safetensors", saved)
    loaded = lstm_torch.load_checkpoint(tmp_path / "gru.safetensors", HoldsGRU())
    for key, value in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


@pytest.mark.slow
def test_check_command_says_a_model_of_ones_own_is_checked_from_python(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "lm.safetensors"
    lstm_torch.save_checkpoint(path, um.torch_model("lm"))
    result = subprocess.run(
        [sys.executable, "-m", "lstm_jax.check", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "holds a model of your own (WordLM)" in result.stderr
    assert "compare_with_torch" in result.stderr and "Traceback" not in result.stderr


def test_lstm_cell_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(3, 4)
    path = tmp_path / "cell.safetensors"
    lstm_torch.save_checkpoint(path, cell)
    model, variables = lstm_jax.load_checkpoint(path, lstm_jax.LSTMCell(4))
    assert_bitwise_equal(lstm_jax.params_to_torch(variables), cell.state_dict(), ordered=False)
    lstm_jax.save_checkpoint(tmp_path / "back.safetensors", variables, model)
    back = lstm_torch.load_checkpoint(tmp_path / "back.safetensors", torch.nn.LSTMCell(3, 4))
    assert_bitwise_equal(back.state_dict(), cell.state_dict(), ordered=False)


def test_a_torch_model_that_ties_keys_itself_loads_files_with_one_or_both(tmp_path: Path) -> None:
    """The tied Flax mirror saved without ``tied=`` holds encoder.weight alone: the tied
    torch model shares it anyway (before: missing key decoder.weight). Both keys with
    different values (an untied model's file) are refused: torch would copy both into
    the one tensor and keep the last."""
    tm, args = um.torch_model("lm-tied"), um.example("lm")
    jm = um.flax_model("lm-tied")
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=args)
    once = tmp_path / "once.safetensors"
    lstm_jax.save_checkpoint(once, variables, jm)
    assert "decoder.weight" not in metadata_and_keys(once)[1]
    back = lstm_torch.load_checkpoint(once, um.torch_model("lm-tied", seed=4))
    assert back.decoder.weight is back.encoder.weight
    assert_bitwise_equal(back.state_dict(), tm.state_dict(), ordered=False)

    untied = tmp_path / "untied.safetensors"
    lstm_torch.save_checkpoint(untied, um.torch_model("lm"))  # decoder != encoder
    target = um.torch_model("lm-tied", seed=4)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(
        lstm_torch.CheckpointError, match=r"ties decoder\.weight and encoder\.weight"
    ):
        lstm_torch.load_checkpoint(untied, target)
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())


def test_variables_that_do_not_fit_are_not_saved(tmp_path: Path) -> None:
    """With ``example`` the variables are checked against the model before anything is
    written (before: a wrong-shaped leaf was written under its torch key); a file
    already there is left as it was."""
    tm, jm, args = um.torch_model("lm"), um.flax_model("lm"), um.example("lm")
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=args)
    path = tmp_path / "lm.safetensors"
    lstm_jax.save_checkpoint(path, variables, jm, example=args)
    saved = path.read_bytes()
    params = jax.tree.map(np.asarray, variables["params"])
    narrow = {**params, "decoder": {**params["decoder"], "bias": params["decoder"]["bias"][:3]}}
    with pytest.raises(ValueError, match=r"size mismatch for decoder/bias"):
        lstm_jax.save_checkpoint(path, {"params": narrow}, jm, example=args)
    with pytest.raises(TypeError, match=r"got the class FlaxWordLM"):
        lstm_jax.save_checkpoint(path, variables, um.FlaxWordLM)
    assert path.read_bytes() == saved


@pytest.mark.parametrize("bias", [True, False])
def test_an_lstm_cell_file_loads_without_a_model(tmp_path: Path, bias: bool) -> None:
    """Its keys give the cell, as a built-in's metadata gives it (before: "holds a model
    of your own (LSTMCell): pass its Flax mirror and example")."""
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(3, 4, bias=bias)
    path = tmp_path / "cell.safetensors"
    lstm_torch.save_checkpoint(path, cell)
    model, variables = lstm_jax.load_checkpoint(path)
    assert isinstance(model, lstm_jax.LSTMCell) and (model.hidden_size, model.bias) == (4, bias)
    assert_bitwise_equal(lstm_jax.params_to_torch(variables), cell.state_dict(), ordered=False)
    back = tmp_path / "back.safetensors"
    lstm_jax.save_checkpoint(back, variables, model)
    rebuilt = lstm_torch.load_checkpoint(back)
    assert isinstance(rebuilt, torch.nn.LSTMCell) and rebuilt.bias == bias
    assert (rebuilt.input_size, rebuilt.hidden_size) == (3, 4)
    assert_bitwise_equal(rebuilt.state_dict(), cell.state_dict(), ordered=False)

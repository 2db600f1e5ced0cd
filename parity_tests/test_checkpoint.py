"""Checkpoints: one safetensors format for both backends, with torch's key names.

The reference throughout is the torch model's own ``state_dict``: every file,
whichever side wrote it, must give back exactly those tensors (bitwise, same
dtype) to torch, to JAX and to a plain ``load_state_dict``; every damaged or
foreign file must be refused with a ``CheckpointError`` naming the file, and a
failed save must leave an existing file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

import lstm_jax
import lstm_torch
from lstm_jax.common import checkpoint_format as fmt
from lstm_jax.common.checkpoint_format import CheckpointError
from lstm_jax.interop.transfer import flatten

# (kind, options): the lecture's model, a bare LSTM, and every option away from its default.
MODELS = {
    "modeler-lecture": ("LSTMModeler", dict(input_size=1, hidden_layer_size=4, output_size=1)),
    "lstm-plain": ("LSTM", dict(input_size=3, hidden_size=4)),
    "modeler-all-options": (
        "LSTMModeler",
        dict(
            input_size=3,
            hidden_layer_size=5,
            output_size=2,
            num_layers=2,
            bias=False,
            batch_first=True,
            dropout=0.25,
            bidirectional=True,
            proj_size=2,
        ),
    ),
    "lstm-all-options": (
        "LSTM",
        dict(
            input_size=2,
            hidden_size=5,
            num_layers=2,
            bias=True,
            batch_first=True,
            dropout=0.5,
            bidirectional=True,
            proj_size=3,
        ),
    ),
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEFAULTS = dict(
    num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False, proj_size=0
)


def torch_model(name: str, dtype: str = "float32", seed: int = 0) -> torch.nn.Module:
    kind, options = MODELS[name]
    torch.manual_seed(seed)
    if kind == "LSTM":
        model = torch.nn.LSTM(**options)
    else:
        model = lstm_torch.LSTMModeler(**options)
    model = model.to(DTYPES[dtype])
    if kind == "LSTMModeler":
        model.hidden_cell = model.zero_hidden_cell()
    return model


def jax_model(name: str) -> lstm_jax.LSTM | lstm_jax.LSTMModeler:
    kind, options = MODELS[name]
    if kind == "LSTM":
        options = {k: v for k, v in options.items() if k != "input_size"}
        return lstm_jax.LSTM(**options)
    return lstm_jax.LSTMModeler(**options)


def x64_if(dtype: str) -> contextlib.AbstractContextManager:
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def reference(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def assert_bitwise(got: dict, expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)  # torch's keys, no more, no fewer
    for key, value in got.items():
        array = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        assert array.dtype == expected[key].dtype, key
        assert array.shape == expected[key].shape, key
        assert array.tobytes() == expected[key].tobytes(), key


def torch_options(model: torch.nn.Module) -> dict:
    return lstm_torch.checkpoint.model_header(model).options


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_round_trips_are_bitwise_across_backends(name: str, dtype: str, tmp_path: Path) -> None:
    kind, options = MODELS[name]
    original = torch_model(name, dtype)
    expected = reference(original)
    from_torch, from_jax = tmp_path / "torch.safetensors", tmp_path / "jax.safetensors"

    lstm_torch.save_checkpoint(from_torch, original)
    with x64_if(dtype):
        model, variables = lstm_jax.load_checkpoint(from_torch)
        assert_bitwise(flatten(variables["params"]), expected)
        lstm_jax.save_checkpoint(from_jax, variables, model)
        _, again = lstm_jax.load_checkpoint(from_jax)
        assert_bitwise(flatten(again["params"]), expected)

    for path in (from_torch, from_jax):
        loaded = lstm_torch.load_checkpoint(path)
        assert type(loaded) is type(original)
        assert torch_options(loaded) == {**DEFAULTS, **options}
        assert_bitwise(loaded.state_dict(), expected)
        # A plain torch module takes the file as is: torch's keys, nothing else.
        plain = torch_model(name, dtype, seed=1)
        plain.load_state_dict(safetensors.torch.load_file(path), strict=True)
        assert_bitwise(plain.state_dict(), expected)

    assert type(model).__name__ == kind
    assert model.param_dtype == np.dtype(dtype)


def test_loaded_jax_model_has_the_files_options(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    lstm_torch.save_checkpoint(path, torch_model("modeler-all-options"))
    model, _ = lstm_jax.load_checkpoint(path)
    expected = lstm_jax.LSTMModeler(**MODELS["modeler-all-options"][1])
    assert model == expected

    lstm_torch.save_checkpoint(path, torch_model("lstm-all-options"))
    model, variables = lstm_jax.load_checkpoint(path)
    assert model == jax_model("lstm-all-options")
    assert variables["params"]["weight_ih_l0"].shape == (20, 2)


def test_metadata_records_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    model = torch_model("modeler-all-options", "float64")
    lstm_torch.save_checkpoint(path, model)
    with safetensors.safe_open(path, framework="np") as file:
        meta = file.metadata()
        keys = list(file.keys())
    assert sorted(keys) == sorted(model.state_dict())
    assert meta["format"] == "lstm-jax.checkpoint"
    assert meta["format_version"] == "1"
    assert meta["kind"] == "LSTMModeler"
    assert json.loads(meta["config"]) == MODELS["modeler-all-options"][1]
    assert meta["dtype"] == "float64"
    assert meta["lstm_jax_version"] == lstm_jax.__version__


def test_file_builds_a_working_torch_modeler(tmp_path: Path) -> None:
    # A float64 LSTMModeler built from a file runs at once (its hidden_cell follows the dtype).
    path = tmp_path / "m.safetensors"
    original = torch_model("modeler-lecture", "float64")
    lstm_torch.save_checkpoint(path, original)
    loaded = lstm_torch.load_checkpoint(path)
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    assert torch.equal(loaded(x), original(x))


def test_float64_in_32_bit_jax_is_refused_not_rounded(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    lstm_torch.save_checkpoint(path, torch_model("lstm-plain", "float64"))
    with jax.enable_x64(False), pytest.raises(ValueError, match=r"float64.*32-bit"):
        lstm_jax.load_checkpoint(path)


# --- loading into a given model -----------------------------------------------------------


def test_load_into_a_matching_model(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    original = torch_model("modeler-all-options")
    lstm_torch.save_checkpoint(path, original)

    target = torch_model("modeler-all-options", seed=7)
    assert lstm_torch.load_checkpoint(path, target) is target
    assert_bitwise(target.state_dict(), reference(original))

    model = jax_model("modeler-all-options")
    got_model, variables = lstm_jax.load_checkpoint(path, model)
    assert got_model is model
    assert_bitwise(flatten(variables["params"]), reference(original))


def test_load_into_another_configuration_says_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    lstm_torch.save_checkpoint(path, torch_model("modeler-lecture"))
    other = lstm_torch.LSTMModeler(1, 6, 1)
    before = reference(other)
    with pytest.raises(CheckpointError, match=r"hidden_layer_size: 4 vs 6") as err:
        lstm_torch.load_checkpoint(path, other)
    assert str(path) in str(err.value)
    assert_bitwise(other.state_dict(), before)  # untouched

    with pytest.raises(CheckpointError, match=r"batch_first: False vs True"):
        lstm_jax.load_checkpoint(path, lstm_jax.LSTMModeler(1, 4, 1, batch_first=True))
    with pytest.raises(CheckpointError, match=r"kind: LSTMModeler vs LSTM"):
        lstm_jax.load_checkpoint(path, lstm_jax.LSTM(4))
    with pytest.raises(CheckpointError, match=r"kind: LSTMModeler vs LSTM"):
        lstm_torch.load_checkpoint(path, torch.nn.LSTM(1, 4))
    # torch would round float64 into a float32 model without a word: refused instead.
    with pytest.raises(CheckpointError, match=r"dtype: float32 vs float64"):
        lstm_torch.load_checkpoint(path, torch_model("modeler-lecture", "float64"))


# --- what save refuses --------------------------------------------------------------------


def test_save_refuses_what_it_cannot_store(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    with pytest.raises(TypeError, match=r"torch\.nn\.LSTM or lstm_torch\.LSTMModeler"):
        lstm_torch.save_checkpoint(path, object())  # (an nn.GRU is stored since issue 21)
    with pytest.raises(TypeError, match=r"float32 or float64.*bfloat16"):
        lstm_torch.save_checkpoint(path, torch.nn.LSTM(2, 3).to(torch.bfloat16))

    variables = lstm_jax.params_from_torch(torch_model("lstm-plain").state_dict())
    with pytest.raises(ValueError, match=r"weight_hh_l0: expected \(16, 2\), got \(16, 4\)"):
        lstm_jax.save_checkpoint(path, variables, lstm_jax.LSTM(4, proj_size=2))
    with pytest.raises(ValueError, match="missing key"):
        lstm_jax.save_checkpoint(path, variables, lstm_jax.LSTMModeler(3, 4, 1))
    mixed = {"params": {**variables["params"], "bias_hh_l0": np.zeros(16, np.float16)}}
    with pytest.raises(TypeError, match="one dtype"):
        lstm_jax.save_checkpoint(path, mixed, lstm_jax.LSTM(4))
    assert not path.exists()


def test_save_into_a_missing_directory_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError, match=f"directory {missing} does not exist"):
        lstm_torch.save_checkpoint(missing / "m.safetensors", torch_model("lstm-plain"))
    assert not missing.exists()  # not created behind the user's back
    with pytest.raises(IsADirectoryError):
        lstm_torch.save_checkpoint(tmp_path, torch_model("lstm-plain"))


@pytest.mark.parametrize("failure", ["serialize", "write"])
def test_failed_save_leaves_the_old_file(
    failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.safetensors"
    lstm_torch.save_checkpoint(path, torch_model("lstm-plain", seed=0))
    before = path.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    if failure == "serialize":
        monkeypatch.setattr(safetensors.numpy, "save", fail)
    else:  # the bytes are in the temporary file, not yet on disk
        monkeypatch.setattr(fmt.os, "fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        lstm_torch.save_checkpoint(path, torch_model("lstm-plain", seed=1))
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind
    assert_bitwise(
        lstm_torch.load_checkpoint(path).state_dict(), reference(torch_model("lstm-plain"))
    )


def test_saved_file_has_ordinary_permissions(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    umask = os.umask(0o022)
    try:
        lstm_torch.save_checkpoint(path, torch_model("lstm-plain"))
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


# --- damaged and foreign files ------------------------------------------------------------


def _saved(tmp_path: Path, name: str = "modeler-lecture") -> tuple[Path, dict, dict]:
    path = tmp_path / "m.safetensors"
    lstm_torch.save_checkpoint(path, torch_model(name))
    with safetensors.safe_open(path, framework="np") as file:
        meta = file.metadata()
        arrays = {k: file.get_tensor(k) for k in file.keys()}
    return path, arrays, meta


def _rewrite(path: Path, arrays: dict, meta: dict | None) -> None:
    safetensors.numpy.save_file(arrays, path, metadata=meta)


def _config(meta: dict, **changes: object) -> str:
    """The metadata's config with options changed (None: removed)."""
    config = {**json.loads(meta["config"]), **changes}
    return json.dumps({k: v for k, v in config.items() if v is not None})


def _truncated(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


DAMAGE = {
    "empty": (lambda p, a, m: p.write_bytes(b""), "not a readable safetensors file"),
    "truncated-header": (lambda p, a, m: _truncated(p, 0.05), "not a readable safetensors"),
    "truncated-data": (lambda p, a, m: _truncated(p, 0.9), "not a readable safetensors"),
    "random-bytes": (
        lambda p, a, m: p.write_bytes(np.random.default_rng(0).bytes(4096)),
        "not a readable safetensors",
    ),
    "json": (lambda p, a, m: p.write_text(json.dumps({"weight": [1, 2]})), "not a readable"),
    "foreign-no-metadata": (
        lambda p, a, m: _rewrite(p, a, None),
        "not an lstm-jax checkpoint.*no metadata",
    ),
    "foreign-other-metadata": (
        lambda p, a, m: _rewrite(p, a, {"format": "pt"}),
        "not an lstm-jax checkpoint",
    ),
    "newer-format": (
        lambda p, a, m: _rewrite(p, a, {**m, "format_version": "2"}),
        "format version '2'",
    ),
    "metadata-key-removed": (
        lambda p, a, m: _rewrite(p, a, {k: v for k, v in m.items() if k != "kind"}),
        "lacks kind",
    ),
    "unknown-kind": (lambda p, a, m: _rewrite(p, a, {**m, "kind": "GRU"}), "kind must be one of"),
    "config-not-json": (lambda p, a, m: _rewrite(p, a, {**m, "config": "{"}), "invalid checkpoint"),
    "config-option-missing": (
        lambda p, a, m: _rewrite(p, a, {**m, "config": _config(m, proj_size=None)}),
        r"missing \['proj_size'\]",
    ),
    "config-invalid-option": (
        lambda p, a, m: _rewrite(p, a, {**m, "config": _config(m, bias="yes")}),
        "bias should be a bool",
    ),
    "config-disagrees-with-tensors": (
        lambda p, a, m: _rewrite(p, a, {**m, "config": _config(m, hidden_layer_size=5)}),
        "size mismatch for lstm.weight_ih_l0",
    ),
    "tensor-shape-changed": (
        lambda p, a, m: _rewrite(p, {**a, "linear.weight": a["linear.weight"][:, :3]}, m),
        r"linear.weight: expected \(1, 4\), got \(1, 3\)",
    ),
    "tensor-removed": (
        lambda p, a, m: _rewrite(p, {k: v for k, v in a.items() if k != "lstm.bias_hh_l0"}, m),
        "missing key.*lstm.bias_hh_l0",
    ),
    "tensor-added": (
        lambda p, a, m: _rewrite(p, {**a, "extra": np.zeros(2, np.float32)}, m),
        "unexpected key.*extra",
    ),
    "dtype-disagrees": (
        lambda p, a, m: _rewrite(p, a, {**m, "dtype": "float64"}),
        "dtype float64 in the metadata, but tensors are",
    ),
    "tensor-values-changed": (
        lambda p, a, m: _rewrite(p, {**a, "linear.bias": a["linear.bias"] + 1}, m),
        "does not match the checksum",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_or_foreign_file_is_refused_by_both_loaders(damage: str, tmp_path: Path) -> None:
    path, arrays, meta = _saved(tmp_path)
    make, message = DAMAGE[damage]
    make(path, arrays, meta)
    for load in (lstm_torch.load_checkpoint, lstm_jax.load_checkpoint):
        with pytest.raises(CheckpointError, match=message) as err:
            load(path)
        assert str(err.value).startswith(f"{path}: ")
        assert isinstance(err.value, ValueError)


def test_foreign_file_message_says_how_to_load_a_bare_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "lstm.safetensors"
    safetensors.torch.save_file(torch.nn.LSTM(2, 3).state_dict(), path)
    with pytest.raises(CheckpointError, match="params_from_torch"):
        lstm_jax.load_checkpoint(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        lstm_jax.load_checkpoint(tmp_path / "absent.safetensors")
    with pytest.raises(IsADirectoryError):
        lstm_torch.load_checkpoint(tmp_path)


# --- imports ------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_side_loads_checkpoints_without_the_other_framework() -> None:
    without_jax = (
        "import sys, lstm_torch, lstm_jax.common.checkpoint_format\n"
        "assert lstm_torch.load_checkpoint and lstm_torch.save_checkpoint\n"
        "assert 'jax' not in sys.modules, 'lstm_torch imported jax'\n"
    )
    without_torch = (
        "import sys, lstm_jax, lstm_jax.interop.checkpoint, lstm_jax.interop.compare\n"
        "import lstm_jax.check\n"
        "lstm_jax.load_checkpoint, lstm_jax.compare_with_torch\n"
        "assert 'torch' not in sys.modules, 'lstm_jax imported torch'\n"
    )
    for source in (without_jax, without_torch):
        result = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr

"""``python -m lstm_jax.check FILE --torch MODULE:ATTR --flax MODULE:ATTR`` (issue 22):
a file of a model of one's own, checked from the shell.

In-process through ``check.main(argv)``; one real subprocess run is slow-marked. The
models live in a module written to a temporary directory, as a user's would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import lstm_torch
from lstm_jax import check

MODELS = textwrap.dedent(
    """
    import flax.linen as fnn
    import numpy as np
    import torch
    from torch import nn

    import lstm_jax


    class Tagger(nn.Module):
        def __init__(self, hidden=5):
            super().__init__()
            self.lstm = nn.LSTM(3, hidden)
            self.head = nn.Linear(hidden, 2)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out)


    class FlaxTagger(fnn.Module):
        hidden: int = 5
        activation: bool = False  # a wrong port when True

        def setup(self):
            self.lstm = lstm_jax.LSTM(self.hidden)
            self.head = fnn.Dense(2)

        def __call__(self, x):
            out, _ = self.lstm(x)
            return self.head(fnn.tanh(out) if self.activation else out)


    def wrong_port():
        return FlaxTagger(activation=True)


    def bigger():
        return Tagger(hidden=7)


    def broken():
        raise RuntimeError("no weights here")


    def example():
        return np.random.default_rng(1).standard_normal((4, 2, 3)).astype(np.float32)


    INSTANCE = FlaxTagger()
    NOT_A_MODEL = 3
    """
)


@pytest.fixture
def models(tmp_path: Path, monkeypatch: Any) -> Path:
    """The user's module ``my_models`` on sys.path, and a checkpoint of its Tagger."""
    (tmp_path / "my_models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_models", None)
    import my_models  # type: ignore[import-not-found]

    torch.manual_seed(0)
    path = tmp_path / "tagger.safetensors"
    lstm_torch.save_checkpoint(path, my_models.Tagger())
    return path


def run(path: Path, *extra: str) -> int:
    return check.main([str(path), "--torch", "my_models:Tagger", *extra])


def test_a_true_port_passes(models: Path, capsys: Any) -> None:
    assert run(models, "--flax", "my_models:FlaxTagger", "--input-shape", "6,2,3") == 0
    out = capsys.readouterr().out
    assert "result: OK" in out and "input: (6, 2, 3) float32, seed 0" in out


@pytest.mark.parametrize("flax", ["my_models:INSTANCE", "my_models:FlaxTagger"])
def test_an_example_function_gives_the_input(models: Path, flax: str, capsys: Any) -> None:
    assert run(models, "--flax", flax, "--example", "my_models:example") == 0
    assert "input: (4, 2, 3) float32" in capsys.readouterr().out


def test_a_wrong_port_fails(models: Path, capsys: Any) -> None:
    assert run(models, "--flax", "my_models:wrong_port", "--input-shape", "6,2,3") == 1
    assert "result: FAIL" in capsys.readouterr().out


CANNOT = {
    "no such module": (
        ["--flax", "nowhere.models:Port", "--input-shape", "6,2,3"],
        "--flax nowhere.models:Port: cannot import module 'nowhere.models' (ModuleNotFoundError",
    ),
    "no such attribute": (
        ["--flax", "my_models:Missing", "--input-shape", "6,2,3"],
        "--flax my_models:Missing: 'my_models' has no attribute 'Missing'",
    ),
    "a factory that raises": (
        ["--flax", "my_models:broken", "--input-shape", "6,2,3"],
        "--flax my_models:broken: calling it without arguments raised RuntimeError: no weights",
    ),
    "not a model": (
        ["--flax", "my_models:NOT_A_MODEL", "--input-shape", "6,2,3"],
        "--flax my_models:NOT_A_MODEL: expected a model, a class or a function returning one, "
        "got int",
    ),
    "a torch model where the Flax one goes": (
        ["--flax", "my_models:Tagger", "--input-shape", "6,2,3"],
        "--flax my_models:Tagger: expected a Flax linen or NNX module, got Tagger",
    ),
    "no input": (["--flax", "my_models:FlaxTagger"], "expected one of --input-shape"),
    "an input the models cannot take": (
        ["--flax", "my_models:FlaxTagger", "--input-shape", "6,2,4"],
        "does not fit the models",
    ),
}


@pytest.mark.parametrize("case", list(CANNOT))
def test_what_cannot_be_checked_exits_2(models: Path, case: str, capsys: Any) -> None:
    extra, message = CANNOT[case]
    assert run(models, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstm_jax.check: error:") and message in err, err


def test_a_file_of_another_model_exits_2(models: Path, capsys: Any) -> None:
    argv = [str(models), "--torch", "my_models:bigger", "--flax", "my_models:FlaxTagger"]
    assert check.main([*argv, "--input-shape", "6,2,3"]) == 2
    assert f"{models} does not fit the models" in capsys.readouterr().err


def test_only_one_model_exits_2(models: Path, capsys: Any) -> None:
    assert run(models, "--input-shape", "6,2,3") == 2
    assert "expected both --torch and --flax (the options" in capsys.readouterr().err
    assert check.main([str(models), "--tokens", "5"]) == 2  # an option of a model of your own
    assert "got neither" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--torch", "my_models"], ["--input-shape", "6,0"]])
def test_malformed_arguments_are_argparse_errors(models: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        check.main([str(models), *bad])
    assert exit_info.value.code == 2


def test_without_models_the_message_names_the_options(models: Path, capsys: Any) -> None:
    assert check.main([str(models)]) == 2
    assert "--torch MODULE:ATTR --flax MODULE:ATTR" in capsys.readouterr().err


@pytest.mark.slow
def test_from_the_shell(models: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(models.parent), *sys.path])}
    argv = ["--torch", "my_models:Tagger", "--flax", "my_models:FlaxTagger"]
    done = subprocess.run(
        [sys.executable, "-m", "lstm_jax.check", str(models), *argv, "--input-shape", "6,2,3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "result: OK" in done.stdout

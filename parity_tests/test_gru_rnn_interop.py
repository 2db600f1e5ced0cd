"""The rest of the package takes GRUs and RNNs (issue 21): weight transfer alone, with
``kind=``, ``prefix=`` and inside a whole model; ``compare_with_torch``; checkpoints on
both sides; ``python -m lstm_jax.check``; ``streaming_step``; and errors that name what
came when a GRU's state dict meets an LSTM or the other way round."""

from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch

import lstm_jax
import lstm_torch
from lstm_jax import check
from lstm_jax.common.tolerances import FORWARD, assert_close

F32 = np.dtype(np.float32)


class Encoder(torch.nn.Module):
    """A user's torch model: an embedding, a batch-first GRU, a linear head per step."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.gru = torch.nn.GRU(4, 6, num_layers=2, batch_first=True)
        self.out = torch.nn.Linear(6, 10)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.gru(self.emb(tokens))[0])


class FlaxEncoder(nn.Module):
    """Its Flax mirror, written as a user writes it (compact, torch's names)."""

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = nn.Embed(10, 4, name="emb")(tokens)
        out, _ = lstm_jax.GRU(6, num_layers=2, batch_first=True, name="gru")(x)
        return lstm_jax.Linear(10, name="out")(out)


def tokens() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 10, (3, 7))


def test_whole_model_converts_compares_and_round_trips() -> None:
    torch.manual_seed(0)
    tm, fm = Encoder(), FlaxEncoder()
    t = tokens()
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=fm, example=(t,))
    assert_close(fm.apply(variables, t), tm(torch.from_numpy(t)).detach().numpy(), FORWARD[F32])
    back = lstm_jax.params_to_torch(variables, model=fm, example=(t,))
    assert back.keys() == tm.state_dict().keys()
    for key, value in tm.state_dict().items():
        np.testing.assert_array_equal(back[key], value.numpy())  # bitwise
    report = lstm_jax.compare_with_torch(tm, fm, variables, t)
    assert report.ok, report


@pytest.mark.parametrize(
    ("torch_module", "kind", "jax_module"),
    [
        (
            lambda: torch.nn.GRU(3, 4, 2, bidirectional=True),
            "GRU",
            lambda: lstm_jax.GRU(4, 2, bidirectional=True),
        ),
        (
            lambda: torch.nn.RNN(3, 4, nonlinearity="relu", bias=False),
            "RNN_RELU",
            lambda: lstm_jax.RNN(4, nonlinearity="relu", bias=False),
        ),
        (lambda: torch.nn.GRUCell(3, 4), "GRU", lambda: lstm_jax.GRUCell(4)),
        (lambda: torch.nn.RNNCell(3, 4), "RNN_TANH", lambda: lstm_jax.RNNCell(4)),
    ],
)
def test_state_dict_alone_with_kind_or_model(torch_module, kind, jax_module) -> None:
    torch.manual_seed(1)
    tm, jm = torch_module(), jax_module()
    sd = tm.state_dict()
    by_kind = lstm_jax.params_from_torch(sd, kind=kind)
    by_model = lstm_jax.params_from_torch(sd, model=jm)
    for variables in (by_kind, by_model):
        out = lstm_jax.params_to_torch(variables, model=jm)
        assert out.keys() == sd.keys()
        for key, value in sd.items():
            np.testing.assert_array_equal(out[key], value.numpy())
    with_prefix = lstm_jax.params_from_torch(
        {f"enc.{k}": v for k, v in sd.items()}, prefix="enc.", kind=kind
    )
    assert jax.tree.all(jax.tree.map(np.array_equal, with_prefix, by_kind))


def test_a_gru_state_dict_alone_names_kind() -> None:
    with pytest.raises(
        ValueError,
        match=r"\(a GRU or RNN state dict\?\): it looks like a GRU's \(3H rows\); pass kind='GRU'",
    ):
        lstm_jax.params_from_torch(torch.nn.GRU(3, 5).state_dict())
    with pytest.raises(
        ValueError, match=r"looks like an RNN's \(H rows\); pass kind='RNN_TANH' or 'RNN_RELU'"
    ):
        lstm_jax.params_from_torch(torch.nn.RNN(3, 5).state_dict())
    with pytest.raises(ValueError, match="expected kind in"):
        lstm_jax.params_from_torch(torch.nn.GRU(3, 5).state_dict(), kind="gru")
    with pytest.raises(
        ValueError,
        match=r"expected an nn.GRU's shape \(3\*hidden_size, hidden_size\), got \(20, 5\) "
        r"\(this looks like an LSTM's",
    ):
        lstm_jax.params_from_torch(torch.nn.LSTM(3, 5).state_dict(), kind="GRU")


def test_another_kinds_state_dict_is_named() -> None:
    """A GRU's state dict given to an LSTM, and the other way round: what came, what to use."""
    gru_sd, lstm_sd = torch.nn.GRU(3, 5).state_dict(), torch.nn.LSTM(3, 5).state_dict()
    with pytest.raises(
        ValueError,
        match=(
            r"size mismatch for weight_ih_l0: expected \(20, 3\), got \(15, 3\).*"
            r"weight_hh_l0 of shape \(15, 5\) looks like a GRU's \(3H rows\), "
            r"where an LSTM's \(4H rows\) .* use lstm_jax\.GRU$"
        ),
    ):
        lstm_jax.params_from_torch(gru_sd, model=lstm_jax.LSTM(5))
    with pytest.raises(
        ValueError, match=r"looks like an LSTM's \(4H rows\), where a GRU's .* use lstm_jax\.LSTM$"
    ):
        lstm_jax.params_from_torch(lstm_sd, model=lstm_jax.GRU(5))
    x = np.zeros((4, 2, 3), np.float32)
    params = {k: v.numpy() for k, v in gru_sd.items()}
    with pytest.raises(ValueError, match=r"LSTM variables\[\"params\"\].*use lstm_jax\.GRU"):
        lstm_jax.LSTM(5).apply({"params": params}, x)
    with pytest.raises(ValueError, match=r"looks like an RNN's \(H rows\).*use lstm_jax\.RNNCell$"):
        lstm_jax.params_from_torch(torch.nn.RNNCell(3, 5).state_dict(), model=lstm_jax.GRUCell(5))


def test_checkpoints_both_ways_and_the_check_command(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(2)
    for tm, jm, example in (
        (
            torch.nn.GRU(3, 5, 2, bidirectional=True),
            lstm_jax.GRU(5, 2, bidirectional=True),
            np.zeros((4, 2, 3), np.float32),
        ),
        (torch.nn.RNNCell(3, 4), lstm_jax.RNNCell(4), np.zeros((2, 3), np.float32)),
    ):
        name = type(tm).__name__
        torch_file, jax_file = tmp_path / f"t{name}.safetensors", tmp_path / f"j{name}.safetensors"
        lstm_torch.save_checkpoint(torch_file, tm)
        _, variables = lstm_jax.load_checkpoint(torch_file, jm, example=(example,))
        lstm_jax.save_checkpoint(jax_file, variables, jm)
        fresh = type(tm)(3, 5, 2, bidirectional=True) if name == "GRU" else type(tm)(3, 4)
        loaded = lstm_torch.load_checkpoint(jax_file, fresh)
        for key, value in tm.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value)
        assert check.main([str(jax_file), "--seq-len", "3", "--batch", "2"]) == 0
        printed = capsys.readouterr().out
        assert f"model: {name}(input_size=3" in printed and "result: OK" in printed


@pytest.mark.parametrize(
    ("torch_module", "missing"),
    [
        (torch.nn.GRU(3, 5, batch_first=True), "does not record its batch_first and dropout"),
        (torch.nn.RNN(3, 5, nonlinearity="relu"), "its nonlinearity, batch_first and dropout"),
        (torch.nn.RNNCell(3, 5), "does not record its nonlinearity"),
        (torch.nn.GRUCell(3, 5), "a GRUCell's state dict:"),
    ],
    ids=["GRU", "RNN", "RNNCell", "GRUCell"],
)
def test_a_family_file_without_a_model_asks_for_that_class(
    tmp_path: Path, torch_module: torch.nn.Module, missing: str
) -> None:
    """Its state dict gives the sizes, not every option: both loaders say which class to
    build (not "a model of your own") and what the file does not record."""
    name = type(torch_module).__name__
    path = tmp_path / "f.safetensors"
    lstm_torch.save_checkpoint(path, torch_module)
    with pytest.raises(lstm_torch.CheckpointError) as by_torch:
        lstm_torch.load_checkpoint(path)
    with pytest.raises(lstm_jax.CheckpointError) as by_jax:
        lstm_jax.load_checkpoint(path)
    for refused, call in ((by_torch, f"torch.nn.{name}(...)"), (by_jax, f"lstm_jax.{name}(...)")):
        message = str(refused.value)
        assert missing in message and call in message, message
        assert "of your own" not in message, message


class HoldsGRU(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.GRU(2, 3)
        self.head = torch.nn.Linear(3, 1)


def test_torch_checkpoint_of_a_model_holding_a_gru(tmp_path: Path) -> None:
    saved = HoldsGRU()
    lstm_torch.save_checkpoint(tmp_path / "m.safetensors", saved)
    loaded = lstm_torch.load_checkpoint(tmp_path / "m.safetensors", HoldsGRU())
    for key, value in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


@pytest.mark.parametrize(
    "model", [lstm_jax.GRU(5, 2), lstm_jax.RNN(5, nonlinearity="relu")], ids=["GRU", "RNN"]
)
def test_streaming_step_matches_the_whole_sequence(model: nn.Module) -> None:
    x = np.random.default_rng(3).standard_normal((6, 3, 4)).astype(np.float32)
    variables = model.init(jax.random.key(0), x)
    out, h_n = model.apply(variables, x)
    step = lstm_jax.streaming_step(model, variables)
    state, outputs = None, []
    for t in range(x.shape[0]):
        y, state = step(x[t], state)
        outputs.append(y)
    assert_close(np.stack(outputs), out, FORWARD[F32], "outputs")
    assert_close(state, h_n, FORWARD[F32], "h_n")
    with pytest.raises(ValueError, match="expected a unidirectional GRU"):
        lstm_jax.streaming_step(lstm_jax.GRU(5, bidirectional=True), {"params": {}})

"""torch's state-dict methods on NNX modules: ``load_state_dict`` / ``state_dict``.

Strict as torch (missing, unexpected and mis-shaped keys named, with both shapes), all
or nothing, bitwise both ways; for whole NNX models whose attributes carry torch's
names, with the leaf rules (``nnx.Embed``, ``nnx.Conv``, ``nnx.LayerNorm``,
``nnx.Linear``, list-held submodules); and the conversion between linen variables and
NNX modules.
"""

from __future__ import annotations

import flax.linen as nn
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax
import lstm_jax.nnx
import lstm_torch
from lstm_jax.common.tolerances import FORWARD

F32 = np.dtype(np.float32)


def bitwise_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype
        and np.array_equal(np.asarray(a[k]), np.asarray(b[k]))
        for k in a
    )


def torch_arrays(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


# --- lstm_jax's own NNX modules ------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: (
            torch.nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2),
            lstm_jax.nnx.LSTM(3, 5, 2, bidirectional=True, proj_size=2, rngs=nnx.Rngs(0)),
        ),
        lambda: (
            torch.nn.LSTMCell(3, 4, bias=False),
            lstm_jax.nnx.LSTMCell(3, 4, bias=False, rngs=nnx.Rngs(0)),
        ),
        lambda: (
            torch.nn.Linear(4, 2),
            lstm_jax.nnx.Linear(4, 2, rngs=nnx.Rngs(0)),
        ),
        lambda: (
            lstm_torch.LSTMModeler(2, 6, 3, num_layers=2, bias=False),
            lstm_jax.nnx.LSTMModeler(2, 6, 3, num_layers=2, bias=False, rngs=nnx.Rngs(0)),
        ),
    ],
    ids=["LSTM", "LSTMCell", "Linear", "LSTMModeler"],
)
def test_round_trip_is_bitwise_in_torch_order(make: object) -> None:
    torch.manual_seed(3)
    torch_module, nnx_module = make()
    reference = torch_arrays(torch_module)
    assert list(nnx_module.state_dict()) == list(reference)  # the same keys, in torch's order
    assert nnx_module.load_state_dict(torch_module.state_dict()) == ([], [])
    sd = nnx_module.state_dict()
    assert bitwise_equal(sd, reference)
    assert all(type(v) is np.ndarray for v in sd.values())
    fresh = make()[0]
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    assert bitwise_equal(torch_arrays(fresh), reference)
    # numpy and JAX arrays load as tensors do
    other = make()[1]
    other.load_state_dict({k: jnp.asarray(v) for k, v in reference.items()})
    assert bitwise_equal(other.state_dict(), reference)


def test_float64_round_trip_is_bitwise() -> None:
    torch.manual_seed(0)
    torch_lstm = torch.nn.LSTM(3, 4, bidirectional=True).double()
    with jax.enable_x64(True):
        model = lstm_jax.nnx.LSTM(
            3, 4, bidirectional=True, param_dtype=jnp.float64, rngs=nnx.Rngs(0)
        )
        model.load_state_dict(torch_lstm.state_dict())
        assert bitwise_equal(model.state_dict(), torch_arrays(torch_lstm))


def test_loaded_weights_are_copies_that_torchs_in_place_steps_leave_alone() -> None:
    """torch's load_state_dict copies; so does the NNX one: training the torch model on
    (its optimizer writes its tensors in place) must not move the NNX module's weights
    (a zero-copy view of torch's memory did, racing JAX's asynchronous steps)."""
    torch.manual_seed(0)
    torch_model = lstm_torch.LSTMModeler(2, 3, 1, num_layers=2)
    model = lstm_jax.nnx.LSTMModeler(2, 3, 1, num_layers=2, rngs=nnx.Rngs(0))
    model.load_state_dict(torch_model.state_dict())
    loaded = model.state_dict()
    with torch.no_grad():
        for p in torch_model.parameters():
            p.add_(1.0)
    assert bitwise_equal(model.state_dict(), loaded)


def _lstm_pair() -> tuple[torch.nn.LSTM, lstm_jax.nnx.LSTM]:
    torch.manual_seed(0)
    return torch.nn.LSTM(3, 7, 2), lstm_jax.nnx.LSTM(3, 7, 2, rngs=nnx.Rngs(0))


def test_strict_errors_name_every_key_with_both_shapes_and_change_nothing() -> None:
    torch_lstm, model = _lstm_pair()
    before = model.state_dict()
    sd = dict(torch_lstm.state_dict())
    del sd["bias_hh_l1"]
    sd["weight_ih_l0"] = torch.zeros(28, 4)
    sd["weight_hr_l0"] = torch.zeros(2, 7)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(sd)
    message = str(err.value)
    assert "missing key(s): bias_hh_l1" in message
    assert "unexpected key(s): weight_hr_l0" in message
    assert "weight_ih_l0" in message and "(28, 3)" in message and "(28, 4)" in message
    assert "LSTM" in message
    assert bitwise_equal(model.state_dict(), before)  # all or nothing


def test_non_strict_returns_what_it_left_aside_but_refuses_wrong_shapes() -> None:
    torch_lstm, model = _lstm_pair()
    sd = dict(torch_lstm.state_dict())
    del sd["bias_hh_l1"]
    sd["extra.weight"] = torch.zeros(3)
    result = model.load_state_dict(sd, strict=False)
    assert result == lstm_jax.nnx.IncompatibleKeys(["bias_hh_l1"], ["extra.weight"])
    assert result.missing_keys == ["bias_hh_l1"] and result.unexpected_keys == ["extra.weight"]
    loaded = model.state_dict()
    assert np.array_equal(loaded["weight_ih_l0"], sd["weight_ih_l0"].numpy())
    assert not np.array_equal(loaded["bias_hh_l1"], torch_lstm.bias_hh_l1.detach().numpy())
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"weight_hh_l0.*\(28, 7\).*\(28, 6\)"):
        model.load_state_dict({"weight_hh_l0": torch.zeros(28, 6)}, strict=False)
    assert bitwise_equal(model.state_dict(), before)


def test_dtype_errors_never_round_silently() -> None:
    torch_lstm, model = _lstm_pair()
    before = model.state_dict()
    double = {k: v.double() for k, v in torch_lstm.state_dict().items()}
    with pytest.raises(ValueError, match="float64 but JAX runs in 32-bit mode"):
        model.load_state_dict(double)
    with jax.enable_x64(True):
        with pytest.raises(TypeError, match=r"expected dtype float32 .*got float64"):
            model.load_state_dict(double)
    integers = {**torch_lstm.state_dict(), "bias_ih_l0": torch.zeros(28, dtype=torch.int64)}
    with pytest.raises(TypeError, match="bias_ih_l0: expected a floating point array"):
        model.load_state_dict(integers)
    with pytest.raises(TypeError, match="expected a mapping"):
        model.load_state_dict([("weight_ih_l0", torch.zeros(28, 3))])
    assert bitwise_equal(model.state_dict(), before)
    with jax.enable_x64(True):  # widening is exact: float32 into a float64 module
        wide = lstm_jax.nnx.LSTM(3, 7, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        wide.load_state_dict(torch_lstm.state_dict())
        assert all(v.dtype == np.float64 for v in wide.state_dict().values())
        assert np.array_equal(
            wide.state_dict()["weight_hh_l1"], torch_lstm.weight_hh_l1.detach().numpy()
        )


# --- a whole NNX model whose attributes carry the torch model's names ---------------------


class TorchTagger(torch.nn.Module):
    """Embedding -> Conv1d -> LayerNorm -> 2-layer batch-first LSTM -> ModuleList of Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(11, 4)
        self.conv = torch.nn.Conv1d(4, 6, kernel_size=3, padding=1)
        self.norm = torch.nn.LayerNorm(6)
        self.rnn = torch.nn.LSTM(6, 5, 2, batch_first=True, bidirectional=True)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(10, 7), torch.nn.Linear(7, 3)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.conv(self.embed(tokens).transpose(1, 2)).transpose(1, 2)
        out, _ = self.rnn(self.norm(e))
        y = out[:, -1]
        for layer in self.layers:
            y = torch.tanh(layer(y))
        return y


class NNXTagger(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(11, 4, rngs=rngs)
        self.conv = nnx.Conv(4, 6, kernel_size=(3,), padding=((1, 1),), rngs=rngs)
        self.norm = nnx.LayerNorm(6, epsilon=1e-5, rngs=rngs)
        self.rnn = lstm_jax.nnx.LSTM(6, 5, 2, batch_first=True, bidirectional=True, rngs=rngs)
        self.layers = nnx.List([nnx.Linear(10, 7, rngs=rngs), nnx.Linear(7, 3, rngs=rngs)])

    def __call__(self, tokens: jax.Array) -> jax.Array:
        out, _ = self.rnn(self.norm(self.conv(self.embed(tokens))))
        y = out[:, -1]
        for layer in self.layers:
            y = jnp.tanh(layer(y))
        return y


def test_a_whole_nnx_model_loads_torch_weights_and_computes_torchs_function() -> None:
    torch.manual_seed(0)
    torch_model = TorchTagger()
    reference = torch_arrays(torch_model)
    model = NNXTagger(nnx.Rngs(0))
    sd = lstm_jax.nnx.state_dict(model)
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in reference.items()}
    assert list(sd) == list(reference)
    lstm_jax.nnx.load_state_dict(model, torch_model.state_dict())
    assert np.array_equal(
        np.asarray(model.layers[0].kernel.get_value()), reference["layers.0.weight"].T
    )
    assert bitwise_equal(lstm_jax.nnx.state_dict(model), reference)
    tokens = np.random.default_rng(0).integers(0, 11, (3, 8))
    expected = torch_model(torch.from_numpy(tokens)).detach().numpy()
    got = nnx.jit(lambda m, t: m(t))(model, tokens)
    helpers.assert_all_close({"y": got}, {"y": expected}, FORWARD[F32], "tagger")
    fresh = TorchTagger()
    fresh.load_state_dict(
        {k: torch.from_numpy(v) for k, v in lstm_jax.nnx.state_dict(model).items()}
    )
    assert bitwise_equal(torch_arrays(fresh), reference)
    with pytest.raises(ValueError, match=r"missing key\(s\): layers.1.bias"):
        lstm_jax.nnx.load_state_dict(
            model, {k: v for k, v in reference.items() if k != "layers.1.bias"}
        )


class TorchTiedHead(torch.nn.Module):
    """nn.Sequential head and a decoder tied to the embedding (the word LM's tie)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Embedding(9, 4)
        self.rnn = torch.nn.LSTM(4, 4)
        self.head = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
        self.decoder = torch.nn.Linear(4, 9)
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.encoder(tokens))
        return self.decoder(self.head(out))


class DecoderBias(nnx.Module):
    def __init__(self) -> None:
        self.bias = nnx.Param(jnp.zeros(9))


class NNXTiedHead(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.encoder = nnx.Embed(9, 4, rngs=rngs)
        self.rnn = lstm_jax.nnx.LSTM(4, 4, rngs=rngs)
        self.head = nnx.Sequential(nnx.Linear(4, 4, rngs=rngs), jnp.tanh)
        self.decoder = DecoderBias()

    def __call__(self, tokens: jax.Array) -> jax.Array:
        out, _ = self.rnn(self.encoder(tokens))
        return self.encoder.attend(self.head(out)) + self.decoder.bias


def test_nnx_sequential_and_tied_weights_follow_torchs_keys(tmp_path: object) -> None:
    """nnx.Sequential's items are torch's ``head.0.weight`` (not ``head.layers.0``); a tied
    torch tensor the module holds once loads, and its checkpoint restores the tie."""
    torch.manual_seed(0)
    torch_model = TorchTiedHead()
    model = NNXTiedHead(nnx.Rngs(0))
    lstm_jax.nnx.load_state_dict(model, torch_model.state_dict())
    assert "head.0.weight" in lstm_jax.nnx.state_dict(model)
    tokens = np.random.default_rng(0).integers(0, 9, (5, 2))
    expected = torch_model(torch.from_numpy(tokens)).detach().numpy()
    helpers.assert_all_close({"y": model(tokens)}, {"y": expected}, FORWARD[F32], "tied")
    path = f"{tmp_path}/tied.safetensors"
    lstm_jax.save_checkpoint(path, model, tied={"decoder.weight": "encoder.weight"})
    fresh = TorchTiedHead()
    lstm_torch.load_checkpoint(path, fresh)
    assert fresh.decoder.weight is fresh.encoder.weight
    assert bitwise_equal(torch_arrays(fresh), torch_arrays(torch_model))


def test_batch_statistics_are_torch_buffers_not_silently_dropped() -> None:
    """Flax's nnx.BatchNorm: its statistics are torch's buffers (issue 22), with a warning
    that its training convention is not torch's (its counter is written as 0)."""

    class WithBatchNorm(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.bn = nnx.BatchNorm(3, rngs=rngs)

    with pytest.warns(UserWarning, match="bn is Flax's BatchNorm"):
        sd = lstm_jax.nnx.state_dict(WithBatchNorm(nnx.Rngs(0)))
    assert sorted(sd) == [
        "bn.bias",
        "bn.num_batches_tracked",
        "bn.running_mean",
        "bn.running_var",
        "bn.weight",
    ]


def test_hidden_cell_and_rng_state_stay_out_of_the_state_dict() -> None:
    model = lstm_jax.nnx.LSTMModeler(1, 4, 1, num_layers=2, dropout=0.3, rngs=nnx.Rngs(0))
    model(np.ones((3,), np.float32))
    torch_model = lstm_torch.LSTMModeler(1, 4, 1, num_layers=2, dropout=0.3)
    assert list(model.state_dict()) == list(torch_model.state_dict())


# --- linen <-> NNX ----------------------------------------------------------------------------


def test_linen_and_nnx_twins_convert_bitwise_and_agree() -> None:
    jm = lstm_jax.LSTMModeler(2, 6, 3, num_layers=2, bidirectional=True, proj_size=3)
    x = np.random.default_rng(0).standard_normal((5, 4, 2)).astype(np.float32)
    variables = jm.init(jax.random.key(0), x)
    model = lstm_jax.nnx.from_linen(jm, variables)
    assert isinstance(model, lstm_jax.nnx.LSTMModeler)
    assert bitwise_equal(model.state_dict(), lstm_jax.params_to_torch(variables))
    y_linen, (h, c) = jm.apply(variables, x)
    model.hidden_cell = None
    y = model(x)
    helpers.assert_all_close(
        {"y": y, "h": model.hidden_cell.h, "c": model.hidden_cell.c},
        {"y": np.asarray(y_linen), "h": np.asarray(h), "c": np.asarray(c)},
        FORWARD[F32],
        "linen vs nnx",
    )
    linen_model, back = lstm_jax.nnx.to_linen(model)
    assert linen_model == jm
    assert bitwise_equal(lstm_jax.params_to_torch(back), lstm_jax.params_to_torch(variables))
    lstm = lstm_jax.nnx.LSTM(2, 3, batch_first=True, rngs=nnx.Rngs(2))
    linen_lstm, lstm_vars = lstm_jax.nnx.to_linen(lstm)
    assert linen_lstm == lstm_jax.LSTM(3, batch_first=True)
    assert bitwise_equal(
        lstm_jax.nnx.from_linen(linen_lstm, lstm_vars).state_dict(), lstm.state_dict()
    )


def test_linen_and_nnx_lstm_cells_convert_bitwise_and_agree() -> None:
    cell = lstm_jax.nnx.LSTMCell(3, 4, bias=False, rngs=nnx.Rngs(0))
    linen_cell, variables = lstm_jax.nnx.to_linen(cell)
    assert linen_cell == lstm_jax.LSTMCell(4, bias=False)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    h, c = linen_cell.apply(variables, x)
    helpers.assert_all_close(
        {"h": h, "c": c}, dict(zip("hc", map(np.asarray, cell(x)), strict=True)), FORWARD[F32]
    )
    back = lstm_jax.nnx.from_linen(linen_cell, variables)
    assert isinstance(back, lstm_jax.nnx.LSTMCell) and bitwise_equal(
        back.state_dict(), cell.state_dict()
    )


def test_own_model_converts_between_linen_and_nnx_through_the_leaf_rules() -> None:
    class LinenNet(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            out, _ = lstm_jax.LSTM(5, name="rnn")(x)
            return nn.Dense(2, name="head")(out[-1])

    class NNXNet(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.rnn = lstm_jax.nnx.LSTM(3, 5, rngs=rngs)
            self.head = nnx.Linear(5, 2, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            out, _ = self.rnn(x)
            return self.head(out[-1])

    x = np.random.default_rng(1).standard_normal((4, 2, 3)).astype(np.float32)
    linen_net = LinenNet()
    variables = linen_net.init(jax.random.key(0), x)
    model = lstm_jax.nnx.from_linen(linen_net, variables, into=NNXNet(nnx.Rngs(0)), example=(x,))
    helpers.assert_all_close(
        {"y": model(x)}, {"y": np.asarray(linen_net.apply(variables, x))}, FORWARD[F32]
    )
    _, back = lstm_jax.nnx.to_linen(model, linen_net, example=(x,))
    assert jax.tree.all(
        jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), back, dict(variables))
    )
    with pytest.raises(TypeError, match="into="):
        lstm_jax.nnx.from_linen(linen_net, variables)


@pytest.mark.slow
def test_lstm_jax_nnx_is_reached_from_the_package_and_loads_on_first_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lstm_jax; assert 'lstm_jax.nnx' not in sys.modules; "
        "from flax import nnx; m = lstm_jax.nnx.LSTM(2, 3, rngs=nnx.Rngs(0)); "
        "assert type(m).__module__ == 'lstm_jax.nnx.modules'; assert 'nnx' in dir(lstm_jax)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]

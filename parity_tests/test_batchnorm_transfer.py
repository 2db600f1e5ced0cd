"""A recurrent classifier with BatchNorm (and dropout) moves between torch and Flax with
its buffers: transfer both ways (linen, NNX), checkpoints written by either side load on
the other (the int64 counter an integer), nothing dropped or renamed in silence, and
Flax's own BatchNorm maps its statistics with a warning."""

from __future__ import annotations

import warnings

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch
from flax import nnx

import lstm_jax
import lstm_torch
from lstm_jax.common.tolerances import FORWARD, assert_close


class TorchClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 6, batch_first=True)
        self.bn = torch.nn.BatchNorm1d(6)
        self.drop = torch.nn.Dropout(0.3)
        self.fc = torch.nn.Linear(6, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(self.drop(self.bn(out[:, -1])))


class FlaxClassifier(nn.Module):
    def setup(self) -> None:
        self.lstm = lstm_jax.LSTM(6, batch_first=True)
        self.bn = lstm_jax.BatchNorm1d(6)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Dense(2)

    def __call__(self, x, train: bool = False):
        out, _ = self.lstm(x)
        h = self.bn(out[:, -1], use_running_average=not train)
        return self.fc(self.drop(h, deterministic=not train))


class FlaxOwnBatchNorm(nn.Module):
    """The same with Flax's nn.BatchNorm (made in @compact: the transfer reads its leaves)."""

    @nn.compact
    def __call__(self, x):
        out, _ = lstm_jax.LSTM(6, batch_first=True, name="lstm")(x)
        h = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn")(out[:, -1])
        return nn.Dense(2, name="fc")(h)


class NnxClassifier(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.lstm = lstm_jax.nnx.LSTM(3, 6, batch_first=True, rngs=rngs)
        self.bn = lstm_jax.nnx.BatchNorm1d(6)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.fc = nnx.Linear(6, 2, rngs=rngs)

    def __call__(self, x):
        out, _ = self.lstm(x)
        return self.fc(self.drop(self.bn(out[:, -1])))


def _trained_torch(seed: int = 0) -> tuple[torch.nn.Module, np.ndarray]:
    """A torch model whose buffers moved away from their fresh values (3 train batches)."""
    torch.manual_seed(seed)
    model = TorchClassifier()
    x = np.random.default_rng(seed).normal(size=(8, 5, 3)).astype(np.float32)
    model.train()
    for _ in range(3):
        model(torch.from_numpy(x))
    return model.eval(), x


def _same(sd: dict, torch_model: torch.nn.Module) -> None:
    want = torch_model.state_dict()
    assert sorted(sd) == sorted(want)
    for key, value in want.items():
        got = np.asarray(sd[key])
        assert got.dtype == value.numpy().dtype, key
        assert np.array_equal(got, value.numpy()), key


def test_linen_transfer_round_trip_keeps_buffers():
    tm, x = _trained_torch()
    variables = lstm_jax.params_from_torch(tm.state_dict(), FlaxClassifier(), example=(x,))
    assert set(variables) == {"params", "batch_stats"}
    assert int(variables["batch_stats"]["bn"]["num_batches_tracked"]) == 3
    _same(lstm_jax.params_to_torch(variables, FlaxClassifier(), example=(x,)), tm)
    _same(lstm_jax.params_to_torch(variables, FlaxClassifier()), tm)  # without example too
    want = tm(torch.from_numpy(x)).detach().numpy()
    assert_close(
        np.asarray(FlaxClassifier().apply(variables, x)), want, FORWARD[np.dtype("float32")]
    )


def test_params_alone_are_refused_naming_the_batch_norm():
    tm, x = _trained_torch()
    variables = lstm_jax.params_from_torch(tm.state_dict(), FlaxClassifier(), example=(x,))
    with pytest.raises(ValueError, match="bn keeps running statistics"):
        lstm_jax.params_to_torch({"params": variables["params"]}, FlaxClassifier())
    with pytest.raises(ValueError, match="batch_stats"):
        lstm_jax.params_to_torch(variables["params"], FlaxClassifier(), example=(x,))
    with pytest.raises(ValueError, match=r"bn\.running_mean"):  # parameters only: buffers missing
        lstm_jax.params_from_torch(dict(tm.named_parameters()), FlaxClassifier(), example=(x,))


def test_flax_batch_norm_maps_scale_and_statistics_with_a_warning():
    tm, x = _trained_torch()
    with pytest.warns(UserWarning, match="bn is Flax's BatchNorm"):
        variables = lstm_jax.params_from_torch(tm.state_dict(), FlaxOwnBatchNorm(), example=(x,))
    assert sorted(variables["batch_stats"]["bn"]) == ["mean", "var"]
    assert sorted(variables["params"]["bn"]) == ["bias", "scale"]
    want = tm(torch.from_numpy(x)).detach().numpy()
    got = FlaxOwnBatchNorm().apply(variables, x)
    assert_close(np.asarray(got), want, FORWARD[np.dtype("float32")])
    with pytest.warns(UserWarning, match="written as 0"):
        sd = lstm_jax.params_to_torch(variables, FlaxOwnBatchNorm())
    assert "bn.weight" in sd and "bn.scale" not in sd
    assert sd["bn.num_batches_tracked"].dtype == np.int64
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)


def test_a_flax_layer_without_a_rule_is_named():
    class Odd(nn.Module):
        def setup(self) -> None:
            self.up = nn.ConvTranspose(2, (3,))

        def __call__(self, x):
            return self.up(x)

    x = np.ones((1, 5, 2), np.float32)
    variables = Odd().init(jax.random.key(0), x)
    for kw in ({}, {"example": (x,)}):
        with pytest.raises(ValueError, match=r"up/kernel.*ConvTranspose"):
            lstm_jax.params_to_torch(variables, Odd(), **kw)


def test_nnx_state_dict_keeps_buffers():
    tm, x = _trained_torch()
    model = NnxClassifier(nnx.Rngs(0))
    lstm_jax.nnx.load_state_dict(model, tm.state_dict())
    _same(lstm_jax.nnx.state_dict(model), tm)
    assert int(model.bn.num_batches_tracked.get_value()) == 3
    model.eval()
    want = tm(torch.from_numpy(x)).detach().numpy()
    assert_close(np.asarray(model(x)), want, FORWARD[np.dtype("float32")])


def test_checkpoints_hold_buffers_both_ways(tmp_path):
    tm, x = _trained_torch()
    torch_file = tmp_path / "torch.safetensors"
    lstm_torch.save_checkpoint(torch_file, tm)  # the int64 counter no longer refused
    _, variables = lstm_jax.load_checkpoint(torch_file, FlaxClassifier(), example=(x,))
    assert int(variables["batch_stats"]["bn"]["num_batches_tracked"]) == 3

    jax_file = tmp_path / "jax.safetensors"
    lstm_jax.save_checkpoint(jax_file, variables, FlaxClassifier())
    fresh = TorchClassifier()
    lstm_torch.load_checkpoint(jax_file, fresh)
    _same(fresh.state_dict(), tm)
    assert fresh.bn.num_batches_tracked.dtype == torch.int64

    model = NnxClassifier(nnx.Rngs(1))
    lstm_jax.load_checkpoint(jax_file, model)
    nnx_file = tmp_path / "nnx.safetensors"
    lstm_jax.save_checkpoint(nnx_file, model)
    again = TorchClassifier()
    lstm_torch.load_checkpoint(nnx_file, again)
    _same(again.state_dict(), tm)


def test_counter_beyond_int32_is_refused_without_x64():
    tm, x = _trained_torch()
    sd = tm.state_dict()
    sd["bn.num_batches_tracked"] = torch.tensor(2**40)
    with pytest.raises(ValueError, match="num_batches_tracked: expected a count that int32"):
        lstm_jax.params_from_torch(sd, FlaxClassifier(), example=(x,))
    with jax.enable_x64(), warnings.catch_warnings():
        variables = lstm_jax.params_from_torch(sd, FlaxClassifier(), example=(x,))
        assert int(variables["batch_stats"]["bn"]["num_batches_tracked"]) == 2**40


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compare_with_torch_covers_buffers_and_a_training_step(dtype):
    tm, x = _trained_torch()
    tm = tm.to(torch.float64) if dtype == np.float64 else tm
    x = x.astype(dtype)
    with jax.enable_x64(dtype == np.float64):
        variables = lstm_jax.params_from_torch(tm.state_dict(), FlaxClassifier(), example=(x,))
        report = lstm_jax.compare_with_torch(tm, FlaxClassifier(), variables, x, train_step=True)
    groups = {d.group for d in report.differences}
    assert {"forward", "gradient", "buffers", "train forward", "train buffers"} <= groups
    assert report.ok, report
    assert int(tm.bn.num_batches_tracked) == 3 and not tm.training  # torch's model untouched
    names = {d.name for d in report.differences if d.group == "train buffers"}
    assert names == {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}

    # a wrong buffer is caught: running_var off by 1%
    with jax.enable_x64(dtype == np.float64):
        bad = jax.tree.map(lambda a: a, variables)
        bad["batch_stats"]["bn"]["running_var"] = bad["batch_stats"]["bn"]["running_var"] * 1.01
        report = lstm_jax.compare_with_torch(tm, FlaxClassifier(), bad, x)
    assert not report.ok
    assert not report.largest("buffers").ok


def test_flax_batch_norm_is_refused_for_the_training_step():
    """Flax's nn.BatchNorm transfers and matches in eval mode, but its training update is
    not torch's: the training-step comparison refuses it."""

    class FlaxBN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            out, _ = lstm_jax.LSTM(6, batch_first=True, name="lstm")(x)
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(out[:, -1])
            return nn.Dense(2, name="fc")(nn.Dropout(0.3, deterministic=not train)(h))

    tm, x = _trained_torch()
    with pytest.warns(UserWarning, match="Flax's"):
        variables = lstm_jax.params_from_torch(tm.state_dict(), FlaxBN(), example=(x,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert lstm_jax.compare_with_torch(tm, FlaxBN(), variables, x).ok  # eval mode: exact
        with pytest.raises(ValueError, match="bn is Flax's BatchNorm, whose training update"):
            lstm_jax.compare_with_torch(tm, FlaxBN(), variables, x, train_step=True)


def test_nnx_compare_covers_buffers_and_a_training_step():
    tm, x = _trained_torch()
    model = NnxClassifier(nnx.Rngs(0))
    lstm_jax.nnx.load_state_dict(model, tm.state_dict())
    report = lstm_jax.compare_with_torch(tm, model, x, train_step=True)
    assert {"buffers", "train forward", "train buffers"} <= {d.group for d in report.differences}
    assert report.ok, report
    assert int(model.bn.num_batches_tracked.get_value()) == 3  # the module untouched

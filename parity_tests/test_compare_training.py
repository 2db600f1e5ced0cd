"""``lstm_jax.compare_training`` (issue 22): ok for true ports, not ok for wrong ones.

A report is ok when ``lstm_torch.fit`` and ``lstm_jax.fit`` train a model and its port
alike; it must fail when the port's training differs a little: a learning rate 1%
off, one initial weight perturbed by 1e-3, a LayerNorm epsilon other than torch's.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import own_training_models as own
import pytest
import torch
from flax import nnx

import lstm_jax
from lstm_jax.common.tolerances import TRAINING
from lstm_jax.interop import compare_training as module

BATCH = 4


def report_for(kind: str, **changes: Any) -> lstm_jax.TrainingReport:
    keywords = own.data(kind)
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    variables = own.init_variables(kind, {"xs": xs, **keywords}, BATCH)
    call = dict(optimizer=lstm_jax.Adam(0.01), epochs=3, batch_size=BATCH, **keywords)
    call["shuffle_seed"] = None if keywords.get("stateful") else 0
    call.update(changes)
    return lstm_jax.compare_training(
        own.torch_model(kind), own.FLAX[kind](), variables, xs, ys, **call
    )


@pytest.mark.parametrize("kind", ["classifier", "packed", "stateful"])
def test_a_true_port_trains_alike(kind: str) -> None:
    report = report_for(kind)
    assert report.ok, str(report)
    assert len(report.losses) == 3
    assert {d.name for d in report.parameters} == set(own.torch_model(kind).state_dict())
    assert all(d.scaled <= TRAINING[np.dtype(np.float32)] for d in report.losses)
    text = str(report)
    assert "result: OK" in text and "loss epoch 3" in text and "lstm.weight_hh_l0" in text


def test_the_report_holds_lstm_torch_fit_s_losses() -> None:
    """The torch column is lstm_torch.fit's own run, from the torch model's weights
    (which compare_training leaves unchanged)."""
    keywords = own.data("classifier")
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    model = own.torch_model("classifier")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    variables = own.init_variables("classifier", {"xs": xs}, BATCH)
    call = dict(optimizer=lstm_jax.SGD(0.1), epochs=2, batch_size=BATCH, loss="cross_entropy")
    report = lstm_jax.compare_training(
        model, own.FlaxClassifier(), variables, xs, ys, shuffle_seed=1, **call
    )
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value), key
    expected = lstm_torch_fit(own.torch_model("classifier"), xs, ys, shuffle_seed=1, **call)
    np.testing.assert_array_equal(report.torch_losses, expected)


def lstm_torch_fit(*args: Any, **kwargs: Any) -> np.ndarray:
    import lstm_torch

    return lstm_torch.fit(*args, **kwargs)


def _with_lr_off(fit: Any, *args: Any, optimizer: Any, **kwargs: Any) -> Any:
    return fit(*args, optimizer=lstm_jax.Adam(optimizer.lr * 1.01), **kwargs)


def _with_weight_off(fit: Any, model: Any, variables: Any, *args: Any, **kwargs: Any) -> Any:
    params = variables["params"]
    kernel = params["head"]["kernel"]
    changed = {**params, "head": {**params["head"], "kernel": kernel.at[0, 0].add(1e-3)}}
    return fit(model, {**variables, "params": changed}, *args, **kwargs)


@pytest.mark.parametrize("wrong", [_with_lr_off, _with_weight_off])
def test_a_port_that_trains_otherwise_fails(wrong: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(module, "jax_fit", functools.partial(wrong, module.jax_fit))
    report = report_for("classifier")
    assert not report.ok
    text = str(report)
    assert "result: FAIL" in text and "FAIL" in text.splitlines()[-1]


class Normed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(own.FEATURES, own.HIDDEN)
        self.norm = torch.nn.LayerNorm(own.HIDDEN)
        self.head = torch.nn.Linear(own.HIDDEN, own.CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.norm(out[-1]))


class FlaxNormed(fnn.Module):
    epsilon: float = 1e-5  # torch's; Flax's default is 1e-6

    def setup(self) -> None:
        self.lstm = lstm_jax.LSTM(own.HIDDEN)
        self.norm = fnn.LayerNorm(epsilon=self.epsilon)
        self.head = fnn.Dense(own.CLASSES)

    def __call__(self, x: Any) -> Any:
        out, _ = self.lstm(x)
        return self.head(self.norm(out[-1]))


@pytest.mark.parametrize(("epsilon", "ok"), [(1e-5, True), (1e-1, False)])
def test_a_layer_that_differs_is_caught(epsilon: float, ok: bool) -> None:
    keywords = own.data("classifier")
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    torch.manual_seed(0)
    model = Normed()
    flax_model = FlaxNormed(epsilon)
    variables = flax_model.init(jax.random.key(0), jnp.asarray(np.swapaxes(xs[:BATCH], 0, 1)))
    report = lstm_jax.compare_training(
        model, flax_model, variables, xs, ys, optimizer=lstm_jax.SGD(0.1), epochs=2,
        batch_size=BATCH, loss="cross_entropy",
    )  # fmt: skip
    assert report.ok is ok, str(report)


class NNXClassifier(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.lstm = lstm_jax.nnx.LSTM(own.FEATURES, own.HIDDEN, rngs=rngs)
        self.head = nnx.Linear(own.HIDDEN, own.CLASSES, rngs=rngs)

    def __call__(self, x: Any) -> Any:
        out, _ = self.lstm(x)
        return self.head(out[-1])


def test_an_nnx_port_takes_no_variables() -> None:
    keywords = own.data("classifier")
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    port = NNXClassifier(nnx.Rngs(0))
    before = nnx.state(port, nnx.Param)
    report = lstm_jax.compare_training(
        own.torch_model("classifier"), port, None, xs, ys, optimizer=lstm_jax.SGD(0.1),
        epochs=2, batch_size=BATCH, loss="cross_entropy",
    )  # fmt: skip
    assert report.ok, str(report)
    after = nnx.state(port, nnx.Param)  # a clone trained, the port left as it was
    assert all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    )
    with pytest.raises(TypeError, match="holds its parameters: pass variables=None"):
        lstm_jax.compare_training(
            own.torch_model("classifier"), port, {"params": {}}, xs, ys,
            optimizer=lstm_jax.SGD(0.1), epochs=1,
        )  # fmt: skip


class Dropped(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(own.FEATURES, own.HIDDEN)
        self.drop = torch.nn.Dropout(0.2)
        self.head = torch.nn.Linear(own.HIDDEN, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.drop(out[-1]))


class FlaxDropped(fnn.Module):
    def setup(self) -> None:
        self.lstm = lstm_jax.LSTM(own.HIDDEN)
        self.drop = fnn.Dropout(0.2)
        self.head = fnn.Dense(2)

    def __call__(self, x: Any, deterministic: bool = True) -> Any:
        out, _ = self.lstm(x)
        return self.head(self.drop(out[-1], deterministic=deterministic))


def test_dropout_is_compared_statistically() -> None:
    keywords = own.data("conv", n=16)
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    torch.manual_seed(0)
    model = Dropped()
    variables = FlaxDropped().init(jax.random.key(0), jnp.asarray(np.swapaxes(xs[:4], 0, 1)))
    call = dict(optimizer=lstm_jax.Adam(0.01), epochs=6, batch_size=BATCH, shuffle_seed=0)
    with pytest.raises(ValueError, match=re.escape("draws dropout in training (drop): pass rng=")):
        lstm_jax.compare_training(model, FlaxDropped(), variables, xs, ys, **call)
    report = lstm_jax.compare_training(
        model, FlaxDropped(), variables, xs, ys, rng=jax.random.key(0), **call
    )
    assert report.dropout == ("drop",)
    assert report.statistical is not None and report.ok, str(report)
    text = str(report)
    assert "the masks differ" in text and "n/a" in text


def test_bad_arguments_are_clear_errors() -> None:
    keywords = own.data("classifier")
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    model, port = own.torch_model("classifier"), own.FlaxClassifier()
    variables = own.init_variables("classifier", {"xs": xs}, BATCH)
    with pytest.raises(TypeError, match=r"optimizer: expected an lstm_jax\.SGD"):
        lstm_jax.compare_training(model, port, variables, xs, ys, optimizer=None, epochs=1)
    with pytest.raises(TypeError, match=r"a pair \(torch_loss, jax_loss\)"):
        lstm_jax.compare_training(
            model, port, variables, xs, ys, optimizer=lstm_jax.SGD(0.1), epochs=1, loss=len
        )
    with pytest.raises(ValueError, match=r"head\.weight"):  # the port of another model
        lstm_jax.compare_training(
            own.torch_model("stateful"), port, variables, xs, ys,
            optimizer=lstm_jax.SGD(0.1), epochs=1,
        )  # fmt: skip


def test_float64_ports_agree_to_the_float64_tolerance() -> None:
    keywords = own.data("conv")
    xs, ys = keywords.pop("xs").astype(np.float64), keywords.pop("ys").astype(np.float64)
    with jax.enable_x64(True):
        variables = own.init_variables("conv", {"xs": xs, **keywords}, BATCH)
    report = lstm_jax.compare_training(
        own.torch_model("conv").double(), own.FlaxConvRegressor(), variables, xs, ys,
        optimizer=lstm_jax.SGD(0.05, momentum=0.9), epochs=2, batch_size=BATCH,
        shuffle_seed=0, **keywords,
    )  # fmt: skip
    assert report.dtype == np.float64 and report.ok, str(report)
    assert all(d.tolerance == TRAINING[np.dtype(np.float64)] for d in report.parameters)


def test_the_lecture_models_compare_too() -> None:
    import lstm_torch

    rng = np.random.default_rng(0)
    xs = rng.standard_normal((8, 4, 2)).astype(np.float32)
    ys = xs[:, :, 0].sum(1, keepdims=True)
    torch.manual_seed(0)
    model = lstm_torch.LSTMModeler(2, 5, 1)
    flax_model = lstm_jax.LSTMModeler(2, 5, 1)
    variables = flax_model.init(jax.random.key(0), jnp.zeros((4, 2, 2), jnp.float32))
    report = lstm_jax.compare_training(
        model, flax_model, variables, xs, ys, optimizer=lstm_jax.SGD(0.05), epochs=2,
        batch_size=2, shuffle_seed=0,
    )  # fmt: skip
    assert report.ok, str(report)
    assert {d.name for d in report.parameters} == set(model.state_dict())

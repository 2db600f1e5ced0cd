"""``lstm_torch.fit`` on models of one's own (issue 22), against two references.

- torch itself: a training loop written out here by hand, over the same data order
  (``lstm_jax.epoch_orders``): ``lstm_torch.fit`` must give it bitwise.
- ``lstm_jax.fit`` on the Flax port, from the same weights, with the same call:
  per-epoch losses and final parameters within ``TRAINING``.

The models (``own_training_models.py``) are ones the other tests never use: an LSTM
classifier (cross_entropy), a batch-first Conv1d + LSTM regressor, an Embedding +
2-layer LSTM over packed sequences (``seq_lengths``), a stateful forecaster.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import optax
import own_training_models as own
import pytest
import torch
import torch.nn.functional as F

import lstm_jax
import lstm_torch
from lstm_jax.common.data import LOSSES, epoch_orders
from lstm_jax.common.tolerances import TRAINING, assert_close
from lstm_torch.losses import NAMED

F32 = np.dtype(np.float32)
BATCH = 4


def hand_loop(model: torch.nn.Module, xs: np.ndarray, ys: np.ndarray, epochs: int) -> list[float]:
    """The classifier trained as a user would write it: Adam, cross entropy, batches of
    BATCH in ``epoch_orders(seed 0)``; per-epoch sums of batch losses."""
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x_all, y_all = torch.from_numpy(xs), torch.from_numpy(ys)
    totals = []
    for order in epoch_orders(len(xs), epochs, 0):
        total = 0.0
        for start in range(0, len(order), BATCH):
            idx = torch.from_numpy(order[start : start + BATCH])
            opt.zero_grad()
            batch_loss = F.cross_entropy(model(x_all[idx].transpose(0, 1)), y_all[idx])
            batch_loss.backward()
            opt.step()
            total += batch_loss.item()
        totals.append(total)
    return totals


def test_fit_equals_a_hand_written_loop_bitwise() -> None:
    keywords = own.data("classifier", n=10)  # 10 = two batches of 4 and one of 2
    model = own.torch_model("classifier")
    reference = copy.deepcopy(model)
    losses = lstm_torch.fit(
        model,
        keywords["xs"],
        keywords["ys"],
        optimizer=lstm_jax.Adam(0.01),
        epochs=3,
        batch_size=BATCH,
        shuffle_seed=0,
        loss="cross_entropy",
    )
    expected = hand_loop(reference, keywords["xs"], keywords["ys"], 3)
    np.testing.assert_array_equal(losses, np.asarray(expected))
    for key, want in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], want), key


def jax_port(kind: str, model: torch.nn.Module, keywords: dict[str, Any]) -> tuple[Any, Any]:
    """The Flax port of ``model`` with its weights (through the key rules)."""
    flax_model = own.FLAX[kind]()
    variables = own.init_variables(kind, keywords, BATCH)
    sd = lstm_jax.params_to_torch(variables, model=flax_model)
    assert set(sd) == set(model.state_dict())  # the port names its parameters as torch's
    x = np.asarray(keywords["xs"][:BATCH])
    x = x if keywords.get("batch_first") else np.swapaxes(x, 0, 1)
    example = (x, keywords["seq_lengths"][:BATCH]) if "seq_lengths" in keywords else (x,)
    return flax_model, lstm_jax.params_from_torch(
        model.state_dict(), model=flax_model, example=example
    )


CASES = {
    # kind: (torch optimizer spec, the same for JAX)
    "classifier": lstm_jax.SGD(0.1, momentum=0.9),
    "conv": lstm_jax.Adam(0.01),
    "packed": lstm_jax.AdamW(0.01, weight_decay=0.1),
    "stateful": lstm_jax.SGD(0.05, momentum=0.5, nesterov=True),
    "steps": lstm_jax.SGD(0.5),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_torch_fit_matches_jax_fit_on_the_port(kind: str) -> None:
    keywords = own.data(kind)
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    model = own.torch_model(kind)
    flax_model, variables = jax_port(kind, model, {"xs": xs, **keywords})
    shuffle = None if keywords.get("stateful") else 1
    call = dict(optimizer=CASES[kind], epochs=3, batch_size=BATCH, shuffle_seed=shuffle)
    torch_losses = lstm_torch.fit(model, xs, ys, **call, **keywords)
    trained, jax_losses = lstm_jax.fit(flax_model, variables, xs, ys, **call, **keywords)
    assert np.all(np.diff(torch_losses) != 0)  # it trained
    assert_close(jax_losses, torch_losses, TRAINING[F32], f"{kind}: per-epoch losses")
    final = lstm_jax.params_to_torch(trained, model=flax_model)
    for key, value in model.state_dict().items():
        assert_close(final[key], value.numpy(), TRAINING[F32], f"{kind}: {key}")


def test_native_torch_optimizer_matches_optax() -> None:
    keywords = own.data("classifier")
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    model = own.torch_model("classifier", seed=1)
    flax_model, variables = jax_port("classifier", model, {"xs": xs})
    native = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    call = dict(epochs=3, batch_size=BATCH, shuffle_seed=2, loss="cross_entropy")
    torch_losses = lstm_torch.fit(model, xs, ys, optimizer=native, **call)
    _, jax_losses = lstm_jax.fit(
        flax_model, variables, xs, ys, optimizer=optax.sgd(0.05, momentum=0.9), **call
    )
    assert_close(jax_losses, torch_losses, TRAINING[F32], "native SGD: per-epoch losses")


def test_torch_losses_cover_the_shared_names() -> None:
    assert set(NAMED) == set(LOSSES)


def test_cross_entropy_takes_classes_on_the_last_axis() -> None:
    """Per-step (B, T, C) logits: the classes are the last axis (as lstm_jax's), not
    nn.CrossEntropyLoss's axis 1."""
    logits = torch.randn(2, 3, 5)
    labels = torch.randint(0, 5, (2, 3))
    expected = F.cross_entropy(logits.transpose(1, 2), labels)
    torch.testing.assert_close(NAMED["cross_entropy"](logits, labels), expected)


def test_resume_from_checkpoint_dir_is_bitwise(tmp_path: Any) -> None:
    """Stop after 2 epochs, resume to 4 in a new call: as one run of 4, bitwise."""
    keywords = own.data("conv")
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    call = dict(optimizer=lstm_jax.Adam(0.02), batch_size=BATCH, shuffle_seed=3, **keywords)
    whole = own.torch_model("conv")
    expected = lstm_torch.fit(whole, xs, ys, epochs=4, **call)
    stopped = own.torch_model("conv")
    first = lstm_torch.fit(stopped, xs, ys, epochs=2, checkpoint_dir=tmp_path, **call)
    resumed_model = own.torch_model("conv", seed=7)  # other weights: the checkpoint's load
    resumed = lstm_torch.fit(resumed_model, xs, ys, epochs=4, checkpoint_dir=tmp_path, **call)
    np.testing.assert_array_equal(first, expected[:2])
    np.testing.assert_array_equal(resumed, expected)
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
    assert sorted(p.name for p in tmp_path.iterdir())[-1] == "epoch_00000004.pt"


def test_resume_refuses_another_layout(tmp_path: Any) -> None:
    keywords = own.data("classifier")
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    call = dict(optimizer=lstm_jax.SGD(0.1), epochs=1, loss="cross_entropy")
    call["checkpoint_dir"] = tmp_path
    lstm_torch.fit(own.torch_model("classifier"), xs, ys, **call)
    with pytest.raises(ValueError, match="batch_first differs"):
        lstm_torch.fit(own.torch_model("classifier"), xs, ys, batch_first=True, **call)


def test_model_mode_is_put_back() -> None:
    keywords = own.data("classifier")
    model = own.torch_model("classifier").eval()
    lstm_torch.fit(
        model, keywords["xs"], keywords["ys"], optimizer=lstm_jax.SGD(0.1), epochs=1,
        loss="cross_entropy", progress=True,
    )  # fmt: skip
    assert not model.training


class NoLengths(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[-1])


class WrongCarry(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 2)

    def forward(self, x: torch.Tensor, hidden: Any = None) -> Any:
        out, (h, c) = self.lstm(x, hidden)
        return out[-1], (h,) if hidden is not None else (h, c)


X = np.zeros((8, 4, 3), np.float32)
Y1 = np.zeros((8, 1), np.float32)
Y2 = np.zeros((8, 2), np.float32)
BAD = {
    "not a module": (lambda: "lstm", Y1, {}, TypeError, "model: expected an lstm_torch"),
    "seq_lengths without the keyword": (
        NoLengths, Y1, {"seq_lengths": np.full(8, 4)}, TypeError,
        "seq_lengths: NoLengths.forward takes no seq_lengths argument",
    ),
    "stateful without a carry": (
        NoLengths, Y1, {"stateful": True, "batch_size": 4}, TypeError,
        "stateful=True: expected NoLengths.forward to take a carry after x",
    ),
    "carry of another structure": (
        WrongCarry, Y2, {"stateful": True, "batch_size": 4}, TypeError,
        "stateful training: WrongCarry returned a carry of structure",
    ),
    "mse targets of another shape": (
        NoLengths, Y2, {}, ValueError,
        "mse: expected targets of the predictions' shape (1, 1), got (1, 2)",
    ),
    "labels beyond the classes": (
        NoLengths, np.full(8, 3), {"loss": "cross_entropy"}, ValueError,
        "ys: class labels must lie in [0, 1)",
    ),
    "a JAX loss": (
        NoLengths, Y1, {"loss": optax.losses.squared_error}, TypeError,
        "loss: expected a function of torch tensors",
    ),
    "batch_first not a bool": (NoLengths, Y1, {"batch_first": 1}, TypeError, "batch_first"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_calls_are_clear_errors(case: str) -> None:
    build, ys, extra, error, message = BAD[case]
    torch.manual_seed(0)
    with pytest.raises(error, match=re.escape(message)):
        lstm_torch.fit(build(), X, ys, optimizer=lstm_jax.SGD(0.1), epochs=1, **extra)


def test_the_lecture_model_refuses_another_layout() -> None:
    model = lstm_torch.LSTMModeler(3, 4, 1)
    with pytest.raises(ValueError, match=r"batch_first: LSTMModeler sets its own layout"):
        lstm_torch.fit(model, X, Y1, optimizer=lstm_jax.SGD(0.1), epochs=1, batch_first=True)


WORKER = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
import own_training_models as own
import lstm_torch
from lstm_jax.common.optim import Adam

keywords = own.data("conv", n=16)
xs, ys = keywords.pop("xs"), keywords.pop("ys")
model = own.torch_model("conv")
losses = lstm_torch.fit(model, xs, ys, optimizer=Adam(0.01), epochs={epochs}, batch_size=4,
                        shuffle_seed=0, checkpoint_dir=sys.argv[1], **keywords)
np.savez(sys.argv[2], losses=losses, **{{k: v.numpy() for k, v in model.state_dict().items()}})
"""


@pytest.mark.slow
def test_a_killed_run_of_a_users_model_resumes_bitwise(tmp_path: Any) -> None:
    """SIGKILL after a few epochs' checkpoints, run again: as a run never stopped, bitwise."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    epochs = 20
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), epochs=epochs))
    directory, result = tmp_path / "run", tmp_path / "result.npz"
    argv = [sys.executable, str(script), str(directory), str(result)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (directory / "epoch_00000003.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "ended before the kill"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and not result.exists()
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    resumed = np.load(result)
    keywords = own.data("conv", n=16)
    xs, ys = keywords.pop("xs"), keywords.pop("ys")
    model = own.torch_model("conv")
    expected = lstm_torch.fit(
        model, xs, ys, optimizer=lstm_jax.Adam(0.01), epochs=epochs, batch_size=4,
        shuffle_seed=0, **keywords,
    )  # fmt: skip
    np.testing.assert_array_equal(resumed["losses"], expected)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(resumed[key], value.numpy(), err_msg=key)


class BatchFirstGRU(torch.nn.Module):
    """(B, T, F) -> a batch-first GRU -> (B, 2) from the last step; no ``batch_first``
    attribute of its own, so fit gives it time-major batches unless told."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(3, 5, batch_first=True)
        self.head = torch.nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_torch_a_batch_first_model_trained_time_major_is_told_its_layout(loss: str) -> None:
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((8, 6, 3)).astype(np.float32)
    ys = rng.standard_normal((8, 2)).astype(np.float32) if loss == "mse" else np.arange(8) % 2
    model = BatchFirstGRU()
    options = dict(optimizer=lstm_jax.SGD(0.1), epochs=1, batch_size=4, loss=loss)
    with pytest.raises(ValueError) as refused:
        lstm_torch.fit(model, xs, ys, **options)
    message = str(refused.value)
    assert "the prediction has 6 rows where the batch has 4 samples" in message, message
    assert "(B, T, ...) with batch_first=True" in message, message
    losses = lstm_torch.fit(model, xs, ys, **options, batch_first=True)
    assert losses.shape == (1,) and np.isfinite(losses).all()

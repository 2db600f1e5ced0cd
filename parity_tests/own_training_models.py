"""Small models of one's own, written as users write them, in torch and as their Flax port,
for the training tests (``test_torch_fit_any_model.py``, ``test_compare_training.py``).

Each Flax port names its submodules as the torch model's attributes, so the
transfer's key rules pair the parameters.

- ``classifier``: ``nn.LSTM`` -> last step -> ``nn.Linear``, time-major, class logits.
- ``conv``: ``nn.Conv1d`` -> ReLU -> ``nn.LSTM(batch_first=True)`` -> ``nn.Linear``,
  a batch-first regressor.
- ``packed``: ``nn.Embedding`` -> ``nn.LSTM`` over ``pack_padded_sequence`` (the
  ``seq_lengths`` keyword) -> the last layer's ``h_n`` -> ``nn.Linear``.
- ``stateful``: ``nn.LSTM`` + ``nn.Linear`` returning ``(prediction, (h, c))``, for
  training with the state carried across batches.
- ``steps``: ``nn.Embedding`` -> bidirectional batch-first ``nn.LSTM`` -> ``nn.Linear``
  per step: (B, T, C) logits and a label per step.
"""

from __future__ import annotations

from typing import Any

import flax.linen as fnn
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstm_jax
from lstm_jax.common.data import stateful_windows

FEATURES, HIDDEN, CLASSES, VOCAB, CHANNELS = 3, 6, 4, 9, 5


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, HIDDEN)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, F) -> (B, C)
        out, _ = self.lstm(x)
        return self.head(out[-1])


class FlaxClassifier(fnn.Module):
    def setup(self) -> None:
        self.lstm = lstm_jax.LSTM(HIDDEN)
        self.head = fnn.Dense(CLASSES)

    def __call__(self, x: Any) -> Any:
        out, _ = self.lstm(x)
        return self.head(out[-1])


class ConvRegressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(FEATURES, CHANNELS, 3, padding=1)
        self.lstm = nn.LSTM(CHANNELS, HIDDEN, batch_first=True)
        self.fc = nn.Linear(HIDDEN, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, 2)
        h = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        out, _ = self.lstm(h)
        return self.fc(out[:, -1])


class FlaxConvRegressor(fnn.Module):
    def setup(self) -> None:
        self.conv = fnn.Conv(CHANNELS, (3,), padding=[(1, 1)])
        self.lstm = lstm_jax.LSTM(HIDDEN, batch_first=True)
        self.fc = fnn.Dense(2)

    def __call__(self, x: Any) -> Any:
        out, _ = self.lstm(fnn.relu(self.conv(x)))
        return self.fc(out[:, -1])


class PackedTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, FEATURES)
        self.lstm = nn.LSTM(FEATURES, HIDDEN, num_layers=2, batch_first=True)
        self.fc = nn.Linear(HIDDEN, CLASSES)

    def forward(self, tokens: torch.Tensor, seq_lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embedding(tokens), seq_lengths, batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.lstm(packed)
        return self.fc(h_n[-1])


class FlaxPackedTagger(fnn.Module):
    def setup(self) -> None:
        self.embedding = fnn.Embed(VOCAB, FEATURES)
        self.lstm = lstm_jax.LSTM(HIDDEN, num_layers=2, batch_first=True)
        self.fc = fnn.Dense(CLASSES)

    def __call__(self, tokens: Any, seq_lengths: Any) -> Any:
        _, (h_n, _) = self.lstm(self.embedding(tokens), seq_lengths=seq_lengths)
        return self.fc(h_n[-1])


class StatefulForecaster(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, HIDDEN)
        self.fc = nn.Linear(HIDDEN, FEATURES)

    def forward(self, x: torch.Tensor, hidden: Any = None) -> Any:  # (T, B, F)
        out, hidden = self.lstm(x, hidden)
        return self.fc(out[-1]), hidden


class FlaxStatefulForecaster(fnn.Module):
    def setup(self) -> None:
        self.lstm = lstm_jax.LSTM(HIDDEN)
        self.fc = fnn.Dense(FEATURES)

    def __call__(self, x: Any, hidden: Any = None) -> Any:
        out, hidden = self.lstm(x, hidden)
        return self.fc(out[-1]), hidden


class StepTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, FEATURES)
        self.lstm = nn.LSTM(FEATURES, HIDDEN, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * HIDDEN, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, C)
        out, _ = self.lstm(self.embedding(tokens))
        return self.fc(out)


class FlaxStepTagger(fnn.Module):
    def setup(self) -> None:
        self.embedding = fnn.Embed(VOCAB, FEATURES)
        self.lstm = lstm_jax.LSTM(HIDDEN, batch_first=True, bidirectional=True)
        self.fc = fnn.Dense(CLASSES)

    def __call__(self, tokens: Any) -> Any:
        out, _ = self.lstm(self.embedding(tokens))
        return self.fc(out)


TORCH = {
    "classifier": Classifier,
    "conv": ConvRegressor,
    "packed": PackedTagger,
    "stateful": StatefulForecaster,
    "steps": StepTagger,
}
FLAX = {
    "classifier": FlaxClassifier,
    "conv": FlaxConvRegressor,
    "packed": FlaxPackedTagger,
    "stateful": FlaxStatefulForecaster,
    "steps": FlaxStepTagger,
}


def torch_model(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TORCH[kind]()


def data(kind: str, n: int = 12, steps: int = 5, seed: int = 0) -> dict[str, Any]:
    """The fit keywords of each model's data: xs, ys, loss (and seq_lengths, batch_first)."""
    rng = np.random.default_rng(seed)
    if kind == "classifier":
        xs = rng.standard_normal((n, steps, FEATURES)).astype(np.float32)
        ys = (xs[:, :, 0].sum(1) > 0).astype(np.int64) + 2 * (xs[:, -1, 1] > 0)
        return {"xs": xs, "ys": ys, "loss": "cross_entropy"}
    if kind == "conv":
        xs = rng.standard_normal((n, steps, FEATURES)).astype(np.float32)
        ys = np.stack([xs[:, :, 0].mean(1), xs[:, -1, 2]], axis=1).astype(np.float32)
        return {"xs": xs, "ys": ys, "loss": "mse", "batch_first": True}
    if kind == "packed":
        lengths = rng.integers(1, steps + 1, n)
        tokens = rng.integers(1, VOCAB, (n, steps))
        for row, length in enumerate(lengths):
            tokens[row, length:] = 0
        ys = tokens.sum(1) % CLASSES
        return {
            "xs": tokens,
            "ys": ys,
            "loss": "cross_entropy",
            "seq_lengths": lengths,
            "batch_first": True,
        }
    if kind == "stateful":
        series = np.sin(np.arange(n * steps + 1)[:, None] * np.array([0.3, 0.5, 0.7]))
        xs, ys = stateful_windows(series.astype(np.float32), 4, steps)
        return {"xs": xs, "ys": ys[:, -1], "loss": "mse", "stateful": True}
    if kind == "steps":  # a label per step: (B, T, C) logits, classes on the last axis
        tokens = rng.integers(0, VOCAB, (n, steps))
        return {"xs": tokens, "ys": tokens % CLASSES, "loss": "cross_entropy", "batch_first": True}
    raise KeyError(kind)


def init_variables(kind: str, keywords: dict[str, Any], batch_size: int) -> Any:
    """The Flax port's variables from its ``init`` on the first batch (random weights:
    the tests overwrite them with the torch model's)."""
    import jax

    model = FLAX[kind]()
    x = np.asarray(keywords["xs"][:batch_size])
    if not keywords.get("batch_first", False):
        x = np.swapaxes(x, 0, 1)
    args: tuple[Any, ...] = (jnp.asarray(x),)
    if "seq_lengths" in keywords:
        args = (*args, jnp.asarray(keywords["seq_lengths"][:batch_size]))
    return model.init(jax.random.key(0), *args)

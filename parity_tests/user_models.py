"""Models around an LSTM written as users write them, in torch and as their Flax mirror.

Shared by ``test_own_models.py``, ``test_compare_any.py`` and ``test_checkpoint_any.py``
(import as ``import user_models``; pytest puts ``parity_tests/`` on ``sys.path``).
Each Flax mirror names its submodules as the torch model's attributes.

- :class:`WordLM` / :class:`FlaxWordLM`: pytorch/examples' word-language model,
  ``Embedding`` -> 2-layer ``LSTM`` with dropout -> ``Linear``, tied or untied decoder.
- :class:`Sentiment` / :class:`FlaxSentiment`: ``Embedding(padding_idx)`` ->
  bidirectional ``batch_first`` LSTM over ``pack_padded_sequence`` ->
  ``cat(h_n[-2], h_n[-1])`` -> ``Linear``.
- :class:`ConvTagger` / :class:`FlaxConvTagger`: ``Conv1d`` -> ``LayerNorm`` -> a
  ``ModuleList`` of two LSTMs -> an ``nn.Sequential`` head.
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

VOCAB, EMBED, HIDDEN, CLASSES = 13, 6, 6, 3


# --- word language model -----------------------------------------------------------------


class WordLM(nn.Module):
    def __init__(self, tie: bool = False, dropout: float = 0.3) -> None:
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, EMBED)
        self.rnn = nn.LSTM(EMBED, HIDDEN, 2, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(HIDDEN, VOCAB)
        if tie:
            self.decoder.weight = self.encoder.weight

    def forward(self, tokens: torch.Tensor, hidden: Any = None) -> Any:
        out, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        return self.decoder(self.drop(out)), hidden


class TiedDecoder(fnn.Module):
    """The tied decoder's own parameter: its bias (the weight is the encoder's)."""

    features: int

    @fnn.compact
    def __call__(self, logits: jnp.ndarray) -> jnp.ndarray:
        return logits + self.param("bias", fnn.initializers.zeros, (self.features,))


class FlaxWordLM(fnn.Module):
    tie: bool = False
    dropout: float = 0.3

    def setup(self) -> None:
        self.encoder = fnn.Embed(VOCAB, EMBED)
        self.rnn = lstm_jax.LSTM(HIDDEN, 2, dropout=self.dropout)
        self.drop = fnn.Dropout(self.dropout)
        self.decoder = TiedDecoder(VOCAB) if self.tie else fnn.Dense(VOCAB)

    def __call__(self, tokens: Any, hidden: Any = None, deterministic: bool = True) -> Any:
        x = self.drop(self.encoder(tokens), deterministic=deterministic)
        out, hidden = self.rnn(x, hidden, deterministic=deterministic)
        out = self.drop(out, deterministic=deterministic)
        logits = self.decoder(self.encoder.attend(out)) if self.tie else self.decoder(out)
        return logits, hidden


# --- packed bidirectional sentiment classifier -------------------------------------------


class Sentiment(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBED, padding_idx=0)
        self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * HIDDEN, CLASSES)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.lstm(packed)
        return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=-1))


class FlaxSentiment(fnn.Module):
    def setup(self) -> None:
        self.embedding = fnn.Embed(VOCAB, EMBED)
        self.lstm = lstm_jax.LSTM(HIDDEN, batch_first=True, bidirectional=True)
        self.fc = fnn.Dense(CLASSES)

    def __call__(self, tokens: Any, lengths: Any) -> Any:
        _, (h_n, _) = self.lstm(self.embedding(tokens), seq_lengths=lengths)
        return self.fc(jnp.concatenate([h_n[-2], h_n[-1]], axis=-1))


# --- conv + layer norm + list-held LSTMs + sequential head -------------------------------


class ConvTagger(nn.Module):
    def __init__(self, features: int = 4, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(features, HIDDEN, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(HIDDEN)
        self.layers = nn.ModuleList([nn.LSTM(HIDDEN, HIDDEN), nn.LSTM(HIDDEN, HIDDEN)])
        self.head = nn.Sequential(nn.Linear(HIDDEN, 5), nn.Tanh(), nn.Linear(5, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, F)
        h = self.norm(self.conv(x.transpose(1, 2)).transpose(1, 2)).transpose(0, 1)
        for layer in self.layers:
            h, _ = layer(h)
        return self.head(h)


class FlaxConvTagger(fnn.Module):
    kernel: int = 3

    def setup(self) -> None:
        pad = self.kernel // 2
        self.conv = fnn.Conv(HIDDEN, (self.kernel,), padding=[(pad, pad)])
        self.norm = fnn.LayerNorm(epsilon=1e-5)  # torch's default eps
        self.layers = [lstm_jax.LSTM(HIDDEN), lstm_jax.LSTM(HIDDEN)]
        self.head = fnn.Sequential([fnn.Dense(5), jnp.tanh, fnn.Dense(CLASSES)])

    def __call__(self, x: Any) -> Any:
        h = jnp.swapaxes(self.norm(self.conv(x)), 0, 1)
        for layer in self.layers:
            h, _ = layer(h)
        return self.head(h)


# --- inputs --------------------------------------------------------------------------------


def tokens(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, VOCAB, shape).astype(np.int64)


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) tokens padded with 0 after each row's length, and the (B,) lengths."""
    batch = tokens((len(lengths), max(lengths)), seed)
    for row, n in enumerate(lengths):
        batch[row, n:] = 0
    return batch, np.asarray(lengths, np.int64)


def features(shape: tuple[int, ...], seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def torch_model(kind: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A seeded torch model in eval mode: "lm", "lm-tied", "sentiment" or "conv"."""
    torch.manual_seed(seed)
    model = {
        "lm": lambda: WordLM(),
        "lm-tied": lambda: WordLM(tie=True),
        "sentiment": Sentiment,
        "conv": ConvTagger,
    }[kind]()
    with torch.no_grad():  # non-trivial norm parameters, so a swapped rule shows
        for name, p in model.named_parameters():
            if name.startswith("norm."):
                p.add_(torch.rand_like(p) * 0.5)
    return model.to(dtype).eval()


def flax_model(kind: str) -> fnn.Module:
    return {
        "lm": FlaxWordLM(),
        "lm-tied": FlaxWordLM(tie=True),
        "sentiment": FlaxSentiment(),
        "conv": FlaxConvTagger(),
    }[kind]


def example(kind: str, dtype: Any = np.float32) -> tuple[Any, ...]:
    """The positional call arguments of each model (the same for both backends)."""
    if kind.startswith("lm"):
        return (tokens((7, 3)),)
    if kind == "sentiment":
        return padded_batch([5, 2, 4, 1])
    return (features((2, 6, 4), dtype=dtype),)

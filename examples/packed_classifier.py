"""Classify digits read as variable-length column sequences with a bidirectional packed
LSTM, in both backends.

    python examples/packed_classifier.py

Data: scikit-learn's bundled 8×8 digits (``sklearn.datasets.load_digits``, no
download). Each image is read left to right, one step per pixel column (8
intensities / 16), from its first inked column to its last: a narrow "1" is a
short sequence, a wide "0" a long one (lengths 2 to 8, most 6). Sequences are padded at
the end to the longest one; a stratified 75/25 split.

The torch model is what a torch user writes for variable-length input, and its
Flax mirror names its submodules alike::

    rnn   nn.LSTM(8, H, batch_first=True,      | lstm_jax.LSTM(H, batch_first=True,
          bidirectional=True) over             |   bidirectional=True) called with
          pack_padded_sequence(x, lengths)     |   seq_lengths=lengths
    head  nn.Linear(2H, 10) on                 | flax.linen.Dense(10) on the same
          cat(h_n[-2], h_n[-1])                |

Both start from the same weights (``lstm_jax.params_from_torch(sd, model=,
example=)``) and train with Adam on cross-entropy over the same shuffled batches
(``lstm_jax.epoch_orders``); the JAX step is one ``jax.jit`` program around an
Optax update. Printed: the parity of the initial models (``compare_with_torch``,
which runs the packing torch model against the ``seq_lengths`` Flax model), each
epoch's loss in each backend, test accuracy of each, how often they predict the
same class, and training throughput (sequences per second; JAX's compilation timed
separately). The loss curves and the length histogram go to
``out/packed_classifier.png``.

Options (``--help``): ``--hidden``, ``--epochs``, ``--lr``, ``--batch-size``,
``--seed``, ``--plot PATH`` / ``--no-plot``, ``--torch-threads``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from _plotting import add_plot_arguments, pyplot, save
from _side_by_side import Stopwatch, jax_step, parity_summary, torch_step
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstm_jax
from lstm_jax.common.optim import Adam
from lstm_jax.common.tolerances import scaled_error
from lstm_jax.interop.precision import pinned_precision

CLASSES = 10
FEATURES = 8  # the pixels of one image column


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=32, help="LSTM hidden size per direction")
    p.add_argument("--epochs", type=int, default=15, help="epochs")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=64, help="batch size")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed, shuffle and split seed")
    p.add_argument("--limit", type=int, default=None, help="use only this many images")
    add_plot_arguments(p, "packed_classifier.png", "the loss curves and sequence lengths")
    p.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


# --- the data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequences:
    """Padded column sequences: ``x`` (N, T, 8) float32, ``lengths`` (N,) int64 in [1, T],
    ``labels`` (N,) int64."""

    x: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray

    def take(self, index: np.ndarray) -> Sequences:
        return Sequences(self.x[index], self.lengths[index], self.labels[index])


def as_columns(image: np.ndarray) -> np.ndarray:
    """An 8×8 image -> its columns from the first inked one to the last, (n, 8) in [0, 1]."""
    inked = np.flatnonzero(image.any(axis=0))
    return (image[:, inked[0] : inked[-1] + 1].T / 16.0).astype(np.float32)


def load(seed: int, limit: int | None = None) -> tuple[Sequences, Sequences]:
    """The digits as padded column sequences, split 75/25 stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images, labels = data.images, data.target.astype(np.int64)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    points = [as_columns(image) for image in images]
    lengths = np.array([len(p) for p in points], np.int64)
    x = np.zeros((len(points), int(lengths.max()), FEATURES), np.float32)
    for n, p in enumerate(points):
        x[n, : len(p)] = p
    everything = Sequences(x, lengths, labels)
    train, test = train_test_split(
        np.arange(len(labels)), test_size=0.25, random_state=seed, stratify=labels
    )
    return everything.take(train), everything.take(test)


# --- the models ----------------------------------------------------------------------------


class PackedClassifier(nn.Module):
    """The torch model: packed bidirectional LSTM, both final states into a linear head."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(FEATURES, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, CLASSES)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, 3) padded at the end, lengths (B,) -> class scores (B, 10)."""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.rnn(packed)
        return self.head(torch.cat([h_n[-2], h_n[-1]], dim=-1))


class FlaxPackedClassifier(fnn.Module):
    """The Flax mirror: ``seq_lengths`` does what packing does."""

    hidden: int

    def setup(self) -> None:
        self.rnn = lstm_jax.LSTM(self.hidden, batch_first=True, bidirectional=True)
        self.head = fnn.Dense(CLASSES)

    def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
        _, (h_n, _) = self.rnn(x, seq_lengths=lengths)
        return self.head(jnp.concatenate([h_n[-2], h_n[-1]], axis=-1))


# --- training ------------------------------------------------------------------------------


@dataclass
class Run:
    """One backend's training: per-epoch losses (sum of batch means), seconds."""

    losses: list[float]
    seconds: float
    compile_seconds: float
    sequences: int

    @property
    def throughput(self) -> float:
        return self.sequences / self.seconds if self.seconds > 0 else math.nan


def batches(orders: np.ndarray, batch_size: int) -> list[list[np.ndarray]]:
    """Per epoch, the index batches in visiting order (the last one may be smaller)."""
    return [
        [order[i : i + batch_size] for i in range(0, len(order), batch_size)] for order in orders
    ]


def train_torch(model: PackedClassifier, data: Sequences, plan: list, spec: Any) -> Run:
    step = torch_step(model, spec)
    model.train()
    x, lengths, labels = (torch.from_numpy(a) for a in (data.x, data.lengths, data.labels))
    losses, count, clock = [], 0, Stopwatch()
    for epoch in plan:
        total = 0.0
        for index in epoch:
            i = torch.from_numpy(index)
            total += step(
                lambda i=i: nn.functional.cross_entropy(model(x[i], lengths[i]), labels[i])
            )
            count += len(index)
        losses.append(total)
    return Run(losses, clock.seconds, 0.0, count)


def train_jax(
    model: FlaxPackedClassifier, variables: Any, data: Sequences, plan: list, spec: Any
) -> tuple[Any, Run]:
    def loss_fn(params: Any, x: Any, lengths: Any, labels: Any) -> tuple[jax.Array, None]:
        logits = model.apply({"params": params}, x, lengths)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), None

    tx, step = jax_step(loss_fn, spec)
    params, opt_state = variables["params"], tx.init(variables["params"])
    compiled: set[int] = set()
    compile_seconds, seconds, count, losses = 0.0, 0.0, 0, []
    for epoch in plan:
        epoch_losses = []
        for index in epoch:
            clock = Stopwatch()
            batch = (data.x[index], data.lengths[index], data.labels[index])
            params, opt_state, loss, _ = step(params, opt_state, *batch)
            jax.block_until_ready(loss)  # each step timed to its end, as torch's
            epoch_losses.append(loss)
            if len(index) not in compiled:  # a new batch shape compiles: timed apart
                compiled.add(len(index))
                compile_seconds += clock.seconds
            else:
                seconds += clock.seconds
                count += len(index)
        losses.append(float(sum(jax.device_get(epoch_losses))))
    jax.block_until_ready(params)
    return {"params": params}, Run(losses, seconds, compile_seconds, count)


def predict_torch(model: PackedClassifier, data: Sequences) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        scores = model(torch.from_numpy(data.x), torch.from_numpy(data.lengths))
    return scores.numpy().argmax(-1)


def predict_jax(model: FlaxPackedClassifier, variables: Any, data: Sequences) -> np.ndarray:
    return np.asarray(jax.jit(model.apply)(variables, data.x, data.lengths)).argmax(-1)


# --- the script ----------------------------------------------------------------------------


def save_plot(path: Path, torch_run: Run, jax_run: Run, train: Sequences) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(torch_run.losses) + 1)
    left.plot(epochs, torch_run.losses, label="torch (packed)", linewidth=2.5, alpha=0.6)
    left.plot(epochs, jax_run.losses, label="lstm_jax (seq_lengths)", linestyle="--", color="black")
    left.set_yscale("log")
    left.set_xlabel("epoch")
    left.set_ylabel("loss (sum of batch cross-entropies)")
    left.legend()
    right.hist(train.lengths, bins=np.arange(train.lengths.max() + 2) - 0.5)
    right.set_xlabel("sequence length (inked columns)")
    right.set_ylabel("training sequences")
    fig.suptitle("digits as column sequences: bidirectional LSTM over packed sequences")
    save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    train, test = load(args.seed, args.limit)
    spec = Adam(args.lr, clip_norm=1.0)
    print(
        f"digits as column sequences: {len(train.labels)} training / {len(test.labels)} test, "
        f"lengths {train.lengths.min()}..{train.lengths.max()} (padded to T={train.x.shape[1]}), "
        f"{FEATURES} features per step"
    )
    print(
        f"model: LSTM({FEATURES}, {args.hidden}, batch_first, bidirectional) over packed "
        f"input -> Linear({2 * args.hidden}, {CLASSES}); {spec}, {args.epochs} epochs, "
        f"batch {args.batch_size}"
    )

    torch.manual_seed(args.seed)
    torch_model = PackedClassifier(args.hidden)
    flax_model = FlaxPackedClassifier(args.hidden)
    probe = train.take(np.arange(min(8, len(train.labels))))
    plan = batches(
        lstm_jax.epoch_orders(len(train.labels), args.epochs, args.seed), args.batch_size
    )
    with pinned_precision():
        variables = lstm_jax.params_from_torch(
            torch_model.state_dict(), model=flax_model, example=(probe.x, probe.lengths)
        )
        report = lstm_jax.compare_with_torch(
            torch_model, flax_model, variables, probe.x, probe.lengths
        )
        print(f"\ninitial models, compare_with_torch on 8 sequences: {parity_summary(report)}")
        torch_run = train_torch(torch_model, train, plan, spec)
        variables, jax_run = train_jax(flax_model, variables, train, plan, spec)
        torch_pred = predict_torch(torch_model, test)
        jax_pred = predict_jax(flax_model, variables, test)

    print(f"\n{'epoch':>6} {'torch loss':>12} {'jax loss':>12}")
    for epoch, (t, j) in enumerate(zip(torch_run.losses, jax_run.losses, strict=True), 1):
        print(f"{epoch:>6} {t:>12.5f} {j:>12.5f}")
    print(
        f"training losses, jax against torch: scaled difference "
        f"{scaled_error(jax_run.losses, torch_run.losses):.2e}"
    )
    print("\ntest accuracy:")
    print(f"  torch     {np.mean(torch_pred == test.labels):.4f}")
    print(f"  lstm_jax  {np.mean(jax_pred == test.labels):.4f}")
    print(
        f"agreement (same predicted class): {np.mean(torch_pred == jax_pred):.4f} "
        f"({int(np.sum(torch_pred != jax_pred))} of {len(jax_pred)} test sequences differ)"
    )
    print(
        f"\nthroughput (training, sequences/s): torch {torch_run.throughput:,.0f} "
        f"({args.torch_threads} thread(s)); lstm_jax {jax_run.throughput:,.0f} "
        f"(after compiling in {jax_run.compile_seconds:.1f} s); "
        f"ratio jax/torch {jax_run.throughput / torch_run.throughput:.2f}"
    )
    if not args.no_plot:
        save_plot(args.plot, torch_run, jax_run, train)
        print(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

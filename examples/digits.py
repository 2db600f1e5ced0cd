"""Classify handwritten digits read row by row, in both backends.

    python examples/digits.py

scikit-learn's bundled 8×8 digits (``sklearn.datasets.load_digits``, 1797
images, no download), pixels scaled to [0, 1]. An image is read top to bottom
as a sequence of 8 rows, each 8 features, (T=8, I=8); the head on the last step
gives 10 class scores, trained with cross-entropy on integer labels. A
stratified 75/25 train/test split (``random_state=--seed``).

``lstm_torch.LSTMModeler(8, 32, 10)`` trains with ``lstm_torch.fit`` and, from
a copy of the same initial weights and in the same shuffled order, the JAX
mirror with ``lstm_jax.fit`` (Adam lr 0.01, batch 32, 30 epochs,
``loss="cross_entropy"``). It prints both per-epoch losses every 5 epochs, each
backend's test accuracy, the fraction of test images on which the two predict
the same class, wall times, and saves the training curves and some
misclassified test digits in ``out/digits.png``.

Options (``--help``): ``--hidden``, ``--epochs``, ``--lr``, ``--batch-size``,
``--seed``, ``--plot PATH`` / ``--no-plot``, ``--torch-threads``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _plotting import add_plot_arguments, pyplot, save
from _two_backends import Trained, train_both

from lstm_jax.common.optim import Adam
from lstm_jax.interop.precision import pinned_precision

CLASSES = 10
SHOWN_MISTAKES = 8


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=32, help="hidden_layer_size")
    p.add_argument("--epochs", type=int, default=30, help="epochs")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=32, help="batch size")
    p.add_argument(
        "--seed", type=int, default=0, help="torch.manual_seed, shuffle seed and split seed"
    )
    add_plot_arguments(p, "digits.png", "the training curves and misclassified digits")
    p.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Digits:
    """xs (N, 8, 8) float32 in [0, 1], one image row per step; ys (N,) int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load(seed: int) -> Digits:
    """The digits as row sequences, split 75/25 stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)  # pixel values are 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        data.target.astype(np.int64),
        test_size=0.25,
        random_state=seed,
        stratify=data.target,
    )
    return Digits(x_train, y_train, x_test, y_test)


def save_plot(
    path: Path, trained: Trained, digits: Digits, torch_pred: np.ndarray, jax_pred: np.ndarray
) -> None:
    plt = pyplot()
    wrong = np.flatnonzero((torch_pred != digits.y_test) | (jax_pred != digits.y_test))
    fig = plt.figure(figsize=(11, 5.5))
    grid = fig.add_gridspec(2, 6)
    ax = fig.add_subplot(grid[:, :2])
    epochs = np.arange(1, len(trained.torch_losses) + 1)
    ax.plot(epochs, trained.torch_losses, label="lstm_torch.fit", linewidth=2.5, alpha=0.6)
    ax.plot(epochs, trained.jax_losses, label="lstm_jax.fit", linestyle="--", color="black")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (sum of batch cross-entropies)")
    ax.legend()
    for k, index in enumerate(wrong[:SHOWN_MISTAKES]):
        cell = fig.add_subplot(grid[k // 4, 2 + k % 4])
        cell.imshow(digits.x_test[index], cmap="gray_r", vmin=0, vmax=1)
        cell.set_title(
            f"true {digits.y_test[index]}\ntorch {torch_pred[index]}, jax {jax_pred[index]}",
            fontsize=9,
        )
        cell.axis("off")
    fig.suptitle(f"digits read row by row: training loss, {len(wrong)} misclassified test images")
    save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    digits = load(args.seed)
    optimizer = Adam(args.lr)
    print(
        f"digits: {len(digits.x_train)} training / {len(digits.x_test)} test images, "
        f"each 8 rows (T=8) of 8 pixels (I=8)"
    )
    print(
        f"LSTMModeler(8, {args.hidden}, {CLASSES}), {optimizer}, {args.epochs} epochs, "
        f"batch {args.batch_size}, cross-entropy, shuffle seed {args.seed}"
    )

    with pinned_precision():
        trained = train_both(
            8,
            args.hidden,
            CLASSES,
            digits.x_train,
            digits.y_train,
            seed=args.seed,
            optimizer=optimizer,
            epochs=args.epochs,
            batch_size=args.batch_size,
            loss="cross_entropy",
        )
        torch_pred = trained.predict_torch(digits.x_test).argmax(-1)
        jax_pred = trained.predict_jax(digits.x_test).argmax(-1)

    print(f"\n{'epoch':>6} {'torch loss':>12} {'jax loss':>12}")
    for epoch in range(1, args.epochs + 1):
        if epoch == 1 or epoch % 5 == 0 or epoch == args.epochs:
            losses = (trained.torch_losses[epoch - 1], trained.jax_losses[epoch - 1])
            print(f"{epoch:>6} {losses[0]:>12.5f} {losses[1]:>12.5f}")
    print("\ntest accuracy:")
    print(f"  lstm_torch {np.mean(torch_pred == digits.y_test):.4f}")
    print(f"  lstm_jax   {np.mean(jax_pred == digits.y_test):.4f}")
    print(
        f"agreement (same predicted class): {np.mean(torch_pred == jax_pred):.4f} "
        f"({int(np.sum(torch_pred != jax_pred))} of {len(jax_pred)} test images differ)"
    )
    print(trained.times(args.torch_threads))
    if not args.no_plot:
        save_plot(args.plot, trained, digits, torch_pred, jax_pred)
        print(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

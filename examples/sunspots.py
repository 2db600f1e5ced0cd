"""Forecast next year's sunspot number from the past years, in both backends.

    python examples/sunspots.py

The yearly sunspot numbers 1700-2008 that statsmodels ships
(``statsmodels.datasets.sunspots``, no download). Each sample is a window of
``--window`` (12) past years, (T=12, I=1); its target is the next year. Years
from ``--test-from`` (1950) on are the test targets, earlier ones train
(chronological split; a test window may look back into the training years, as
a forecast would). Values are standardized with the training years' mean and
standard deviation only.

``lstm_torch.LSTMModeler(1, 32, 1)`` trains with ``lstm_torch.fit`` and, from a
copy of the same initial weights and in the same shuffled order, the JAX mirror
with ``lstm_jax.fit`` (Adam lr 0.005, batch 16, 100 epochs, MSE). It prints
each backend's test RMSE in sunspot units against the persistence baseline
(next year = this year), the largest difference between the two backends'
forecasts, wall times, and saves the test-period forecasts against the truth in
``out/sunspots_forecast.png``.

Options (``--help``): ``--window``, ``--hidden``, ``--epochs``, ``--lr``,
``--batch-size``, ``--test-from``, ``--seed``, ``--plot PATH`` / ``--no-plot``,
``--torch-threads``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _plotting import add_plot_arguments, pyplot, save
from _two_backends import train_both

from lstm_jax.common.optim import Adam
from lstm_jax.common.tolerances import scaled_error
from lstm_jax.interop.precision import pinned_precision


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--window", type=int, default=12, help="past years per sample (T)")
    p.add_argument("--hidden", type=int, default=32, help="hidden_layer_size")
    p.add_argument("--epochs", type=int, default=100, help="epochs")
    p.add_argument("--lr", type=float, default=0.005, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=16, help="batch size")
    p.add_argument("--test-from", type=int, default=1950, help="first year of the test period")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed and shuffle seed")
    add_plot_arguments(p, "sunspots_forecast.png", "the test-period forecasts")
    p.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.window < 1:
        p.error("--window must be at least 1")
    return args


def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """(years (309,) int, yearly sunspot numbers (309,) float64), 1700-2008."""
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    return frame["YEAR"].to_numpy().astype(int), frame["SUNACTIVITY"].to_numpy(np.float64)


def windows(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``window`` consecutive values and the value after it.

    Returns:
        xs (N, window) with N = len(series) - window, ``xs[n] = series[n : n + window]``;
        the index of each target in ``series``, (N,): ``n + window``.
    """
    if len(series) <= window:
        raise ValueError(f"need more than window={window} values, got {len(series)}")
    xs = np.lib.stride_tricks.sliding_window_view(series, window)[:-1]
    return xs, np.arange(window, len(series))


@dataclass(frozen=True)
class Standardizer:
    """``(v - mean) / std`` with the statistics of the training values only."""

    mean: float
    std: float

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        return cls(float(values.mean()), float(values.std()))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean


@dataclass(frozen=True)
class Split:
    """Train and test samples: xs (N, T, 1) float32 standardized, ys (N, 1), and the
    test targets' years, true values and persistence forecasts in sunspot units."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_years: np.ndarray
    test_truth: np.ndarray
    persistence: np.ndarray
    scaler: Standardizer


def make_split(years: np.ndarray, values: np.ndarray, window: int, test_from: int) -> Split:
    """Chronological split at ``test_from``; the scaler sees the training years only."""
    first_test = int(np.searchsorted(years, test_from))
    if first_test <= window or first_test >= len(values):
        raise ValueError(
            f"--test-from {test_from} leaves no training or no test targets "
            f"(years {years[0]}-{years[-1]}, window {window})"
        )
    scaler = Standardizer.fit(values[:first_test])
    xs, target = windows(scaler.transform(values), window)
    xs = xs[..., None].astype(np.float32)
    ys = scaler.transform(values)[target, None].astype(np.float32)
    test = target >= first_test
    return Split(
        x_train=xs[~test],
        y_train=ys[~test],
        x_test=xs[test],
        y_test=ys[test],
        test_years=years[target[test]],
        test_truth=values[target[test]],
        persistence=values[target[test] - 1],
        scaler=scaler,
    )


def rmse(forecast: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((forecast - truth) ** 2)))


def save_plot(path: Path, split: Split, forecasts: dict[str, np.ndarray]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(split.test_years, split.test_truth, color="black", linewidth=2, label="observed")
    ax.plot(split.test_years, split.persistence, color="gray", linestyle=":", label="persistence")
    styles = {"lstm_torch": {"linewidth": 2.5, "alpha": 0.6}, "lstm_jax": {"linestyle": "--"}}
    for name, forecast in forecasts.items():
        label = f"{name} (RMSE {rmse(forecast, split.test_truth):.1f})"
        ax.plot(split.test_years, forecast, label=label, **styles[name])
    ax.set_xlabel("year")
    ax.set_ylabel("yearly sunspot number")
    ax.set_title(
        f"one-year-ahead forecasts, test period {split.test_years[0]}-{split.test_years[-1]}"
    )
    ax.legend()
    save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    years, values = load_sunspots()
    split = make_split(years, values, args.window, args.test_from)
    optimizer = Adam(args.lr)
    print(
        f"sunspots: {years[0]}-{years[-1]}, window {args.window} years, "
        f"{len(split.x_train)} training / {len(split.x_test)} test targets "
        f"(test from {split.test_years[0]}); scaler mean {split.scaler.mean:.2f}, "
        f"std {split.scaler.std:.2f} (training years)"
    )
    print(
        f"LSTMModeler(1, {args.hidden}, 1), {optimizer}, {args.epochs} epochs, "
        f"batch {args.batch_size}, shuffle seed {args.seed}"
    )

    with pinned_precision():
        trained = train_both(
            1,
            args.hidden,
            1,
            split.x_train,
            split.y_train,
            seed=args.seed,
            optimizer=optimizer,
            epochs=args.epochs,
            batch_size=args.batch_size,
        )
        forecasts = {
            "lstm_torch": split.scaler.inverse(trained.predict_torch(split.x_test)[:, 0]),
            "lstm_jax": split.scaler.inverse(trained.predict_jax(split.x_test)[:, 0]),
        }

    print(
        f"final epoch loss (sum of batch MSEs, standardized): "
        f"torch {trained.torch_losses[-1]:.5f}, jax {trained.jax_losses[-1]:.5f}"
    )
    print("\ntest RMSE (sunspot number):")
    print(f"  persistence  {rmse(split.persistence, split.test_truth):8.2f}")
    for name, forecast in forecasts.items():
        print(f"  {name:<12} {rmse(forecast, split.test_truth):8.2f}")
    gap = forecasts["lstm_jax"] - forecasts["lstm_torch"]
    print(
        f"\nlargest forecast difference jax - torch: {np.abs(gap).max():.3g} "
        f"(scaled {scaled_error(forecasts['lstm_jax'], forecasts['lstm_torch']):.3g})"
    )
    print(trained.times(args.torch_threads))
    if not args.no_plot:
        save_plot(args.plot, split, forecasts)
        print(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

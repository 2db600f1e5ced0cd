"""The lecture's notebook in Flax NNX, cell by cell, beside the torch cells it mirrors.

    python examples/seed_lstm_nnx.py

builds ``lstm_jax.nnx.LSTMModeler(1, 10, 1)`` from torch's initial weights
(``load_state_dict`` of the torch model), trains it as the notebook trains its
model (SGD lr 0.001, 100 epochs, batch 1, shuffled, ``model.hidden_cell`` reset
before every step) with ``nnx.Optimizer(model, optax.sgd(0.001), wrt=nnx.Param)``
and one ``nnx.jit`` step, runs the notebook's torch loop from the same weights on
the same data order, and prints both per-epoch losses every 10 epochs, both
predictions for 27 (y_true 28), the largest differences and the wall times, and
saves the loss curve in ``out/seed_lstm_nnx_losses.png``.

Options (``--help``): ``--epochs``, ``--seed`` (torch's init and the shuffling),
``--plot PATH`` / ``--no-plot``.
"""

# 1. Import Library
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx
from torch import nn, optim

import lstm_jax.nnx
import lstm_torch
from lstm_jax.common.data import epoch_orders
from lstm_jax.common.lecture import LECTURE_TEST_X, LECTURE_TEST_Y, LECTURE_X, LECTURE_Y
from lstm_jax.common.tolerances import scaled_error

# 2. Define Train|Test Data: [[32.], [37.], [25.]] -> [[34.], [36.], [24.]]; test 27 -> 28
training_x = jnp.asarray(LECTURE_X)
training_y = jnp.asarray(LECTURE_Y)
testing_x = jnp.array([[LECTURE_TEST_X]])
testing_y = jnp.array([[LECTURE_TEST_Y]])
# DataLoader(dataset, batch_size=1, shuffle=True): one permutation per epoch, the same
# draws on both sides (numpy.random.default_rng(seed), as lstm_jax.fit and lstm_torch.fit).

# 4. Setup Loss Function and Optimizer (the model of cell 3 is lstm_jax.nnx.LSTMModeler)
hidden_layer_size = 10
input_size = 1
output_size = 1


def loss_function(y: jax.Array, y_hat: jax.Array) -> jax.Array:
    """``nn.MSELoss()``: the mean squared difference."""
    return jnp.mean((y - y_hat) ** 2)


# 5. Training Step: the notebook's loop body, compiled once.
@nnx.jit
def train_step(
    model: lstm_jax.nnx.LSTMModeler, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
) -> jax.Array:
    def step_loss(model: lstm_jax.nnx.LSTMModeler) -> jax.Array:
        model.hidden_cell = (
            jnp.zeros((1, 1, hidden_layer_size)),
            jnp.zeros((1, 1, hidden_layer_size)),
        )
        y_hat = model(x)
        return loss_function(y, y_hat)

    loss, grads = nnx.value_and_grad(step_loss)(model)  # model.zero_grad(); loss.backward()
    optimizer.update(model, grads)  # optimizer.step()
    return loss


def train_nnx(model: lstm_jax.nnx.LSTMModeler, orders: np.ndarray) -> list[float]:
    optimizer = nnx.Optimizer(model, optax.sgd(0.001), wrt=nnx.Param)
    losses = []
    for order in orders:  # for epoch in range(epochs):
        total_loss = 0.0
        for i in order:  # for (x, y) in train_loader:
            x, y = training_x[i], training_y[i]
            loss = train_step(model, optimizer, x, y)
            total_loss += loss.item()
        losses.append(total_loss)
    return losses


def train_torch(model: lstm_torch.LSTMModeler, orders: np.ndarray) -> list[float]:
    """The notebook's torch cells 4 and 5, on the same data order."""
    loss_function = nn.MSELoss()
    optimizer = optim.SGD(model.parameters(), lr=0.001)
    train_x = torch.from_numpy(np.array(training_x))
    train_y = torch.from_numpy(np.array(training_y))
    losses = []
    for order in orders:
        total_loss = 0.0
        for i in order:
            x, y = train_x[i], train_y[i]
            model.zero_grad()
            model.hidden_cell = (
                torch.zeros(1, 1, hidden_layer_size),
                torch.zeros(1, 1, hidden_layer_size),
            )
            y_hat = model(x)
            loss = loss_function(y, y_hat)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
        losses.append(total_loss)
    return losses


# 6. Losses Plotting
def plot_losses(path: Path, nnx_losses: list[float], torch_losses: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    t = np.linspace(0.0, len(nnx_losses), len(nnx_losses))
    ax.plot(t, torch_losses, label="torch (the notebook)", linewidth=2.5, alpha=0.6)
    ax.plot(t, nnx_losses, label="Flax NNX (lstm_jax.nnx)", linestyle="--", color="black")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# 7. Result Inspection
def predict(model: lstm_jax.nnx.LSTMModeler, x: jax.Array) -> jax.Array:
    model.hidden_cell = (jnp.zeros((1, 1, hidden_layer_size)), jnp.zeros((1, 1, hidden_layer_size)))
    x = x.reshape(-1, 1, 1)  # (sequence_length, batch_size, input_size)
    return model(x)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=100, help="epochs (the notebook: 100)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed and shuffle seed")
    p.add_argument(
        "--plot",
        type=Path,
        default=Path("out/seed_lstm_nnx_losses.png"),
        help="where to save the loss curves (PNG; default out/seed_lstm_nnx_losses.png)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not save the plot")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    torch_model = lstm_torch.LSTMModeler(input_size, hidden_layer_size, output_size)
    model = lstm_jax.nnx.LSTMModeler(
        input_size, hidden_layer_size, output_size, rngs=nnx.Rngs(args.seed)
    )
    model.load_state_dict(torch_model.state_dict())  # the same initial weights
    print(model)
    orders = epoch_orders(len(training_x), args.epochs, args.seed)

    with jax.default_matmul_precision("highest"):
        start = time.perf_counter()
        nnx_losses = train_nnx(model, orders)
        nnx_time = time.perf_counter() - start
        start = time.perf_counter()
        torch_losses = train_torch(torch_model, orders)
        torch_time = time.perf_counter() - start

        print(f"\n{'epoch':>6} {'torch loss':>14} {'nnx loss':>14}")
        for epoch in range(1, args.epochs + 1):
            if epoch == 1 or epoch % 10 == 0 or epoch == args.epochs:
                print(f"{epoch:>6} {torch_losses[epoch - 1]:>14.7g} {nnx_losses[epoch - 1]:>14.7g}")

        for x, y in zip(testing_x, testing_y, strict=True):
            pred = predict(model, x)
            with torch.no_grad():
                torch_model.hidden_cell = (
                    torch.zeros(1, 1, hidden_layer_size),
                    torch.zeros(1, 1, hidden_layer_size),
                )
                torch_pred = torch_model(torch.from_numpy(np.array(x)).view(-1, 1, 1))
            print(
                f"\ny_true: {int(y.item())}, y_hat nnx: {pred.item():.4f}, "
                f"y_hat torch: {torch_pred.item():.4f}"
            )

    torch_params = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    nnx_params = model.state_dict()
    param_error = max(scaled_error(nnx_params[k], v) for k, v in torch_params.items())
    print(f"largest loss difference:      {scaled_error(nnx_losses, torch_losses):.3g} (scaled)")
    print(f"largest parameter difference: {param_error:.3g} (scaled)")
    print(f"wall time: NNX loop {nnx_time:.3f} s (with compilation), torch loop {torch_time:.3f} s")
    if not args.no_plot:
        plot_losses(args.plot, nnx_losses, torch_losses)
        print(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sequence to sequence with a GRU encoder and a GRU decoder, trained in both backends.

The task, made here: reverse a short sequence of digits (``3 1 4 1 5`` -> ``5 1 4 1 3``).
The model is the shape of PyTorch's sequence-to-sequence tutorial: an embedding and a
batch-first ``nn.GRU`` encode the source; its final state starts a second GRU that reads
the target shifted right (teacher forcing, ``BOS`` first); a linear layer gives each
step's logits. The torch model and its Flax mirror (``lstm_jax.GRU``, torch's names)
start from the same weights (``lstm_jax.params_from_torch``), see the batches in the same
order and train with the same Adam rule; the per-epoch losses print side by side, then
each backend's greedy decoding accuracy on held-out sequences.

    python examples/seq2seq_gru.py                       # about a minute on 2 CPUs
    python examples/seq2seq_gru.py --epochs 2 --train 64 --hidden 16   # a few seconds
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import lstm_jax

BOS, DIGITS = 10, 10  # tokens 0-9 are digits, 10 starts the decoder
VOCAB = DIGITS + 1


@dataclass(frozen=True)
class Config:
    length: int = 6  # digits per sequence
    train: int = 1024  # training sequences
    test: int = 256  # held-out sequences
    embed: int = 16  # embedding size
    hidden: int = 64  # GRU hidden size
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-2  # Adam's learning rate, both backends
    seed: int = 0


def make_data(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Sources (n, L), decoder inputs (n, L) (BOS then the target shifted) and targets (n, L)."""
    source = rng.integers(0, DIGITS, (n, length))
    target = source[:, ::-1].copy()
    decoder_in = np.concatenate([np.full((n, 1), BOS), target[:, :-1]], axis=1)
    return source, decoder_in, target


class TorchSeq2Seq(torch.nn.Module):
    def __init__(self, embed: int, hidden: int) -> None:
        super().__init__()
        self.enc_emb = torch.nn.Embedding(VOCAB, embed)
        self.encoder = torch.nn.GRU(embed, hidden, batch_first=True)
        self.dec_emb = torch.nn.Embedding(VOCAB, embed)
        self.decoder = torch.nn.GRU(embed, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, VOCAB)

    def forward(self, source: torch.Tensor, decoder_in: torch.Tensor) -> torch.Tensor:
        _, h = self.encoder(self.enc_emb(source))
        y, _ = self.decoder(self.dec_emb(decoder_in), h)
        return self.out(y)  # (B, L, VOCAB)


class FlaxSeq2Seq(nn.Module):
    embed: int
    hidden: int

    @nn.compact
    def __call__(self, source: jax.Array, decoder_in: jax.Array) -> jax.Array:
        _, h = lstm_jax.GRU(self.hidden, batch_first=True, name="encoder")(
            nn.Embed(VOCAB, self.embed, name="enc_emb")(source)
        )
        y, _ = lstm_jax.GRU(self.hidden, batch_first=True, name="decoder")(
            nn.Embed(VOCAB, self.embed, name="dec_emb")(decoder_in), h
        )
        return lstm_jax.Linear(VOCAB, name="out")(y)


def greedy_torch(model: TorchSeq2Seq, source: np.ndarray) -> np.ndarray:
    """Decode step by step, feeding back the argmax (no teacher forcing)."""
    with torch.no_grad():
        _, h = model.encoder(model.enc_emb(torch.from_numpy(source)))
        token = torch.full((len(source), 1), BOS)
        out = []
        for _ in range(source.shape[1]):
            y, h = model.decoder(model.dec_emb(token), h)
            token = model.out(y).argmax(-1)
            out.append(token)
    return torch.cat(out, dim=1).numpy()


def greedy_jax(model: FlaxSeq2Seq, variables: dict, source: np.ndarray) -> np.ndarray:
    """The same decoding with the Flax model: the decoder re-run on its own outputs (the
    prefix grows by one token per step; short sequences make that cheap)."""
    decoder_in = np.full((len(source), 1), BOS)
    for step in range(source.shape[1]):
        logits = model.apply(variables, source, decoder_in)
        token = np.asarray(logits[:, step].argmax(-1))[:, None]
        decoder_in = np.concatenate([decoder_in, token], axis=1)
    return decoder_in[:, 1:]


def train_torch(model: TorchSeq2Seq, data: tuple, orders: np.ndarray, cfg: Config) -> list[float]:
    source, decoder_in, target = (torch.from_numpy(a) for a in data)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for order in orders:
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            rows = torch.from_numpy(order[start : start + cfg.batch_size])
            optimizer.zero_grad()
            logits = model(source[rows], decoder_in[rows])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, VOCAB), target[rows].reshape(-1)
            )
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total)
    return losses


def train_jax(
    model: FlaxSeq2Seq, variables: dict, data: tuple, orders: np.ndarray, cfg: Config
) -> tuple[dict, list[float]]:
    source, decoder_in, target = (jnp.asarray(a) for a in data)
    optimizer = lstm_jax.as_optax(lstm_jax.Adam(cfg.lr))
    params, opt_state = variables["params"], optimizer.init(variables["params"])

    @jax.jit
    def step(params: dict, opt_state: optax.OptState, rows: jax.Array) -> tuple:
        def loss_fn(params: dict) -> jax.Array:
            logits = model.apply({"params": params}, source[rows], decoder_in[rows])
            return optax.softmax_cross_entropy_with_integer_labels(logits, target[rows]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for order in orders:
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            rows = jnp.asarray(order[start : start + cfg.batch_size])
            params, opt_state, loss = step(params, opt_state, rows)
            total += float(loss)
        losses.append(total)
    return {"params": params}, losses


def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Config()
    for name, value in vars(defaults).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return Config(**vars(p.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_args(argv)
    rng = np.random.default_rng(cfg.seed)
    train, test = make_data(cfg.train, cfg.length, rng), make_data(cfg.test, cfg.length, rng)
    torch.manual_seed(cfg.seed)
    torch_model = TorchSeq2Seq(cfg.embed, cfg.hidden)
    flax_model = FlaxSeq2Seq(cfg.embed, cfg.hidden)
    variables = lstm_jax.params_from_torch(
        torch_model.state_dict(), model=flax_model, example=(train[0][:1], train[1][:1])
    )  # the same initial weights on both sides
    orders = lstm_jax.epoch_orders(cfg.train, cfg.epochs, cfg.seed)  # the same batches
    torch_losses = train_torch(torch_model, train, orders, cfg)
    variables, jax_losses = train_jax(flax_model, variables, train, orders, cfg)
    print(f"{'epoch':>5}  {'torch loss':>12}  {'jax loss':>12}")
    for epoch, (a, b) in enumerate(zip(torch_losses, jax_losses, strict=True), start=1):
        print(f"{epoch:>5}  {a:>12.6f}  {b:>12.6f}")
    torch_out = greedy_torch(torch_model, test[0])
    jax_out = greedy_jax(flax_model, variables, test[0])
    accuracy = {
        "torch": float((torch_out == test[2]).all(axis=1).mean()),
        "jax": float((jax_out == test[2]).all(axis=1).mean()),
    }
    print(
        f"reversed exactly (greedy, {cfg.test} held-out sequences): torch "
        f"{accuracy['torch']:.3f}, jax {accuracy['jax']:.3f}; same tokens "
        f"{float((torch_out == jax_out).mean()):.3f}"
    )
    return {"torch_losses": torch_losses, "jax_losses": jax_losses, "accuracy": accuracy}


if __name__ == "__main__":
    main()

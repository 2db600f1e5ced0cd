"""Real workloads, lstm_jax against PyTorch on one machine, in one run: ratios.

    python benchmarks/workloads.py                      # everything (2-core CPU: ~5 minutes)
    python benchmarks/workloads.py --only lm streaming  # some workloads
    python benchmarks/workloads.py --smoke --out /tmp/w.json   # tiny sizes (CI; no timing asserted)
    python benchmarks/workloads.py --impl wavefront     # lstm_jax's recurrence to use

Both backends run the same model from the same weights (torch's initialisation, copied
with ``lstm_jax.params_from_torch``), float32, matmul precision pinned:

- ``lm``: pytorch/examples' word-level language model (``nn.Embedding`` 10000 x 256,
  2-layer ``nn.LSTM`` 256, ``nn.Linear`` 256 -> 10000), T 35, B 20, the state carried
  from batch to batch (detached in torch; an input of the next call in JAX). Training
  step: cross-entropy, backward, SGD; inference: the forward. Tokens per second. Also
  the same step of the LSTM alone (MSE on its output) and of the head alone (embedding
  and softmax, no LSTM), to show where the time goes.
- ``classifier``: a packed bidirectional classifier: 2-layer bidirectional LSTM 128 over
  ragged sequences (T <= 64, B 32, 32 features; torch ``pack_padded_sequence``, JAX
  ``seq_lengths``), a linear layer on both directions' last states, cross-entropy.
  Sequences per second, training and inference.
- ``streaming``: one step per call, B = 1, I 32, H 256, the state carried: torch's
  ``nn.LSTM`` called on one step; ``jax.jit(lstm.apply)`` called once per step (what a
  user writes first); and ``lstm_jax.streaming_step`` (the lean path). Microseconds per
  step.
- ``lecture``: the lecture's 100-epoch training (``jit_benchmark.lecture``).
- ``medium``: the synthetic medium shape (T128 B64 I32 H256, one layer): forward and
  SGD training step (``jit_benchmark.run_case``), so every target is measured in one run.
- ``gru``: the same shape with a GRU in the LSTM's place (``nn.GRU`` + ``nn.Linear``
  against ``lstm_jax.GRU`` + ``lstm_jax.Linear``; torch runs oneDNN's GRU).

Method: ``jit_benchmark``'s (warm-up, calibrated samples, torch and JAX alternating,
medians; JAX's compile time separately). Output: ``benchmarks/workloads_<cpu>_<n>cpu.json``
(``--out``), the CPU's name in the file name and in the JSON, so machines sit side by
side; ``--report FILE`` prints the README rows of one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jit_benchmark as jb
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("lm", "classifier", "streaming", "lecture", "medium", "gru")


@dataclass(frozen=True)
class Sizes:
    """The workloads' sizes (``--smoke`` shrinks them)."""

    vocab: int = 10_000
    emb: int = 256
    lm_hidden: int = 256
    lm_layers: int = 2
    bptt: int = 35
    lm_batch: int = 20
    cls_max_len: int = 64
    cls_min_len: int = 8
    cls_batch: int = 32
    cls_features: int = 32
    cls_hidden: int = 128
    cls_layers: int = 2
    cls_classes: int = 5
    stream_input: int = 32
    stream_hidden: int = 256
    stream_layers: int = 1


SMOKE = Sizes(
    vocab=50, emb=8, lm_hidden=8, bptt=5, lm_batch=2, cls_max_len=6, cls_min_len=2,
    cls_batch=3, cls_features=3, cls_hidden=4, stream_input=3, stream_hidden=4,
)  # fmt: skip


def cpu_slug(name: str) -> str:
    """A file-name-safe form of the CPU's name: ``AMD EPYC 7B13`` -> ``amd-epyc-7b13``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cpu"


def pair(torch_call: Callable[[], Any], jax_call: Callable[[], Any]) -> dict[str, jb.Runner]:
    import jax

    return {
        "torch": jb.Runner(torch_call, lambda _: None),
        "jax": jb.Runner(jax_call, jax.block_until_ready),
    }


def timed(runners: dict[str, jb.Runner], settings: jb.Settings, per_call: int) -> dict:
    """Medians of alternating samples; ``per_call`` items (tokens, sequences, steps) per
    call give the rates; ratio = JAX time / torch time."""
    times = jb.interleaved(runners, settings.repeats, settings.min_sample)
    result: dict[str, Any] = {"samples": times}
    for name, t in times.items():
        result[f"{name}_s"] = t["median_s"]
        result[f"{name}_per_s"] = per_call / t["median_s"]
    result["ratio"] = times["jax"]["median_s"] / times["torch"]["median_s"]
    return result


def compile_seconds(jitted: Any, *args: Any) -> float:
    start = time.perf_counter()
    jitted.lower(*args).compile()
    return time.perf_counter() - start


# --- the language model -------------------------------------------------------------------


def lm_models(sizes: Sizes, impl: str) -> tuple[Any, Any, Any]:
    """pytorch/examples' word LM in torch and its Flax mirror, weights copied."""
    import flax.linen as nn
    import jax.numpy as jnp
    import torch

    import lstm_jax

    class TorchLM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Embedding(sizes.vocab, sizes.emb)
            self.rnn = torch.nn.LSTM(sizes.emb, sizes.lm_hidden, sizes.lm_layers)
            self.decoder = torch.nn.Linear(sizes.lm_hidden, sizes.vocab)

        def forward(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
            out, state = self.rnn(self.encoder(tokens), state)
            return self.decoder(out), state

    class JaxLM(nn.Module):
        @nn.compact
        def __call__(self, tokens: Any, state: Any) -> tuple[Any, Any]:
            emb = nn.Embed(sizes.vocab, sizes.emb, name="encoder")(tokens)
            rnn = lstm_jax.LSTM(sizes.lm_hidden, num_layers=sizes.lm_layers, impl=impl, name="rnn")
            out, state = rnn(emb, state)
            return lstm_jax.Linear(sizes.vocab, name="decoder")(out), state

    torch.manual_seed(0)
    tm = TorchLM()
    jm = JaxLM()
    tokens = jnp.zeros((sizes.bptt, sizes.lm_batch), jnp.int32)
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(tokens, None))
    return tm, jm, variables


def lm_data(sizes: Sizes) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    stream = rng.integers(0, sizes.vocab, (sizes.bptt + 1, sizes.lm_batch))
    return stream[:-1].astype(np.int32), stream[1:].astype(np.int64)


def lm(settings: jb.Settings, sizes: Sizes) -> dict[str, Any]:
    """Tokens per second, training step and inference, state carried; plus the LSTM
    alone and the head alone."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    tm, jm, variables = lm_models(sizes, settings.impl)
    x_np, y_np = lm_data(sizes)
    xt, yt = torch.from_numpy(x_np).long(), torch.from_numpy(y_np)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np.astype(np.int32))
    L, B, H = sizes.lm_layers, sizes.lm_batch, sizes.lm_hidden
    tokens = sizes.bptt * sizes.lm_batch
    lr = 1.0
    tx = optax.sgd(lr)
    t_opt = torch.optim.SGD(tm.parameters(), lr=lr)
    ce = torch.nn.CrossEntropyLoss()
    zeros = (torch.zeros(L, B, H), torch.zeros(L, B, H))
    carried = {"torch": zeros, "jax": (jnp.zeros((L, B, H)), jnp.zeros((L, B, H)))}

    def torch_train() -> Any:
        t_opt.zero_grad()
        state = tuple(s.detach() for s in carried["torch"])
        logits, state = tm(xt, state)
        loss = ce(logits.reshape(-1, sizes.vocab), yt.reshape(-1))
        loss.backward()
        t_opt.step()
        carried["torch"] = state
        return loss

    def loss_fn(params: Any, state: Any, x: Any, y: Any) -> tuple[Any, Any]:
        logits, state = jm.apply({"params": params}, x, state)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, state

    def step(params: Any, opt_state: Any, state: Any, x: Any, y: Any) -> tuple:
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, tuple(state), loss

    train = jax.jit(step, donate_argnums=(0, 1))
    jax_state = [jax.tree.map(jnp.array, variables["params"]), tx.init(variables["params"])]
    compile_train = compile_seconds(train, *jax_state, carried["jax"], x, y)

    def jax_train() -> Any:
        jax_state[0], jax_state[1], carried["jax"], loss = train(*jax_state, carried["jax"], x, y)
        return loss

    forward = jax.jit(lambda p, s, x: jm.apply({"params": p}, x, s))

    def torch_infer() -> Any:
        with torch.inference_mode():
            logits, carried["torch"] = tm(xt, carried["torch"])
        return logits

    def jax_infer() -> Any:
        logits, state = forward(jax_state[0], carried["jax"], x)
        carried["jax"] = tuple(state)
        return logits

    torch_train()
    result = {
        "sizes": {
            "vocab": sizes.vocab,
            "emb": sizes.emb,
            "hidden": H,
            "layers": L,
            "T": sizes.bptt,
            "B": B,
        },
        "tokens_per_call": tokens,
        "train": timed(pair(torch_train, jax_train), settings, tokens),
        "inference": timed(pair(torch_infer, jax_infer), settings, tokens),
        "jax_compile_train_s": compile_train,
    }
    result["lstm_only_train"] = lstm_part(settings, sizes, tm, variables)
    result["head_only_train"] = head_part(settings, sizes, tm, variables)
    return result


def lstm_part(settings: jb.Settings, sizes: Sizes, tm: Any, variables: Any) -> dict:
    """The LM's LSTM alone (its embedded input given): MSE training step, SGD."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    import lstm_jax

    rng = np.random.default_rng(1)
    shape = (sizes.bptt, sizes.lm_batch, sizes.emb)
    e_np = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal((sizes.bptt, sizes.lm_batch, sizes.lm_hidden)).astype(np.float32)
    et, tt = torch.from_numpy(e_np), torch.from_numpy(target)
    rnn = tm.rnn
    t_opt = torch.optim.SGD(rnn.parameters(), lr=0.1)

    def torch_call() -> Any:
        t_opt.zero_grad()
        out, _ = rnn(et)
        loss = ((out - tt) ** 2).mean()
        loss.backward()
        t_opt.step()
        return loss

    model = lstm_jax.LSTM(sizes.lm_hidden, num_layers=sizes.lm_layers, impl=settings.impl)
    tx = optax.sgd(0.1)

    def step(params: Any, opt_state: Any, e: Any, t: Any) -> tuple:
        def loss(p: Any) -> Any:
            return jnp.mean((model.apply({"params": p}, e)[0] - t) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    jitted = jax.jit(step, donate_argnums=(0, 1))
    params = variables["params"]["rnn"]
    state = [jax.tree.map(jnp.array, params), tx.init(params)]
    e, t = jnp.asarray(e_np), jnp.asarray(target)

    def jax_call() -> Any:
        state[0], state[1], value = jitted(*state, e, t)
        return value

    torch_call()
    return timed(pair(torch_call, jax_call), settings, sizes.bptt * sizes.lm_batch)


def head_part(settings: jb.Settings, sizes: Sizes, tm: Any, variables: Any) -> dict:
    """The LM without its LSTM: embedding -> linear -> softmax cross-entropy, SGD."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    x_np, y_np = lm_data(sizes)
    xt, yt = torch.from_numpy(x_np).long(), torch.from_numpy(y_np)
    enc, dec = tm.encoder, tm.decoder
    params_t = [*enc.parameters(), *dec.parameters()]
    t_opt = torch.optim.SGD(params_t, lr=1.0)
    ce = torch.nn.CrossEntropyLoss()
    if sizes.emb != sizes.lm_hidden:
        raise ValueError("head_part feeds the embedding to the decoder: emb must equal hidden")

    def torch_call() -> Any:
        t_opt.zero_grad()
        logits = dec(enc(xt))
        loss = ce(logits.reshape(-1, sizes.vocab), yt.reshape(-1))
        loss.backward()
        t_opt.step()
        return loss

    tx = optax.sgd(1.0)

    def step(params: Any, opt_state: Any, x: Any, y: Any) -> tuple:
        def loss(p: Any) -> Any:
            emb = p["encoder"]["embedding"][x]
            logits = emb @ p["decoder"]["weight"].T + p["decoder"]["bias"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    jitted = jax.jit(step, donate_argnums=(0, 1))
    params = {k: variables["params"][k] for k in ("encoder", "decoder")}
    state = [jax.tree.map(jnp.array, params), tx.init(params)]
    x, y = jnp.asarray(x_np), jnp.asarray(y_np.astype(np.int32))

    def jax_call() -> Any:
        state[0], state[1], value = jitted(*state, x, y)
        return value

    torch_call()
    return timed(pair(torch_call, jax_call), settings, sizes.bptt * sizes.lm_batch)


# --- the packed bidirectional classifier ---------------------------------------------------


def classifier(settings: jb.Settings, sizes: Sizes) -> dict[str, Any]:
    """Sequences per second of a packed bidirectional classifier, training and inference."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    import lstm_jax

    T, B, I, H = sizes.cls_max_len, sizes.cls_batch, sizes.cls_features, sizes.cls_hidden
    L, C = sizes.cls_layers, sizes.cls_classes

    class TorchClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(I, H, L, bidirectional=True)
            self.head = torch.nn.Linear(2 * H, C)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            _, (h_n, _) = self.rnn(packed)
            return self.head(torch.cat([h_n[-2], h_n[-1]], dim=-1))

    class JaxClassifier(nn.Module):
        @nn.compact
        def __call__(self, x: Any, lengths: Any) -> Any:
            rnn = lstm_jax.LSTM(H, num_layers=L, bidirectional=True, impl=settings.impl, name="rnn")
            _, (h_n, _) = rnn(x, seq_lengths=lengths)
            return lstm_jax.Linear(C, name="head")(jnp.concatenate([h_n[-2], h_n[-1]], -1))

    rng = np.random.default_rng(0)
    lengths_np = rng.integers(sizes.cls_min_len, T + 1, B).astype(np.int32)
    x_np = rng.standard_normal((T, B, I)).astype(np.float32)
    x_np[np.arange(T)[:, None] >= lengths_np[None, :]] = 0.0
    labels_np = rng.integers(0, C, B)
    torch.manual_seed(0)
    tm = TorchClassifier()
    jm = JaxClassifier()
    x, lengths = jnp.asarray(x_np), jnp.asarray(lengths_np)
    labels = jnp.asarray(labels_np.astype(np.int32))
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(x, lengths))
    xt, lt, yt = (torch.from_numpy(a) for a in (x_np, lengths_np.astype(np.int64), labels_np))
    t_opt = torch.optim.SGD(tm.parameters(), lr=0.1)
    ce = torch.nn.CrossEntropyLoss()

    def torch_train() -> Any:
        t_opt.zero_grad()
        loss = ce(tm(xt, lt), yt)
        loss.backward()
        t_opt.step()
        return loss

    tx = optax.sgd(0.1)

    def step(params: Any, opt_state: Any, x: Any, lengths: Any, labels: Any) -> tuple:
        def loss(p: Any) -> Any:
            logits = jm.apply({"params": p}, x, lengths)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    train = jax.jit(step, donate_argnums=(0, 1))
    state = [jax.tree.map(jnp.array, variables["params"]), tx.init(variables["params"])]
    compile_train = compile_seconds(train, *state, x, lengths, labels)

    def jax_train() -> Any:
        state[0], state[1], value = train(*state, x, lengths, labels)
        return value

    infer = jax.jit(lambda p, x, lengths: jm.apply({"params": p}, x, lengths))

    def torch_infer() -> Any:
        with torch.inference_mode():
            return tm(xt, lt)

    torch_train()
    return {
        "sizes": {
            "T_max": T,
            "B": B,
            "I": I,
            "H": H,
            "layers": L,
            "classes": C,
            "mean_length": float(lengths_np.mean()),
        },
        "train": timed(pair(torch_train, jax_train), settings, B),
        "inference": timed(pair(torch_infer, lambda: infer(state[0], x, lengths)), settings, B),
        "jax_compile_train_s": compile_train,
    }


# --- streaming ----------------------------------------------------------------------------------


def streaming(settings: jb.Settings, sizes: Sizes) -> dict[str, Any]:
    """Microseconds per one-step call, B = 1, state carried: torch's nn.LSTM on one step,
    ``jax.jit(lstm.apply)`` per step, and ``lstm_jax.streaming_step``."""
    import jax
    import jax.numpy as jnp
    import torch

    import lstm_jax

    I, H, L = sizes.stream_input, sizes.stream_hidden, sizes.stream_layers
    torch.manual_seed(0)
    tl = torch.nn.LSTM(I, H, L)
    model = lstm_jax.LSTM(H, num_layers=L, impl=settings.impl)
    variables = lstm_jax.params_from_torch(tl.state_dict())
    x_np = np.random.default_rng(0).standard_normal((1, 1, I)).astype(np.float32)
    xt = torch.from_numpy(x_np)
    carried: dict[str, Any] = {
        "torch": (torch.zeros(L, 1, H), torch.zeros(L, 1, H)),
        "apply": (jnp.zeros((L, 1, H)), jnp.zeros((L, 1, H))),
    }

    def torch_step() -> Any:
        with torch.inference_mode():
            out, carried["torch"] = tl(xt, carried["torch"])
        return out

    apply = jax.jit(model.apply)
    x = jnp.asarray(x_np)

    def apply_step() -> Any:
        out, carried["apply"] = apply(variables, x, carried["apply"])
        return out

    step = lstm_jax.streaming_step(model, variables)
    carried["lean"] = step.zero_state(1)
    x_t = x[0]

    def lean_step() -> Any:
        out, carried["lean"] = step(x_t, carried["lean"])
        return out

    # the floor under both: a jitted program that returns its state, called with
    # jit(apply)'s arguments (dispatch and the variables tree's flattening, no work)
    floor = jax.jit(lambda v, x, state: state)

    runners = {
        "torch": jb.Runner(torch_step, lambda _: None),
        "jax": jb.Runner(apply_step, jax.block_until_ready),
        "jax_lean": jb.Runner(lean_step, jax.block_until_ready),
        "jax_dispatch_floor": jb.Runner(
            lambda: floor(variables, x, carried["apply"]), jax.block_until_ready
        ),
    }
    times = jb.interleaved(runners, settings.repeats, settings.min_sample)
    us = {k: v["median_s"] * 1e6 for k, v in times.items()}
    return {
        "sizes": {"B": 1, "I": I, "H": H, "layers": L},
        "torch_us": us["torch"],
        "jax_apply_us": us["jax"],
        "jax_lean_us": us["jax_lean"],
        "jax_dispatch_floor_us": us["jax_dispatch_floor"],
        "ratio_apply": us["jax"] / us["torch"],
        "ratio": us["jax_lean"] / us["torch"],
        "samples": times,
    }


# --- the synthetic medium shape ---------------------------------------------------------------


def medium(settings: jb.Settings, limit: float, kind: str = "LSTM") -> dict[str, Any]:
    """The medium shape's forward and training step, one layer of ``kind`` (LSTM, GRU)."""
    T, B, I, H = (3, 2, 2, 4) if settings.smoke else jb.SHAPES["medium"]
    case = jb.Case("medium", T, B, I, H, 1, False, kind)
    return {mode: jb.run_case(case, mode, settings, limit) for mode in ("forward", "train")}


# --- targets, report, driver ---------------------------------------------------------------

TARGETS = [  # (name, where in the results, comparison, bound)
    ("medium training step", ("medium", "train", "ratio"), "<=", 1.0),
    ("medium forward", ("medium", "forward", "ratio"), "<=", 1.3),
    ("GRU medium training step", ("gru", "train", "ratio"), "<=", 1.0),
    ("GRU medium forward", ("gru", "forward", "ratio"), "<=", 1.3),
    ("LM training step", ("lm", "train", "ratio"), "<=", 1.0),
    ("streaming (lean step)", ("streaming", "ratio"), "<=", 0.7),
    ("lecture training", ("lecture", "ratio"), "<=", 1 / 300),
]


def dig(results: dict, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def targets(results: dict) -> list[dict[str, Any]]:
    rows = []
    for name, path, op, bound in TARGETS:
        value = dig(results, path)
        if value is not None:
            met = value <= bound if op == "<=" else value >= bound
            rows.append({"target": name, "ratio": value, "bound": bound, "met": bool(met)})
    return rows


def report(results: dict) -> str:
    """README rows: | workload | torch | JAX | JAX / torch |."""
    cpu = results["machine"]["cpu"]
    lines = [f"Real workloads on {cpu} ({results['machine']['cpus_usable']} CPUs), float32:", ""]
    lines += ["| workload | torch | lstm_jax | JAX / torch |", "| --- | --- | --- | --- |"]

    def rate(name: str, r: dict, unit: str) -> None:
        lines.append(
            f"| {name} | {r['torch_per_s']:,.0f} {unit} | {r['jax_per_s']:,.0f} {unit} "
            f"| {r['ratio']:.2f} |"
        )

    if "lm" in results:
        z = results["lm"]["sizes"]
        shape = f"T{z['T']} B{z['B']}, V{z['vocab']}, {z['layers']}x{z['hidden']}"
        rate(f"word LM training ({shape})", results["lm"]["train"], "tokens/s")
        rate("word LM inference", results["lm"]["inference"], "tokens/s")
    if "classifier" in results:
        z = results["classifier"]["sizes"]
        shape = f"T<={z['T_max']} B{z['B']}, {z['layers']}x{z['H']} bi"
        rate(f"packed classifier training ({shape})", results["classifier"]["train"], "seq/s")
        rate("packed bi classifier inference", results["classifier"]["inference"], "seq/s")
    if "streaming" in results:
        s = results["streaming"]
        z = s["sizes"]
        lines.append(
            f"| streaming step (B1 I{z['I']} H{z['H']}), `jit(apply)` | {s['torch_us']:.0f} µs "
            f"| {s['jax_apply_us']:.0f} µs | {s['ratio_apply']:.2f} |"
        )
        lines.append(
            f"| streaming step, `streaming_step` | {s['torch_us']:.0f} µs "
            f"| {s['jax_lean_us']:.0f} µs | {s['ratio']:.2f} |"
        )
    if "lecture" in results:
        r = results["lecture"]
        lines.append(
            f"| lecture training (100 epochs) | {r['torch_s'] * 1e3:.0f} ms "
            f"| {r['jax_s'] * 1e3:.2f} ms | {r['ratio']:.4f} ({1 / r['ratio']:.0f}x faster) |"
        )
    lines += ["", "| target | JAX / torch | bound | met |", "| --- | --- | --- | --- |"]
    for t in results.get("targets", []):
        lines.append(
            f"| {t['target']} | {t['ratio']:.4g} | {t['bound']:.4g} "
            f"| {'yes' if t['met'] else 'no'} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--repeats", type=int, default=7, help="samples per measurement (median)")
    p.add_argument("--min-sample", type=float, default=0.1, help="seconds per sample, at least")
    p.add_argument("--threads", type=int, help="pin the process to this many CPUs")
    p.add_argument("--impl", default="auto", help="lstm_jax recurrence (lstm_jax.core.recurrence)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 2 repeats (CI)")
    p.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/workloads_<cpu>_<n>cpu.json)"
    )
    p.add_argument("--report", type=Path, help="print the README rows of a JSON file and exit")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return None
    jb.pin_threads(args.threads)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SMOKE if args.smoke else Sizes()
    settings = jb.Settings(
        shapes=[], repeats=2 if args.smoke else args.repeats,
        min_sample=0.0 if args.smoke else args.min_sample, threads=args.threads,
        impl=args.impl, lecture_epochs=2 if args.smoke else jb.LECTURE_EPOCHS, smoke=args.smoke,
        memory=False,
    )  # fmt: skip
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "machine": jb.machine_info(settings),
        "versions": jb.versions(),
        "command": f"python benchmarks/workloads.py {argv_text}".strip(),
        "impl": args.impl,
    }
    started = time.perf_counter()
    with jb.pinned_precision(False):
        results["gemm"] = jb.gemm_rate(settings)
        for name in args.only:
            start = time.perf_counter()
            if name == "lm":
                results["lm"] = lm(settings, sizes)
            elif name == "classifier":
                results["classifier"] = classifier(settings, sizes)
            elif name == "streaming":
                results["streaming"] = streaming(settings, sizes)
            elif name == "lecture":
                results["lecture"] = jb.lecture(settings)
            elif name == "medium":
                results["medium"] = medium(settings, results["gemm"]["limit_gflops"])
            else:
                results["gru"] = medium(settings, results["gemm"]["limit_gflops"], "GRU")
            print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    results["wall_s"] = time.perf_counter() - started
    results["targets"] = targets(results)
    print(report(results))
    slug = cpu_slug(results["machine"]["cpu"])
    cpus = results["machine"]["cpus_usable"]
    out = args.out or ROOT / "benchmarks" / f"workloads_{slug}_{cpus}cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {out} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()

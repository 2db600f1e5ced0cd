"""What ``language_model.py`` and ``packed_classifier.py`` share: one training step per
backend from the same optimizer spec, and the lines they print about agreement.

Not a script: the examples import it (Python puts the script's folder on ``sys.path``).

- :func:`torch_step`: ``zero_grad``, ``backward``, ``clip_grad_norm_`` (the spec's
  ``clip_norm``), ``step``: what ``lstm_torch.fit`` does for one batch.
- :func:`jax_step`: the same step as one ``jax.jit`` program: ``jax.value_and_grad``,
  the spec's Optax chain (``lstm_jax.as_optax``), ``optax.apply_updates``.
- :func:`parity_summary`: ``compare_with_torch``'s worst row per group, on one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import optax
import torch

import lstm_jax
from lstm_torch.train import make_optimizer


def torch_step(model: torch.nn.Module, spec: Any) -> Callable[[Callable[[], torch.Tensor]], float]:
    """``step(loss_fn) -> loss``: one optimizer step of ``model`` on ``loss_fn()``."""
    optimizer = make_optimizer(spec, model.parameters())

    def step(loss_fn: Callable[[], torch.Tensor]) -> float:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        if spec.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.clip_norm)
        optimizer.step()
        return float(loss.detach())

    return step


def jax_step(loss_fn: Callable[..., tuple[jax.Array, Any]], spec: Any) -> tuple[Any, Callable]:
    """The Optax chain of ``spec`` and a jitted ``step(params, opt_state, *batch) ->
    (params, opt_state, loss, aux)`` for ``loss_fn(params, *batch) -> (loss, aux)``."""
    tx = lstm_jax.as_optax(spec)

    @jax.jit
    def step(params: Any, opt_state: Any, *batch: Any) -> tuple[Any, Any, jax.Array, Any]:
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, aux

    return tx, step


def parity_summary(report: Any) -> str:
    """``"OK: forward 1.2e-07 (output[0]), ..."``: the worst difference of each group."""
    groups = ("forward", "final state", "gradient")
    worst = [report.largest(g) for g in groups if any(d.group == g for d in report.differences)]
    rows = ", ".join(f"{d.group} {d.scaled:.1e} ({d.name})" for d in worst)
    return f"{'OK' if report.ok else 'FAIL'}: {rows}"


class Stopwatch:
    """Seconds since construction (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

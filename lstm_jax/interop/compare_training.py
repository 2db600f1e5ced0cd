"""Check that a Flax port trains as its torch original does: :func:`compare_training`.

Both models start from the same weights (the torch model's, copied into the Flax
variables by the transfer's key rules), are trained by ``lstm_torch.fit`` (on a deep
copy of the torch model) and ``lstm_jax.fit`` with the same keywords, so they see
the same batches in the same order with the same update rule, and the report gives
the difference of every per-epoch loss and of every final parameter (by torch key),
scaled by the torch value, against ``lstm_jax.common.tolerances.TRAINING``.

Parity per step holds for models without dropout. A torch model that draws dropout
(``nn.Dropout`` with p > 0, a multi-layer ``nn.LSTM`` with ``dropout``) trains with
masks from torch's generator, the Flax one with JAX's keys: the trajectories differ
from the first step. The report then says so and judges a statistical comparison
only: the mean per-epoch loss over the last half of the epochs, relative to torch's,
within ``lstm_jax.common.tolerances.DROPOUT_LOSS_BAND``.

Needs torch (imported when the function runs). Example::

    report = lstm_jax.compare_training(torch_model, flax_model, variables, xs, ys,
                                       optimizer=lstm_jax.SGD(0.1), epochs=3)
    print(report)       # one row per epoch's loss and per parameter
    assert report.ok
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.common.arrays import to_numpy
from lstm_jax.common.config import params_of
from lstm_jax.common.data import check_loss
from lstm_jax.common.optim import is_spec
from lstm_jax.common.ties import find_ties
from lstm_jax.common.tolerances import DROPOUT_LOSS_BAND, TRAINING, scaled_error
from lstm_jax.interop.parity import Difference
from lstm_jax.interop.precision import pinned_precision
from lstm_jax.interop.transfer import (
    BUILT_IN,
    check_flax_params,
    check_state_dict,
    flax_params_to_torch,
    model_key_map,
    params_from_torch,
    state_dict_array,
    torch_params_to_flax,
)
from lstm_jax.train.loop import fit as jax_fit
from lstm_jax.train.model import as_train_model

__all__ = ["TrainingReport", "compare_training"]

WHO = "compare_training"


@dataclass(frozen=True)
class TrainingReport:
    """Two training runs of one model, torch's and its Flax port's, side by side.

    Attributes:
        kind: the Flax model's class name.
        torch_kind: the torch model's class name.
        dtype: the parameters' dtype (float32 or float64).
        torch_losses, jax_losses: (epochs,) per-epoch losses (sums of batch losses).
        losses: one :class:`~lstm_jax.interop.parity.Difference` per epoch (group
            ``"loss"``): ``|jax - torch| / |torch|``.
        parameters: one per torch key (group ``"parameter"``), after training.
        dropout: the torch modules that draw dropout masks; empty: per-step parity is
            claimed and judged.
        statistical: with dropout, the mean loss over the last half of the epochs
            (group ``"mean loss"``) against :data:`DROPOUT_LOSS_BAND`; else None.
    """

    kind: str
    torch_kind: str
    dtype: np.dtype
    torch_losses: np.ndarray
    jax_losses: np.ndarray
    losses: tuple[Difference, ...]
    parameters: tuple[Difference, ...]
    dropout: tuple[str, ...] = ()
    statistical: Difference | None = None

    @property
    def ok(self) -> bool:
        """Without dropout: every epoch's loss and every final parameter within the
        training tolerance. With dropout: the statistical comparison within its band."""
        if self.statistical is not None:
            return self.statistical.ok
        return all(d.ok for d in (*self.losses, *self.parameters))

    @property
    def loss(self) -> Difference:
        """The per-epoch loss difference largest relative to its tolerance."""
        return _worst(self.losses)

    @property
    def parameter(self) -> Difference:
        """The final parameter difference largest relative to its tolerance."""
        return _worst(self.parameters)

    def __str__(self) -> str:
        judged = self.statistical is None
        rows = [*self.losses, *self.parameters]
        if self.statistical is not None:
            rows.append(self.statistical)
        width = max(len(d.name) for d in rows)
        lines = [
            f"{self.kind} trained against torch's {self.torch_kind}, {self.dtype}, "
            f"{len(self.torch_losses)} epochs: differences scaled by max|torch| "
            f"(tolerance: training {TRAINING[self.dtype]:.0e})"
        ]
        if not judged:
            lines.append(
                f"dropout in {', '.join(self.dropout)}: the masks differ (torch's generator, "
                f"JAX's keys), so per-step parity is not claimed; judged: the mean loss over "
                f"the last half of the epochs, within a relative band of {DROPOUT_LOSS_BAND:g}"
            )
        lines.append(
            f"{'quantity':<{width}}  {'max|jax-torch|':>14}  {'scaled':>9}  {'tolerance':>9}"
        )
        for d in rows:
            verdict = ("ok" if d.ok else "FAIL") if judged or d is self.statistical else "n/a"
            lines.append(
                f"{d.name:<{width}}  {d.max_abs:>14.3e}  {d.scaled:>9.2e}  {d.tolerance:>9.0e}"
                f"  {verdict}"
            )
        lines.append(
            f"largest: loss {self.loss.scaled:.2e} ({self.loss.name}), parameter "
            f"{self.parameter.scaled:.2e} ({self.parameter.name})"
        )
        judged_rows = rows if judged else [self.statistical]
        failing = [d.name for d in judged_rows if d is not None and not d.ok]
        lines.append(
            "result: OK, within tolerance"
            if not failing
            else f"result: FAIL, beyond tolerance: {', '.join(failing)}"
        )
        return "\n".join(lines)


def _worst(differences: Sequence[Difference]) -> Difference:
    return max(differences, key=lambda d: math.inf if np.isnan(d.scaled) else d.scaled)


def _difference(name: str, group: str, jax_value: Any, torch_value: Any, tol: float) -> Difference:
    a = np.asarray(jax_value, np.float64)
    r = np.asarray(torch_value, np.float64)
    max_abs = float(np.max(np.abs(a - r), initial=0.0)) if a.size else 0.0
    return Difference(name, group, max_abs, scaled_error(a, r), tol)


def dropout_modules(torch_model: Any) -> tuple[str, ...]:
    """The names of ``torch_model``'s submodules that draw dropout masks in training mode:
    ``nn.Dropout*`` with p > 0, a recurrent module with ``dropout`` > 0 between layers."""
    from torch import nn

    found = []
    for name, module in torch_model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            found.append(name or type(module).__name__)
        elif isinstance(module, nn.RNNBase) and module.dropout > 0 and module.num_layers > 1:
            found.append(name or type(module).__name__)
    return tuple(found)


def _torch_dtype(torch_model: Any) -> np.dtype:
    import torch

    first = next(iter(torch_model.parameters()), None)
    if first is None:
        raise ValueError(f"{WHO}: {type(torch_model).__name__} has no parameters to train")
    dtypes: dict[Any, np.dtype] = {
        torch.float32: np.dtype(np.float32),
        torch.float64: np.dtype(np.float64),
    }
    if first.dtype not in dtypes:
        raise TypeError(f"{WHO}: expected float32 or float64 parameters, got {first.dtype}")
    return dtypes[first.dtype]


def _losses(loss: Any) -> tuple[Any, Any]:
    """(torch's loss, JAX's loss): a shared name, or a pair of functions."""
    if isinstance(loss, tuple):
        if len(loss) != 2 or not all(callable(f) for f in loss):
            raise TypeError(
                f"loss: expected a name or a pair (torch_loss, jax_loss) of functions, got a "
                f"tuple of {len(loss)}"
            )
        return check_loss(loss[0]), check_loss(loss[1])
    if callable(loss):
        raise TypeError(
            f"loss: a function takes either torch tensors or JAX arrays: expected a name "
            f"('mse', 'cross_entropy') or a pair (torch_loss, jax_loss), got "
            f"{getattr(loss, '__name__', type(loss).__name__)}"
        )
    return check_loss(loss), check_loss(loss)


def _first_batch(
    flax_model: Any,
    xs: Any,
    dtype: np.dtype,
    batch_size: int,
    batch_first: bool | None,
    seq_lengths: Any,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The Flax model's call on the first batch (its layout): (positional, keyword) arguments,
    to find its parameters' torch keys."""
    x = to_numpy(xs, "xs")
    b = max(1, min(int(batch_size), len(x)))
    x = x[:b]
    x = x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x.astype(np.int32)
    if not as_train_model(flax_model, batch_first).batch_first and x.ndim >= 2:
        x = np.swapaxes(x, 0, 1)
    kwargs = {} if seq_lengths is None else {"seq_lengths": to_numpy(seq_lengths)[:b]}
    return (x,), kwargs


def _linen_start(
    torch_state: Mapping[str, Any],
    flax_model: Any,
    variables: Any,
    example: tuple[tuple[Any, ...], dict[str, Any]],
) -> tuple[dict[str, Any], Any]:
    """The Flax variables holding the torch model's weights (bitwise), and the key map."""
    if isinstance(flax_model, BUILT_IN):
        start = params_from_torch(torch_state, model=flax_model)
        return {**dict(variables), **start}, None
    params = params_of(variables, WHO)
    args, kwargs = example
    entries = model_key_map(flax_model, args, None, kwargs, what=f"{WHO}: the first batch")
    check_flax_params(params, entries, WHO)
    arrays = {key: state_dict_array(key, value) for key, value in torch_state.items()}
    check_state_dict(arrays, entries, find_ties(torch_state), f"{WHO}: the torch state_dict")
    copied = {e.torch_key: jnp.array(arrays[e.torch_key], copy=True) for e in entries}
    return {**dict(variables), "params": torch_params_to_flax(copied, entries)}, entries


def _jax_state_dict(flax_model: Any, trained: Any, entries: Any) -> dict[str, np.ndarray]:
    """The trained Flax parameters by torch key."""
    if isinstance(flax_model, nnx.Module):
        from lstm_jax.interop.nnx_transfer import state_dict

        return state_dict(flax_model)
    params = params_of(trained, WHO)
    if entries is None:  # a built-in: its leaves carry torch's names
        from lstm_jax.interop.transfer import flatten

        return {k: np.asarray(v) for k, v in flatten(params).items()}
    return flax_params_to_torch(params, entries)


@contextlib.contextmanager
def _x64_if(dtype: np.dtype) -> Iterator[None]:
    with jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext():
        yield


def compare_training(
    torch_model: Any,
    flax_model: Any,
    variables: Any,
    xs: Any,
    ys: Any,
    *,
    optimizer: Any,
    epochs: int,
    loss: Any = "mse",
    batch_size: int = 1,
    shuffle_seed: int | None = None,
    batch_first: bool | None = None,
    seq_lengths: Any = None,
    stateful: bool = False,
    rng: Any = None,
) -> TrainingReport:
    """Train a torch model and its Flax port from the same weights the same way; report.

    The torch model's weights are copied into the Flax model (the transfer's key
    rules), then ``lstm_torch.fit`` trains a deep copy of the torch model and
    ``lstm_jax.fit`` the Flax model with the same keywords. Neither argument model
    (nor ``variables``) is changed. Precision is pinned on both sides
    (:func:`~lstm_jax.interop.precision.pinned_precision`); float64 models run
    with ``jax.enable_x64``.

    Args:
        torch_model: any ``torch.nn.Module`` (``lstm_torch.fit``'s calling convention).
        flax_model: its Flax port: a linen module whose submodules carry the torch
            attribute names (or a built-in), or an NNX module (then ``variables=None``;
            a clone is trained).
        variables: the linen model's variables (e.g. its ``init``): they say which
            model the port is; their ``"params"`` are replaced by the torch weights,
            other collections pass through. None for an NNX module.
        xs: the inputs, as ``lstm_jax.fit`` and ``lstm_torch.fit`` take them.
        ys: the targets, as both ``fit`` take them.
        optimizer: an ``lstm_jax.SGD``/``Adam``/``AdamW`` spec (one value configures
            both sides).
        epochs: passes over the data, as both ``fit`` take them.
        batch_size: as both ``fit`` take it.
        shuffle_seed: the seed of the shared per-epoch permutations (None: in order).
        batch_first: as both ``fit`` take it.
        seq_lengths: as both ``fit`` take them.
        stateful: as both ``fit`` take it.
        loss: a name (``"mse"``, ``"cross_entropy"``), or a pair ``(torch_loss,
            jax_loss)`` of the same function written for each backend.
        rng: ``lstm_jax.fit``'s dropout key; required when the torch model draws
            dropout (both sides then train with dropout; the report compares them
            statistically).

    Returns:
        a :class:`TrainingReport` (``.ok``, ``.losses``, ``.parameters``, ``str()`` a
        table).

    Raises:
        TypeError: a torch model that is not an ``nn.Module``, an optimizer that is
            not a spec, ``variables`` with an NNX module, a lone loss function.
        ValueError: weights that do not fit the Flax model (naming each key), a
            dropout model without ``rng``; and whatever either ``fit`` refuses.
    """
    import torch

    import lstm_torch

    if not isinstance(torch_model, torch.nn.Module):
        raise TypeError(f"{WHO}: expected a torch.nn.Module, got {type(torch_model).__name__}")
    if not is_spec(optimizer):
        raise TypeError(
            f"{WHO}: optimizer: expected an lstm_jax.SGD, Adam or AdamW spec (one value "
            f"configures both sides), got {type(optimizer).__name__}"
        )
    is_nnx = isinstance(flax_model, nnx.Module)
    if is_nnx and variables is not None:
        raise TypeError(
            f"{WHO}: the NNX {type(flax_model).__name__} holds its parameters: pass "
            f"variables=None, got {type(variables).__name__}"
        )
    if not is_nnx and not isinstance(variables, Mapping):
        raise TypeError(
            f"{WHO}: variables: expected the Flax model's variables ({{'params': ...}}, "
            f"e.g. its init), got {type(variables).__name__}"
        )
    torch_loss, jax_loss = _losses(loss)
    dtype = _torch_dtype(torch_model)
    dropout = dropout_modules(torch_model)
    if dropout and rng is None:
        raise ValueError(
            f"{WHO}: {type(torch_model).__name__} draws dropout in training ({', '.join(dropout)}):"
            f" pass rng=jax.random.key(...) so that the Flax side trains with dropout too "
            f"(the report then compares the runs statistically), or build both without it"
        )
    torch_copy = copy.deepcopy(torch_model)
    torch_state = {k: v.detach().cpu() for k, v in torch_copy.state_dict().items()}
    same = dict(
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        batch_first=batch_first,
        seq_lengths=seq_lengths,
        stateful=stateful,
    )
    with _x64_if(dtype), pinned_precision():
        entries = None
        if is_nnx:
            from lstm_jax.interop.nnx_transfer import load_state_dict

            port: Any = nnx.clone(flax_model)
            load_state_dict(port, torch_state)
            start: Any = None
        else:
            port = flax_model
            example = _first_batch(flax_model, xs, dtype, batch_size, batch_first, seq_lengths)
            start, entries = _linen_start(torch_state, flax_model, variables, example)
        torch_losses = lstm_torch.fit(torch_copy, xs, ys, loss=torch_loss, **same)
        trained, jax_losses = jax_fit(port, start, xs, ys, loss=jax_loss, rng=rng, **same)
        jax_state = _jax_state_dict(port, trained, entries)
    torch_final = {k: v.detach().cpu().numpy() for k, v in torch_copy.state_dict().items()}
    return _report(
        port, torch_model, dtype, torch_losses, jax_losses, jax_state, torch_final, dropout
    )


def _report(
    flax_model: Any,
    torch_model: Any,
    dtype: np.dtype,
    torch_losses: np.ndarray,
    jax_losses: np.ndarray,
    jax_state: Mapping[str, np.ndarray],
    torch_state: Mapping[str, np.ndarray],
    dropout: tuple[str, ...],
) -> TrainingReport:
    tol = TRAINING[dtype]
    losses = tuple(
        _difference(f"loss epoch {e + 1}", "loss", j, t, tol)
        for e, (j, t) in enumerate(zip(jax_losses, torch_losses, strict=True))
    )
    parameters = tuple(
        _difference(key, "parameter", value, torch_state[key], tol)
        for key, value in jax_state.items()
        if key in torch_state
    )
    statistical = None
    if dropout:
        half = slice(len(torch_losses) // 2, None)
        statistical = _difference(
            f"mean loss, epochs {half.start + 1}-{len(torch_losses)}",
            "mean loss",
            np.mean(jax_losses[half]),
            np.mean(torch_losses[half]),
            DROPOUT_LOSS_BAND,
        )
    return TrainingReport(
        kind=type(flax_model).__name__,
        torch_kind=type(torch_model).__name__,
        dtype=dtype,
        torch_losses=np.asarray(torch_losses),
        jax_losses=np.asarray(jax_losses),
        losses=losses,
        parameters=parameters,
        dropout=dropout,
        statistical=statistical,
    )

"""The lecture's training loop, generalized to any ``torch.nn.Module``: batches, shuffling,
optimizers, clipping, variable lengths, carried state and checkpoints.

Per step, as the lecture: ``model.zero_grad()`` (and ``optimizer.zero_grad()``),
forward, loss, backward, optional gradient clipping, ``optimizer.step()``. A
per-epoch loss is the sum of that epoch's batch losses (the lecture's
``total_loss``). How a model is called (the lecture's ``LSTMModeler`` through its
``hidden_cell``, any other as ``lstm_jax.fit`` calls a Flax model):
:mod:`lstm_torch.model_call`; the named losses: :mod:`lstm_torch.losses`;
checkpoints: :mod:`lstm_torch.resume`.

Data order and batching come from :mod:`lstm_jax.common.data` (numpy only), which
``lstm_jax.fit`` uses too, so both backends see the same batches in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lstm_jax.common.data import (
    BatchPlan,
    batch_plan,
    check_finite_data,
    check_loss,
    check_positive_int,
    check_stateful,
    epoch_orders,
    prepare_data,
    prepare_seq_lengths,
)
from lstm_jax.common.errors import TrainingDiverged
from lstm_jax.common.numbers import check_flag
from lstm_jax.common.optim import SGD, Adam, AdamW, is_spec
from lstm_jax.common.resume import (
    KEEP_CHECKPOINTS,
    check_checkpointing,
    describe,
    digest,
    logger,
    resumed_message,
)
from lstm_torch.losses import LossFunction, loss_function
from lstm_torch.model_call import LectureCall, ModuleCall, model_call
from lstm_torch.resume import TorchCheckpoints, guarded, position, stop_if_requested

ModelCall = LectureCall | ModuleCall


def make_optimizer(spec: Any, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of an :mod:`lstm_jax.common.optim` spec.

    Args:
        spec: ``SGD``, ``Adam`` or ``AdamW``.
        params: the parameters to optimize (``model.parameters()``).

    Returns:
        ``torch.optim.SGD``, ``Adam`` or ``AdamW`` over ``params`` with the spec's
        hyperparameters. ``clip_norm`` is not part of a torch optimizer; :func:`fit`
        applies it.
    """
    if isinstance(spec, SGD):
        return torch.optim.SGD(
            params,
            lr=spec.lr,
            momentum=spec.momentum,
            dampening=0.0,
            weight_decay=spec.weight_decay,
            nesterov=spec.nesterov,
        )
    if isinstance(spec, Adam):
        return torch.optim.Adam(
            params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay
        )
    if isinstance(spec, AdamW):
        return torch.optim.AdamW(
            params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay
        )
    raise TypeError(
        f"expected an lstm_jax.common.optim spec (SGD, Adam, AdamW), got {type(spec).__name__}"
    )


def _resolve_optimizer(
    model: nn.Module, optimizer: Any, clip_norm: float | None
) -> tuple[torch.optim.Optimizer, float | None]:
    if is_spec(optimizer):
        if clip_norm is not None and optimizer.clip_norm is not None:
            raise ValueError("clip_norm given twice: in the optimizer spec and as an argument")
        return make_optimizer(optimizer, model.parameters()), (
            optimizer.clip_norm if clip_norm is None else clip_norm
        )
    if isinstance(optimizer, torch.optim.Optimizer):
        own = {id(p) for p in model.parameters()}
        listed = [p for group in optimizer.param_groups for p in group["params"]]
        if not any(id(p) in own for p in listed):
            raise ValueError(
                "the torch optimizer holds none of the model's parameters: build it with "
                "model.parameters() of this model"
            )
        return optimizer, clip_norm
    raise TypeError(
        f"optimizer: expected a torch.optim.Optimizer or an lstm_jax.common.optim spec "
        f"(SGD, Adam, AdamW), got {type(optimizer).__name__}"
    )


def _all_finite(params: Sequence[torch.Tensor]) -> bool:
    with torch.no_grad():
        return bool(torch.isfinite(torch.cat([p.reshape(-1) for p in params])).all())


def _fingerprint(
    model: nn.Module,
    optimizer: Any,
    opt: torch.optim.Optimizer,
    loss: Any,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    **options: Any,
) -> dict[str, Any]:
    """The facts a checkpoint must share with this call to be resumed from."""
    x, y, lengths = arrays
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return {
        "backend": "lstm_torch",
        "model": describe(model),
        "params": [[k, str(v.dtype), list(v.shape)] for k, v in model.state_dict().items()],
        "optimizer": describe(optimizer) if is_spec(optimizer) else type(opt).__name__,
        "param_groups": describe(groups),
        "loss": loss if isinstance(loss, str) else describe(loss),
        "xs": [list(x.shape), str(x.dtype)],
        "ys": [list(y.shape), str(y.dtype)],
        "data": digest(x, y, lengths),
        **options,
    }


def _check_clip_norm(clip_norm: Any) -> None:
    if clip_norm is None:
        return
    if isinstance(clip_norm, bool) or not isinstance(clip_norm, int | float):
        raise TypeError(f"clip_norm: expected None or a number, got {clip_norm!r}")
    if not math.isfinite(clip_norm) or clip_norm <= 0:  # <= 0 would flip the gradients
        raise ValueError(f"clip_norm: expected a finite number > 0, got {clip_norm!r}")


def _prepare_arrays(
    call: ModelCall, xs: Any, ys: Any, loss: Any, seq_lengths: Any, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The checked numpy data: xs, ys and the (N,) lengths or None (see :func:`fit`)."""
    x_np, y_np = prepare_data(
        xs, ys, loss=loss, input_size=call.input_size, output_size=call.output_size, dtype=dtype
    )
    if seq_lengths is not None and x_np.ndim < 2:
        raise ValueError(f"seq_lengths: expected xs of (N, T, ...) sequences, got {x_np.shape}")
    lengths_np = prepare_seq_lengths(seq_lengths, len(x_np), x_np.shape[1] if x_np.ndim > 1 else 1)
    check_finite_data(x_np, y_np, lengths_np)
    return x_np, y_np, lengths_np


class _Data(NamedTuple):
    """The whole data set as tensors: xs on the model's device (integers as int64),
    ys (labels as int64), the lengths as an int64 CPU tensor (``pack_padded_sequence``'s)."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None

    @classmethod
    def of(
        cls, arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None], loss: Any, device: Any
    ) -> _Data:
        x_np, y_np, lengths_np = arrays
        x = torch.from_numpy(x_np).to(device)
        if not x.is_floating_point():
            x = x.long()  # torch's index dtype (nn.Embedding, one_hot)
        y = torch.from_numpy(y_np).to(device)
        if loss == "cross_entropy" or not y.is_floating_point():
            y = y.long()  # torch's label dtype (int64), for a callable loss too
        lengths = None if lengths_np is None else torch.from_numpy(lengths_np.astype(np.int64))
        return cls(x, y, lengths)

    def batch(
        self, index: np.ndarray, batch_first: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One batch in the model's layout: x (T, B, ...) or (B, T, ...), y (B, ...), lengths."""
        idx = torch.from_numpy(index).to(self.x.device)
        x = self.x[idx]
        if not batch_first and x.dim() >= 2:
            x = x.transpose(0, 1).contiguous()
        lengths = None if self.lengths is None else self.lengths[torch.from_numpy(index)]
        return x, self.y[idx], lengths


class _Step(NamedTuple):
    """What every step of a run uses."""

    call: ModelCall
    opt: torch.optim.Optimizer
    loss_function: LossFunction
    clip: float | None
    params: Sequence[torch.Tensor]
    last_finite: Sequence[torch.Tensor]  # the parameters before the step, for a divergence


def _train_epoch(
    step: _Step,
    data: _Data,
    plan: BatchPlan,
    order: np.ndarray,
    epoch: int,
    stateful: bool,
    losses: np.ndarray,
    checkpoints: TorchCheckpoints | None,
    start: tuple[int, float, Any] = (0, 0.0, None),
) -> float:
    """One epoch over ``order``'s batches; returns the sum of its batch losses.

    ``start``: where a stop's checkpoint left this epoch (batches done, their loss, a
    stateful run's carry); after each step a SIGTERM or Ctrl-C saves that point and
    stops (:func:`lstm_torch.resume.stop_if_requested`)."""
    skip, total_loss, carry = start
    model = step.call.model
    for index_in_epoch, index in enumerate(plan.batches(order)):
        if index_in_epoch < skip:
            continue
        x, y, lengths = data.batch(index, step.call.batch_first)
        if stateful and index_in_epoch == 0:  # each epoch starts from zeros
            carry = step.call.zero_carry(x, lengths)
        model.zero_grad()
        step.opt.zero_grad()
        y_hat, carry = step.call(x, lengths, carry, stateful)
        batch_loss = step.loss_function(y_hat, y)
        value = batch_loss.item()
        if not math.isfinite(value):
            _diverged(model, epoch, index_in_epoch, plan, value, losses, None, step.params)
        batch_loss.backward()
        if step.clip is not None:
            nn.utils.clip_grad_norm_(step.params, step.clip)
        with torch.no_grad():
            for keep_p, p in zip(step.last_finite, step.params, strict=True):
                keep_p.copy_(p)
        step.opt.step()
        if not _all_finite(step.params):
            _diverged(
                model, epoch, index_in_epoch, plan, value, losses, step.last_finite, step.params
            )
        total_loss += value
        stop_if_requested(
            checkpoints,
            model,
            step.opt,
            epoch,
            index_in_epoch + 1,
            plan.steps_per_epoch,
            total_loss,
            carry,
            losses,
        )
    return total_loss


def _resume(
    checkpoints: TorchCheckpoints,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    epochs: int,
    losses: np.ndarray,
) -> tuple[int, tuple[int, float, Any]]:
    """Load the latest checkpoint of this run, if any, into ``model``, ``opt`` and
    ``losses``; return the epochs it had done (0 without one) and where a stop's
    checkpoint left the next epoch (:func:`lstm_torch.resume.position`)."""
    payload = checkpoints.latest()
    if payload is None:
        return 0, (0, 0.0, None)
    done, saved = checkpoints.restore(payload, model, opt)
    if done > epochs:
        raise ValueError(
            f"checkpoint_dir {str(checkpoints.directory)!r}: its latest checkpoint is "
            f"at epoch {done}, past this call's {epochs} epochs"
        )
    losses[:done] = saved
    logger.info(resumed_message(done, epochs, 0, str(checkpoints.directory)))
    return done, position(payload)


@guarded  # the directory locked; SIGTERM and Ctrl-C stop at a step boundary (resume.py)
def fit(
    model: nn.Module,
    xs: Any,
    ys: Any,
    *,
    optimizer: Any,
    epochs: int,
    batch_size: int = 1,
    shuffle_seed: int | None = None,
    loss: Any = "mse",
    clip_norm: float | None = None,
    batch_first: bool | None = None,
    seq_lengths: Any = None,
    stateful: bool = False,
    checkpoint_dir: Any = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = KEEP_CHECKPOINTS,
    progress: bool = False,
) -> np.ndarray:
    """Train any ``torch.nn.Module`` in place, as ``lstm_jax.fit`` trains its Flax mirror;
    return the per-epoch losses.

    The same call (data, ``optimizer`` spec, ``epochs``, ``batch_size``,
    ``shuffle_seed``, ``loss``, ``batch_first``, ``seq_lengths``, ``stateful``) on
    both backends visits the same batches in the same order with the same update
    rule, so a model and its port train alike (``lstm_jax.compare_training`` checks it).

    How the model is called (as ``lstm_jax.fit`` calls a Flax model of one's own,
    :mod:`lstm_torch.model_call`): ``model(x)`` per batch, x (T, B, ...) time-major or
    (B, T, ...) with ``batch_first``; its first output is the prediction when it
    returns a tuple; ``model(x, seq_lengths=lengths)`` with ``seq_lengths``;
    ``model(x, carry) -> (prediction, carry)`` when stateful. The lecture's
    ``LSTMModeler`` is trained through its stored ``hidden_cell``, reset to zeros
    before every batch (the lecture's loop). Per step: ``zero_grad``, forward, loss,
    backward, optional gradient clipping, ``optimizer.step()``; the model is in
    training mode (``model.train()``: its dropout draws masks from torch's generator,
    which differ from JAX's).

    Arguments:
        model: a ``torch.nn.Module``; its parameters' dtype and device set those of
            the batches.
        xs: the lecture's model: (N, T, I) sequences, or (N, I) samples of one step
            each (-> (N, 1, I)), cast to the parameters' dtype. Any other model:
            (N, T, ...) samples; floats cast to the parameters' dtype, integers
            (tokens) passed as int64.
        ys: (N, O) targets for ``"mse"`` ((N,) when O = 1 for the lecture's model), (N,)
            integer labels for ``"cross_entropy"``; any (N, ...) for another model or a
            callable loss. A batch's targets are the rows ``ys[index]``, (B, ...), in
            every layout; integer targets arrive as int64.
        optimizer: an :mod:`lstm_jax.common.optim` spec (``SGD``, ``Adam``, ``AdamW``; the
            same value configures ``lstm_jax.fit``) or a ``torch.optim.Optimizer``
            built over ``model.parameters()``.
        epochs: passes over the data.
        batch_size: B; the last batch of an epoch has N % B samples when that is not 0.
        shuffle_seed: None keeps the data order; an int draws one permutation per
            epoch with ``numpy.random.default_rng(shuffle_seed)`` (as ``lstm_jax.fit``).
        loss: a name of :data:`lstm_jax.common.data.LOSSES` (``"mse"``, ``"cross_entropy"``,
            means; the classes on the last axis, see :mod:`lstm_torch.losses`) or a
            callable ``loss(prediction, target)`` of torch tensors returning a scalar
            tensor (or ``(scalar, aux)``).
        clip_norm: for a native optimizer, clip gradients with
            ``clip_grad_norm_(params, clip_norm)`` before each step (a spec carries
            its own ``clip_norm``).
        batch_first: for a model without its own ``batch_first`` attribute: True gives
            it (B, T, ...) batches; default time-major (T, B, ...). A model with one
            (the ``LSTMModeler``: its ``lstm``'s) sets the layout itself.
        seq_lengths: (N,) valid lengths per sample, passed per batch as
            ``seq_lengths=`` (B,) int64 CPU tensor; the lecture's model packs its
            batch and predicts at each row's last valid step.
        stateful: carry the model's state across the batches of an epoch, detached
            (pytorch/examples' ``repackage_hidden``), zeros at each epoch's start;
            needs ``shuffle_seed=None`` and N a multiple of B.
        checkpoint_dir: save a checkpoint there every ``checkpoint_every`` epochs (and
            after the last; see :mod:`lstm_torch.resume`); when it already holds one
            of this run, training resumes from the latest (logged at INFO) and ends
            bitwise as an uninterrupted run. Another run's checkpoint is refused.
        checkpoint_every: epochs between saves (default 1 with a checkpoint_dir).
        keep_checkpoints: how many of the latest checkpoints to keep.
        progress: show a tqdm bar over epochs (it appears after 2 s).

    Returns:
        (epochs,) float64 per-epoch losses, each the sum of its batch losses.

    The model's mode (and an ``LSTMModeler``'s stored ``hidden_cell``) are put back as
    they were when fit returns.

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module``; ``seq_lengths`` for a
            ``forward`` without a ``seq_lengths`` parameter; ``stateful`` for one
            without a carry after x; a loss function of JAX arrays.
        ValueError: data that do not fit the call (shapes, labels, lengths), a
            ``batch_first`` that contradicts the model's own.
        TrainingDiverged: a step gave a non-finite loss or non-finite parameters; the
            model keeps the parameters from before that step.
    """
    call = model_call(model, batch_first)
    epochs = check_positive_int("epochs", epochs)
    loss = check_loss(loss)
    stateful = check_flag("stateful", stateful)
    progress = check_flag("progress", progress)
    _check_clip_norm(clip_norm)
    directory, checkpoint_every, keep = check_checkpointing(
        checkpoint_dir, checkpoint_every, keep_checkpoints
    )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    first = params[0]
    dtype = torch.empty((), dtype=first.dtype).numpy().dtype
    arrays = _prepare_arrays(call, xs, ys, loss, seq_lengths, dtype)
    call.check(seq_lengths, stateful)
    plan = batch_plan(len(arrays[0]), batch_size)
    if stateful:
        check_stateful(plan, shuffle_seed)
    orders = epoch_orders(plan.n, epochs, shuffle_seed)
    opt, clip = _resolve_optimizer(model, optimizer, clip_norm)
    last_finite = [torch.empty_like(p) for p in params]
    step = _Step(call, opt, loss_function(loss), clip, params, last_finite)
    data = _Data.of(arrays, loss, first.device)
    losses = np.zeros(epochs)
    done, start = 0, (0, 0.0, None)
    checkpoints = None
    if directory is not None:
        layout = {} if isinstance(call, LectureCall) else {"batch_first": call.batch_first}
        fingerprint = _fingerprint(
            model,
            optimizer,
            opt,
            loss,
            arrays,
            batch_size=plan.batch_size,
            shuffle_seed=None if shuffle_seed is None else int(shuffle_seed),
            stateful=stateful,
            clip_norm=clip,
            checkpoint_every=checkpoint_every,
            **layout,
        )
        checkpoints = TorchCheckpoints(directory, fingerprint, keep)
        done, start = _resume(checkpoints, model, opt, epochs, losses)
    was_training = model.training
    model.train()
    try:
        bar = tqdm(
            range(done, epochs),
            initial=done,
            total=epochs,
            desc="torch fit",
            unit="epoch",
            disable=not progress,
            delay=2,
        )
        for epoch in bar:
            losses[epoch] = _train_epoch(
                step,
                data,
                plan,
                orders[epoch],
                epoch,
                stateful,
                losses,
                checkpoints,
                start if epoch == done else (0, 0.0, None),
            )
            bar.set_postfix(loss=f"{losses[epoch]:.4g}", refresh=False)
            finished = epoch + 1
            if checkpoints is not None and (finished % checkpoint_every == 0 or finished == epochs):
                checkpoints.save(finished, model, opt, losses[:finished])
    finally:
        model.train(was_training)
        call.restore()
    return losses


def _diverged(
    model: nn.Module,
    epoch: int,
    step: int,
    plan: Any,
    loss: float,
    losses: np.ndarray,
    last_finite: Sequence[torch.Tensor] | None,
    params: Sequence[torch.Tensor],
) -> None:
    """Restore the parameters from before the failing step (when it changed them), raise."""
    if last_finite is not None:
        with torch.no_grad():
            for p, keep in zip(params, last_finite, strict=True):
                p.copy_(keep)
    raise TrainingDiverged(
        epoch=epoch,
        step=step,
        global_step=epoch * plan.steps_per_epoch + step,
        loss=loss,
        losses=losses[:epoch].copy(),
        variables={k: v.detach().clone() for k, v in model.state_dict().items()},
    )

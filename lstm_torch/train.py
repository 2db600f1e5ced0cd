"""The lecture's training loop, generalized: batches, shuffling, optimizers, clipping,
variable lengths, carried state and checkpoints.

Per step, as the lecture: ``model.zero_grad()`` (and ``optimizer.zero_grad()``),
``hidden_cell`` reset to zeros for the batch (or, stateful, the previous batch's,
detached), forward, loss, backward, optional gradient clipping,
``optimizer.step()``. A per-epoch loss is the sum of that epoch's batch losses
(the lecture's ``total_loss``). Checkpoints: :mod:`lstm_torch.resume`.

Data order and batching come from :mod:`lstm_jax.common.data` (numpy only), which
``lstm_jax.fit`` uses too, so both backends see the same batches in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lstm_jax.common.data import (
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
from lstm_torch.resume import TorchCheckpoints, guarded, position, stop_if_requested


def make_optimizer(spec: Any, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """An :mod:`lstm_jax.common.optim` spec -> its ``torch.optim`` optimizer over ``params``.

    ``clip_norm`` is not part of a torch optimizer; :func:`fit` applies it.
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


def _loss_function(loss: Any) -> Any:
    """A loss name -> torch's module; a callable ``loss(prediction, target)`` -> a
    function returning its scalar (an ``(scalar, aux)`` result's aux is dropped)."""
    if callable(loss):

        def scalar(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            out = loss(prediction, target)
            value = out[0] if isinstance(out, tuple) and len(out) == 2 else out
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                raise TypeError(
                    f"loss: expected the callable to return a scalar tensor (or (scalar, aux)), "
                    f"got {type(value).__name__}"
                )
            return value

        return scalar
    if loss == "mse":
        return nn.MSELoss()
    return nn.CrossEntropyLoss()


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
    seq_lengths: Any = None,
    stateful: bool = False,
    checkpoint_dir: Any = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = KEEP_CHECKPOINTS,
    progress: bool = False,
) -> np.ndarray:
    """Train ``model`` (an ``lstm_torch.LSTMModeler``) in place; return per-epoch losses.

    Arguments:
        model: the model; its parameters' dtype and device set those of the batches.
        xs: (N, T, I) sequences, or (N, I) samples of one step each (-> (N, 1, I)).
        ys: (N, O) targets for ``"mse"`` ((N,) when O = 1), or (N,) integer labels
            for ``"cross_entropy"``.
        optimizer: an :mod:`lstm_jax.common.optim` spec (``SGD``, ``Adam``, ``AdamW``; the
            same value configures ``lstm_jax.fit``) or a ``torch.optim.Optimizer``
            built over ``model.parameters()``.
        epochs: passes over the data.
        batch_size: B; batches are (T, B, I) ((B, T, I) with ``batch_first``); the
            last batch of an epoch has N % B samples when that is not 0.
        shuffle_seed: None keeps the data order; an int draws one permutation per
            epoch with ``numpy.random.default_rng(shuffle_seed)`` (as ``lstm_jax.fit``).
        loss: ``"mse"`` (``nn.MSELoss``, mean), ``"cross_entropy"`` (mean) or a callable
            ``loss(prediction, target)`` returning a scalar tensor (or ``(scalar, aux)``).
        clip_norm: for a native optimizer, clip gradients with
            ``clip_grad_norm_(params, clip_norm)`` before each step (a spec carries
            its own ``clip_norm``).
        seq_lengths: (N,) valid lengths per sample; each batch is packed
            (``pack_padded_sequence``) and predicts at each row's last valid step.
        stateful: carry ``hidden_cell`` across the batches of an epoch, detached
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

    The model's mode and stored ``hidden_cell`` are put back as they were when fit returns.

    Raises:
        TrainingDiverged: a step gave a non-finite loss or non-finite parameters; the
            model keeps the parameters from before that step.
    """
    if not isinstance(model, nn.Module) or not all(
        hasattr(model, a) for a in ("lstm", "linear", "zero_hidden_cell")
    ):
        raise TypeError(
            f"model: expected an lstm_torch.LSTMModeler (with lstm, linear and "
            f"zero_hidden_cell), got {type(model).__name__}"
        )
    epochs = check_positive_int("epochs", epochs)
    loss = check_loss(loss)
    stateful = check_flag("stateful", stateful)
    progress = check_flag("progress", progress)
    if clip_norm is not None:
        if isinstance(clip_norm, bool) or not isinstance(clip_norm, int | float):
            raise TypeError(f"clip_norm: expected None or a number, got {clip_norm!r}")
        if not math.isfinite(clip_norm) or clip_norm <= 0:  # <= 0 would flip the gradients
            raise ValueError(f"clip_norm: expected a finite number > 0, got {clip_norm!r}")
    directory, checkpoint_every, keep = check_checkpointing(
        checkpoint_dir, checkpoint_every, keep_checkpoints
    )
    modeler: Any = model  # an LSTMModeler by the check above (lstm, linear, hidden_cell)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    first = params[0]
    x_np, y_np = prepare_data(
        xs,
        ys,
        loss=loss,
        input_size=modeler.lstm.input_size,
        output_size=modeler.linear.out_features,
        dtype=torch.empty((), dtype=first.dtype).numpy().dtype,
    )
    lengths_np = prepare_seq_lengths(seq_lengths, len(x_np), x_np.shape[1])
    check_finite_data(x_np, y_np, lengths_np)
    plan = batch_plan(len(x_np), batch_size)
    if stateful:
        check_stateful(plan, shuffle_seed)
    orders = epoch_orders(plan.n, epochs, shuffle_seed)
    opt, clip = _resolve_optimizer(model, optimizer, clip_norm)
    loss_function = _loss_function(loss)
    batch_first = bool(getattr(model.lstm, "batch_first", False))

    x_all = torch.from_numpy(x_np).to(first.device)
    y_all = torch.from_numpy(y_np).to(first.device)
    lengths_all = None if lengths_np is None else torch.from_numpy(lengths_np.astype(np.int64))
    if loss == "cross_entropy" or not y_all.is_floating_point():
        y_all = y_all.long()  # torch's label dtype (int64), for a callable loss too
    last_finite = [torch.empty_like(p) for p in params]
    losses = np.zeros(epochs)
    done = 0
    skip, resumed_total, resumed_state = 0, 0.0, None  # a stop's place within its epoch
    checkpoints = None
    if directory is not None:
        fingerprint = _fingerprint(
            model,
            optimizer,
            opt,
            loss,
            (x_np, y_np, lengths_np),
            batch_size=plan.batch_size,
            shuffle_seed=None if shuffle_seed is None else int(shuffle_seed),
            stateful=stateful,
            clip_norm=clip,
            checkpoint_every=checkpoint_every,
        )
        checkpoints = TorchCheckpoints(directory, fingerprint, keep)
        payload = checkpoints.latest()
        if payload is not None:
            done, saved = checkpoints.restore(payload, model, opt)
            skip, resumed_total, resumed_state = position(payload)
            if done > epochs:
                raise ValueError(
                    f"checkpoint_dir {str(checkpoints.directory)!r}: its latest checkpoint is "
                    f"at epoch {done}, past this call's {epochs} epochs"
                )
            losses[:done] = saved
            logger.info(resumed_message(done, epochs, 0, str(checkpoints.directory)))
    # put back when fit returns, as the mode: the last batch's state (with its autograd
    # graph, of that batch's size) would make the next forward of another batch size fail
    was_training, stored_cell = model.training, modeler.hidden_cell
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
            total_loss = 0.0
            state = modeler.zero_hidden_cell(plan.batch_size) if stateful else None
            if epoch == done and skip:  # resumed within this epoch
                total_loss, state = resumed_total, resumed_state if stateful else None
            for step, index in enumerate(plan.batches(orders[epoch])):
                if epoch == done and step < skip:
                    continue
                idx = torch.from_numpy(index).to(first.device)
                x = x_all[idx]
                x = x if batch_first else x.transpose(0, 1).contiguous()
                y = y_all[idx]
                model.zero_grad()
                opt.zero_grad()
                modeler.hidden_cell = state if stateful else modeler.zero_hidden_cell(len(index))
                if lengths_all is None:
                    y_hat = model(x)
                else:
                    y_hat = model(x, seq_lengths=lengths_all[torch.from_numpy(index)])
                if stateful:  # repackage_hidden: the next batch starts here, no gradient back
                    state = tuple(t.detach() for t in modeler.hidden_cell)
                batch_loss = loss_function(y_hat, y)
                value = batch_loss.item()
                if not math.isfinite(value):
                    _diverged(model, epoch, step, plan, value, losses, None, params)
                batch_loss.backward()
                if clip is not None:
                    nn.utils.clip_grad_norm_(params, clip)
                with torch.no_grad():
                    for keep_p, p in zip(last_finite, params, strict=True):
                        keep_p.copy_(p)
                opt.step()
                if not _all_finite(params):
                    _diverged(model, epoch, step, plan, value, losses, last_finite, params)
                total_loss += value
                units = plan.steps_per_epoch
                stop_if_requested(
                    checkpoints, model, opt, epoch, step + 1, units, total_loss, state, losses
                )
            losses[epoch] = total_loss
            bar.set_postfix(loss=f"{total_loss:.4g}", refresh=False)
            finished = epoch + 1
            if checkpoints is not None and (finished % checkpoint_every == 0 or finished == epochs):
                checkpoints.save(finished, model, opt, losses[:finished])
    finally:
        model.train(was_training)
        modeler.hidden_cell = stored_cell
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

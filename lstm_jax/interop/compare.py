"""Check that a JAX model computes what its torch original computes: forward, state, gradients.

:func:`compare_with_torch` runs the torch model and the Flax model on the same
input and reports the largest differences. It needs torch (the ``torch`` extra,
``pip install "lstm-jax[torch]"``), imported only when the function runs, so
``import lstm_jax`` stays free of torch.

Any pair works: the built-ins (``torch.nn.LSTM`` with ``lstm_jax.LSTM``,
``lstm_torch.LSTMModeler`` with ``lstm_jax.LSTMModeler``) and a model of one's own
whose Flax submodules carry the torch attribute names (parameters paired by the
transfer's key rules, :mod:`lstm_jax.interop.transfer`).

Example::

    report = lstm_jax.compare_with_torch(torch_model, flax_model, variables, tokens, lengths)
    print(report)          # one row per output leaf and gradient, the worst of each group
    assert report.ok       # every scaled difference within lstm_jax.common.tolerances

:func:`compare_function_with_torch` is the same check for any JAX function of a
``{torch key: array}`` mapping (the Flax NNX modules use it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.errors import FlaxError

from lstm_jax.common.arrays import to_numpy
from lstm_jax.common.config import check_param_shapes, params_of
from lstm_jax.interop.buffer_compare import (
    buffer_differences,
    flax_train_step,
    output_differences,
    torch_buffers,
    torch_train_step,
)
from lstm_jax.interop.parity import (
    Difference,
    ParityReport,
    _array,
    _Call,
    _is_packed,
    _torch_dtype,
    _torch_held,
    _x64_if,
    compare_function_with_torch,
)
from lstm_jax.interop.precision import pinned_precision
from lstm_jax.interop.transfer import (
    TORCH_ONLY,
    check_flax_params,
    flatten,
    flax_params_to_torch,
    model_key_map,
    torch_params_to_flax,
    unflatten,
)
from lstm_jax.linen.modules import LSTM, LSTMModeler

__all__ = [
    "Difference",
    "ParityReport",
    "compare_function_with_torch",
    "compare_with_torch",
    "pinned_precision",
]


def compare_with_torch(
    torch_model: Any,
    flax_model: Any,
    variables: Mapping[str, Any],
    *args: Any,
    initial_state: tuple[Any, Any] | None = None,
    seed: int = 0,
    train_step: bool = False,
    **kwargs: Any,
) -> ParityReport:
    """Run both models on the same arguments and report the largest differences.

    Compared: every output leaf (tuples and NamedTuples by position, so torch's
    ``(h_n, c_n)`` pairs with an ``LSTMState``), and the gradients of the scalar
    ``sum_k <output_k, g_k>`` (fixed random cotangents g drawn from ``seed``) with
    respect to every parameter (paired by the transfer's key rules) and every floating
    input. Integer inputs (tokens, lengths) are passed through, never differentiated.
    The torch model runs in eval mode; its modes, ``requires_grad`` flags, ``.grad``
    fields and ``hidden_cell`` are left as they were; precision is pinned
    (:func:`pinned_precision`). Needs torch.

    Arguments:
        torch_model: ``torch.nn.LSTM`` (with an ``lstm_jax.LSTM``),
            ``lstm_torch.LSTMModeler`` (with an ``lstm_jax.LSTMModeler``), or any
            ``torch.nn.Module`` with a Flax mirror whose submodules carry its attribute
            names. A torch model that packs its input (``pack_padded_sequence`` inside
            ``forward``) pairs with a Flax model taking ``seq_lengths``: give both the
            lengths as the same argument.
        flax_model: the Flax (linen) model; it should be deterministic when called
            with ``args`` (e.g. its ``deterministic`` defaults to True). A Flax NNX
            module holds its parameters: ``compare_with_torch(torch_model, module, *args)``,
            no variables (see :mod:`lstm_jax.interop.nnx_compare`).
        variables: the Flax model's ``{"params": ...}``, of the torch model's dtype.
        *args: the call's arguments, the same for both models: numpy, JAX or
            torch arrays (floating ones of the parameters' dtype), and anything else
            (``None``, flags) passed as is. For the built-ins: ``x``, or ``x, (h_0, c_0)``
            as torch's call takes them; an ``nn.LSTM`` pair also takes the
            ``PackedSequence`` itself as ``x``.
        **kwargs: the call's keywords, the same for both models. For the built-ins,
            ``seq_lengths=`` (B,): the torch ``nn.LSTM`` then runs on
            ``pack_padded_sequence(x, seq_lengths)`` (its output padded back), the JAX
            one on ``seq_lengths``.
        initial_state: (built-ins only) (h_0, c_0), the ``LSTMModeler``'s
            ``hidden_cell``; zeros when None.
        seed: seeds the cotangents.
        train_step: also run one training-mode forward on both sides (a model of one's
            own: the Flax model gets ``train=True`` or ``deterministic=False``, whichever
            its ``__call__`` takes, and ``batch_stats`` mutable; an NNX module
            ``.train()``; torch a copy in ``.train()``), dropout off on both (its masks
            cannot match), and compare its outputs (group ``"train forward"``) and the
            running statistics it leaves (``"train buffers"``).

    Buffers (BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``)
    are compared too (group ``"buffers"``): the eval-mode forward uses them.

    Returns:
        A :class:`ParityReport` (``.ok``, ``.forward``, ``.final_state``,
        ``.gradient``, and ``str()`` a table naming the worst key of each group).
    """
    import torch  # the torch extra

    from lstm_torch import LSTMModeler as TorchModeler

    if isinstance(flax_model, nnx.Module):  # it holds its parameters: variables is args[0]
        if isinstance(variables, Mapping) and "params" in variables:
            raise TypeError(
                f"compare_with_torch: the NNX {type(flax_model).__name__} holds its "
                "parameters: call compare_with_torch(torch_model, module, *args), without "
                'variables; got {"params": ...} where the first argument goes'
            )
        from lstm_jax.interop.nnx_compare import compare_nnx_with_torch

        return compare_nnx_with_torch(
            torch_model,
            flax_model,
            (variables, *args),
            kwargs,
            initial_state=initial_state,
            seed=seed,
            train_step=train_step,
        )

    pairs = ((torch.nn.LSTM, LSTM, "LSTM"), (TorchModeler, LSTMModeler, "LSTMModeler"))
    if any(isinstance(torch_model, t) or isinstance(flax_model, j) for t, j, _ in pairs):
        kind = next(
            (k for t, j, k in pairs if isinstance(torch_model, t) and isinstance(flax_model, j)),
            None,
        )
        if len(args) == 2 and initial_state is None:  # as nn.LSTM(x, (h_0, c_0))
            initial_state, args = args[1], args[:1]
        lengths = kwargs.pop("seq_lengths", None) if kind is not None else None
        if kind == "LSTM" and args and _is_packed(args[0]):  # nn.LSTM's packed input
            padded, lengths = _unpacked(args[0], torch_model.batch_first, lengths)
            args = (padded, *args[1:])
        if kind is None or len(args) != 1 or kwargs or train_step:
            raise TypeError(
                f"expected torch.nn.LSTM with lstm_jax.LSTM, or lstm_torch.LSTMModeler with "
                f"lstm_jax.LSTMModeler, called with x (and initial_state, or (h_0, c_0) after "
                f"x), or two models of your own; got {type(torch_model).__name__} with "
                f"{type(flax_model).__name__}"
                f" and {len(args)} positional, {sorted(kwargs)} keyword arguments"
            )
        return _compare_builtin(
            torch_model, flax_model, variables, kind, args[0], initial_state, seed, lengths
        )
    if initial_state is not None:
        raise TypeError(
            "compare_with_torch: initial_state is for the built-in models; pass your model's "
            "state as one of its arguments"
        )
    if not isinstance(torch_model, torch.nn.Module):
        raise TypeError(
            f"compare_with_torch: expected a torch.nn.Module, got {type(torch_model).__name__}"
        )
    dtype = _torch_dtype(torch_model)
    params = params_of(variables, "compare_with_torch", wrapper_optional=True)
    wrapped = isinstance(variables, Mapping) and "params" in variables
    batch_stats = variables.get("batch_stats") if wrapped else None
    with _x64_if(dtype), pinned_precision():
        call = _Call.of(args, kwargs, dtype)
        entries = model_key_map(
            flax_model,
            call.numpy_args,
            example_kwargs=call.numpy_kwargs,
            what="compare_with_torch: the call's arguments",
        )
        check_flax_params(params, entries, "compare_with_torch", batch_stats)
        param_entries = [e for e in entries if e.collection == "params"]
        held = _torch_held(torch_model, param_entries)
        jax_params = flax_params_to_torch(params, param_entries)
        buffer_entries = [e for e in entries if e.collection == "batch_stats"]
        buffers = flax_params_to_torch(params, buffer_entries, batch_stats)
        # Flax's BatchNorm keeps no counter: torch's is not compared (it is only read)
        flax_bn = [e.torch_key for e in entries if e.collection == TORCH_ONLY]
        others = {} if batch_stats is None else {"batch_stats": batch_stats}

        def jax_call(p: Mapping[str, jax.Array], inputs: Mapping[str, jax.Array]) -> Any:
            tree = torch_params_to_flax(p, param_entries)
            a, k = call.rebuild(inputs, jnp.asarray)
            try:
                return flax_model.apply({"params": tree, **others}, *a, **k)
            except (TypeError, ValueError, FlaxError) as err:
                raise _apply_error(flax_model, err) from err

        def torch_call(inputs: Mapping[str, Any]) -> Any:
            device = next(torch_model.parameters()).device
            a, k = call.rebuild(inputs, lambda v: torch.from_numpy(v.copy()).to(device))
            return torch_model(*a, **k)

        report = compare_function_with_torch(
            torch_model,
            torch_call,
            jax_call,
            jax_params,
            held,
            call.floating,
            kind=type(flax_model).__name__,
            seed=seed,
        )
        torch_held = {k: v for k, v in torch_buffers(torch_model).items() if k not in flax_bn}
        rows = buffer_differences(buffers, torch_held)
        if train_step and flax_bn:
            raise ValueError(
                f"compare_with_torch(train_step=True): "
                f"{', '.join(k.removesuffix('.num_batches_tracked') for k in flax_bn)} is "
                f"Flax's BatchNorm, whose training update is not torch's (momentum weights the "
                f"old value, biased variance, no counter): expected lstm_jax.BatchNorm1d / "
                f"BatchNorm2d, which train as torch's, for a training-mode comparison"
            )
        if train_step:
            a, k = call.rebuild({n: jnp.asarray(v) for n, v in call.floating.items()}, jnp.asarray)
            out, updated = flax_train_step(flax_model, {"params": params, **others}, a, k)
            after = flax_params_to_torch(
                params, buffer_entries, updated.get("batch_stats", batch_stats)
            )
            device = next(torch_model.parameters()).device
            ta, tk = call.rebuild(
                {n: torch.from_numpy(np.array(v)).to(device) for n, v in call.floating.items()},
                lambda v: torch.from_numpy(v.copy()).to(device),
            )
            torch_out, torch_after = torch_train_step(torch_model, lambda m: m(*ta, **tk))
            rows += output_differences(out, torch_out, dtype, "train forward")
            rows += buffer_differences(after, torch_after, "train buffers")
        return replace(report, differences=report.differences + tuple(rows))


def _apply_error(flax_model: Any, err: Exception) -> Exception:
    """The Flax model's error on the call, said as compare_with_torch's: a model that
    draws dropout (asks for an rng) is told to be deterministic, as torch's eval mode."""
    kind = TypeError if isinstance(err, TypeError) else ValueError
    hint = ""
    if "rng" in str(err).lower():
        hint = (
            " (compare_with_torch runs torch in eval mode and gives the Flax model no rngs: "
            "it must be deterministic when called with these arguments, e.g. "
            "deterministic=True by default)"
        )
    return kind(
        f"compare_with_torch: {type(flax_model).__name__}.apply on the call's arguments "
        f"raised {type(err).__name__}: {err}{hint}"
    )


# --- the built-in pairs --------------------------------------------------------------------


def _compare_builtin(
    torch_model: Any,
    jax_model: LSTM | LSTMModeler,
    variables: Mapping[str, Any],
    kind: str,
    x: Any,
    initial_state: tuple[Any, Any] | None,
    seed: int,
    seq_lengths: Any = None,
) -> ParityReport:
    """The built-in pairs; ``seq_lengths`` (the modelers' packed batch) goes to both."""
    dtype = _torch_dtype(torch_model)
    lengths = None if seq_lengths is None else to_numpy(seq_lengths)
    torch_params = dict(torch_model.named_parameters())
    params = params_of(variables, "compare_with_torch", wrapper_optional=True)
    jax_params = {key: np.asarray(value) for key, value in flatten(params).items()}
    check_param_shapes(
        {k: tuple(v.shape) for k, v in torch_params.items()},
        {k: v.shape for k, v in jax_params.items()},
        "JAX variables (expected: the torch model's parameters)",
    )
    inputs = {"input": _array(x, dtype, "x")}
    if initial_state is not None:
        h0, c0 = initial_state
        inputs |= {"h_0": _array(h0, dtype, "h_0"), "c_0": _array(c0, dtype, "c_0")}
    entries = model_key_map(jax_model, None, unflatten(jax_params))

    def jax_call(p: Mapping[str, jax.Array], i: Mapping[str, jax.Array]) -> Any:
        state = (i["h_0"], i["c_0"]) if "h_0" in i else None
        extra = {} if lengths is None else {"seq_lengths": jnp.asarray(lengths)}
        out, final = jax_model.apply(
            {"params": torch_params_to_flax(p, entries)}, i["input"], state, **extra
        )
        return out, final.h, final.c

    def torch_call(i: Mapping[str, Any]) -> Any:
        state = (i["h_0"], i["c_0"]) if "h_0" in i else None
        if kind == "LSTM" and lengths is not None:  # packed, as the JAX side's seq_lengths
            import torch
            from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

            first = torch_model.batch_first
            packed = pack_padded_sequence(
                i["input"], torch.from_numpy(lengths), batch_first=first, enforce_sorted=False
            )
            out, (h_n, c_n) = torch_model(packed, state)
            total = i["input"].shape[1 if first else 0]
            out, _ = pad_packed_sequence(out, batch_first=first, total_length=total)
            return out, h_n, c_n
        if kind == "LSTM":
            out, (h_n, c_n) = torch_model(i["input"], state)
            return out, h_n, c_n
        torch_model.hidden_cell = state if state is not None else torch_model.zero_hidden_cell()
        if lengths is not None:
            import torch

            return (torch_model(i["input"], torch.from_numpy(lengths)), *torch_model.hidden_cell)
        out = torch_model(i["input"])
        return (out, *torch_model.hidden_cell)

    saved_hidden_cell = getattr(torch_model, "hidden_cell", None)
    try:
        return compare_function_with_torch(
            torch_model,
            torch_call,
            jax_call,
            jax_params,
            torch_params,
            inputs,
            kind=kind,
            seed=seed,
            output_names=lambda _: [
                ("output", "forward"),
                ("h_n", "final state"),
                ("c_n", "final state"),
            ],
        )
    finally:
        if kind == "LSTMModeler":
            torch_model.hidden_cell = saved_hidden_cell


def _unpacked(packed: Any, batch_first: bool, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
    """A torch ``PackedSequence`` given to the nn.LSTM pair -> (the padded batch, its
    lengths): the torch side packs it again, the JAX side takes ``seq_lengths``."""
    from torch.nn.utils.rnn import pad_packed_sequence

    if lengths is not None:
        raise TypeError(
            "compare_with_torch: expected a PackedSequence or seq_lengths=, got both (the "
            "PackedSequence holds its lengths)"
        )
    padded, found = pad_packed_sequence(packed, batch_first=batch_first)
    return to_numpy(padded), to_numpy(found)


# --- pieces --------------------------------------------------------------------------------

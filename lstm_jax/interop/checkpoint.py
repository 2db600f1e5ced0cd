"""Save and load Flax variables as safetensors checkpoints with torch's key names.

The file format (shared with ``lstm_torch.checkpoint``) is described in
:mod:`lstm_jax.common.checkpoint_format`; a file written here loads into
``lstm_torch.load_checkpoint`` or, strictly, into a plain torch module with
``model.load_state_dict(safetensors.torch.load_file(path), strict=True)``.

Example::

    lstm_jax.save_checkpoint("model.safetensors", variables, model)
    model, variables = lstm_jax.load_checkpoint("model.safetensors")
    y, hidden_cell = model.apply(variables, x)

A model of one's own (its Flax submodules named as the torch model's attributes,
see :mod:`lstm_jax.interop.transfer`) is stored under torch's keys; loading it
needs the model and the ``example`` of its init::

    lstm_jax.save_checkpoint("lm.safetensors", variables, flax_lm)
    flax_lm, variables = lstm_jax.load_checkpoint("lm.safetensors", flax_lm, example=(tokens,))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from flax import nnx

from lstm_jax.common import checkpoint_format as fmt
from lstm_jax.common.checkpoint_format import MODEL, CheckpointError, CheckpointHeader, PathLike
from lstm_jax.core.dtypes import check_float64_allowed
from lstm_jax.interop.nnx_checkpoint import load_nnx, save_nnx
from lstm_jax.interop.transfer import params_from_torch, params_to_torch
from lstm_jax.linen.cell import LSTMCell
from lstm_jax.linen.modules import LSTM, LSTMModeler

__all__ = ["CheckpointError", "load_checkpoint", "model_header", "save_checkpoint"]

Model = Any  # lstm_jax.LSTM, LSTMModeler, or any Flax model mirroring a torch model


def model_header(
    model: Model, dtype: Any, input_size: int | None = None, tied: Mapping[str, str] | None = None
) -> CheckpointHeader:
    """The checkpoint header of a Flax ``LSTM`` (whose input size comes from its
    parameters: pass ``input_size``), ``LSTMModeler``, or any other Flax model (kind
    "model", with its ``tied`` torch keys)."""
    if isinstance(model, LSTMModeler):
        return CheckpointHeader("LSTMModeler", model.config, model.output_size, dtype)
    if isinstance(model, LSTM):
        return CheckpointHeader("LSTM", replace(model.config, input_size=input_size), None, dtype)
    if not hasattr(model, "init") or not hasattr(model, "apply"):
        raise TypeError(
            f"expected an lstm_jax.LSTM, lstm_jax.LSTMModeler or a Flax model, got "
            f"{type(model).__name__}"
        )
    return CheckpointHeader(MODEL, None, None, dtype, type(model).__name__, dict(tied or {}))


def save_checkpoint(
    path: PathLike,
    variables: Mapping[str, Any],
    model: Model = None,
    *,
    example: Sequence[Any] | None = None,
    tied: Mapping[str, str] | None = None,
) -> None:
    """Write ``variables`` of ``model`` to ``path`` (safetensors, atomically).

    Arguments:
        path: the file to write; its directory must exist. An existing file is
            replaced only once the new one is completely written.
        variables: ``{"params": ...}`` as from ``model.init`` or ``params_from_torch``.
        model: the ``lstm_jax.LSTM`` or ``LSTMModeler`` they belong to (its options
            are stored in the file's metadata; ``unroll`` and ``param_dtype`` are not:
            the file's dtype is the parameters'), or any Flax model mirroring a torch
            model: its tensors go under the torch keys (:func:`params_to_torch`).
        example: for a model of one's own, as in :func:`params_to_torch` (needed for a
            flax ``nn.Sequential`` or a layer with a rule of its own).
        tied: ``{torch key: key it shares}``, the torch model's ties where the Flax
            model holds the tensor once; recorded in the file.

    A Flax NNX module holds its parameters: ``save_checkpoint(path, nnx_module)``
    (see :mod:`lstm_jax.interop.nnx_checkpoint`).

    Raises:
        ValueError: keys or shapes that do not fit ``model`` (naming each).
        TypeError: parameters that are not all float32 or all float64.
        FileNotFoundError: the directory does not exist.
    """
    if isinstance(variables, nnx.Module) and model is None:
        save_nnx(path, variables, tied)
        return
    if model is None:
        raise TypeError("save_checkpoint: expected the Flax model the variables belong to")
    if isinstance(model, nnx.Module):
        raise TypeError(
            f"save_checkpoint: the NNX {type(model).__name__} holds its parameters: call "
            f"save_checkpoint(path, module), without variables"
        )
    builtin = isinstance(model, LSTM | LSTMModeler)
    if builtin and tied:
        raise ValueError(f"save_checkpoint: {type(model).__name__} has no tied weights")
    if builtin:
        arrays = params_to_torch(variables)
    else:
        arrays = params_to_torch(variables, model, example=example, tied=tied)
    dtype = fmt.common_dtype(arrays, "save_checkpoint")
    if not builtin:
        fmt.save(path, arrays, model_header(model, dtype, tied=tied))
        return
    input_size = None
    if isinstance(model, LSTM):  # a Flax LSTM knows its input size from its parameters only
        first = arrays.get("weight_ih_l0")
        if first is None or first.ndim != 2:
            raise ValueError(
                f"save_checkpoint: expected params weight_ih_l0 of shape (4*hidden_size, "
                f"input_size), got {'none' if first is None else first.shape}"
            )
        input_size = first.shape[1]
    fmt.save(path, arrays, model_header(model, dtype, input_size))


def load_checkpoint(
    path: PathLike, model: Model | None = None, *, example: Sequence[Any] | None = None
) -> tuple[Model, dict[str, Any] | nnx.State]:
    """Read a checkpoint (written by either backend) into Flax variables.

    Arguments:
        path: a file written by ``lstm_jax.save_checkpoint`` or ``lstm_torch.save_checkpoint``.
        model: optional ``lstm_jax.LSTM``/``LSTMModeler`` the file must fit (every
            option equal); without it one is built from the file's metadata, with
            ``param_dtype`` the file's dtype. (Flax's ``model.clone(unroll=...)``
            changes the speed knob afterwards.) A file of a model of one's own
            needs its Flax mirror here, and ``example``.
        example: the positional arguments of ``model.init``, as for
            :func:`params_from_torch` (not needed for the built-in models).

    Returns:
        ``(model, variables)``; the arrays are bitwise those saved. For a Flax NNX
        ``model`` the tensors are written into it (strictly, all or nothing) and the
        variables are ``nnx.state(model)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError (a ValueError): an empty, truncated, foreign or altered file, or
            one saved from another configuration than ``model``'s.
        ValueError: a float64 checkpoint while JAX runs in 32-bit mode (it would be rounded).
    """
    if isinstance(model, nnx.Module):
        return load_nnx(path, model)
    header, arrays = fmt.load(path)
    cell = fmt.lstm_cell_sizes(header, arrays)
    if cell is not None and model is None:  # an nn.LSTMCell's file: its keys give the cell
        model = LSTMCell(cell[1], bias=cell[2], param_dtype=header.dtype.type)
    family = fmt.family_file(header.model_class)
    if header.kind == MODEL and model is None and family is not None:
        raise CheckpointError(
            path,
            f"holds {family}: pass the model, load_checkpoint(path, "
            f"lstm_jax.{header.model_class}(...))",
        )
    if header.kind == MODEL and model is None:
        raise CheckpointError(
            path,
            f"holds a model of your own ({header.model_class or 'unnamed'}): pass its Flax "
            f"mirror and example, load_checkpoint(path, flax_model, example=(x,))",
        )
    if model is None:
        model = build_model(header)
    else:
        # param_dtype is only init's: the variables keep the file's dtype.
        builtin = isinstance(model, LSTM | LSTMModeler)
        if header.kind == MODEL and builtin:
            raise CheckpointError(
                path,
                f"saved with another configuration than the model's (file vs model): "
                f"kind: {MODEL} vs {type(model).__name__}",
            )
        input_size = None if header.config is None else header.config.input_size
        fmt.check_fits(header, model_header(model, header.dtype, input_size), path)
    check_float64_allowed(header.dtype, f"{path}: the checkpoint")
    if header.kind == MODEL:
        return model, params_from_torch(arrays, model, example=example, tied=header.tied)
    return model, params_from_torch(arrays, model)


def build_model(header: CheckpointHeader) -> Model:
    """A Flax model with the header's options, ``param_dtype`` the header's dtype."""
    options = header.options
    if header.kind == "LSTMModeler":
        return LSTMModeler(**options, param_dtype=header.dtype.type)
    del options["input_size"]  # the Flax LSTM takes it from its input
    return LSTM(**options, param_dtype=header.dtype.type)

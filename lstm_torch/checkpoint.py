"""Save and load torch models as safetensors checkpoints (the format ``lstm_jax`` uses).

The file's tensors are the model's ``state_dict``, its metadata the model's
options (see :mod:`lstm_jax.common.checkpoint_format`, numpy only, shared with the JAX
side), so a file saved here loads with ``lstm_jax.load_checkpoint`` and a file
saved there loads here.

Example::

    lstm_torch.save_checkpoint("model.safetensors", model)      # nn.LSTM or LSTMModeler
    model = lstm_torch.load_checkpoint("model.safetensors")     # built from the metadata

Any other model (one of your own around an LSTM) is stored as its ``state_dict``
with tied weights stored once and recorded; it loads back into a model you build::

    lstm_torch.save_checkpoint("lm.safetensors", lm)
    lstm_torch.load_checkpoint("lm.safetensors", RNNModel(...))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from lstm_jax.common import checkpoint_format as fmt
from lstm_jax.common.checkpoint_format import CheckpointHeader, PathLike
from lstm_jax.common.config import LSTMConfig, check_param_shapes
from lstm_jax.common.ties import find_ties
from lstm_torch.model import LSTMModeler

__all__ = ["CheckpointError", "load_checkpoint", "model_header", "save_checkpoint"]

Model = nn.Module  # nn.LSTM, LSTMModeler, or a model of one's own
# torch layers lstm_jax has no counterpart of: a model holding one cannot be mirrored.
# None today: nn.GRU, nn.RNN and their cells are mirrored (lstm_jax.GRU, ...) and stored
# as a model of one's own (its state_dict), as any other layer.
UNMIRRORED: tuple[type[nn.Module], ...] = ()


class CheckpointError(fmt.CheckpointError):
    """``lstm_jax.CheckpointError`` (a ``ValueError``) as the torch side raises it, so a
    torch user's traceback names ``lstm_torch.CheckpointError``; ``except
    lstm_jax.CheckpointError`` catches it too."""

    __module__ = "lstm_torch"


@contextlib.contextmanager
def _as_torch_error() -> Iterator[None]:
    """Re-raise the shared format's ``CheckpointError`` as ``lstm_torch``'s."""
    try:
        yield
    except CheckpointError:
        raise
    except fmt.CheckpointError as err:
        raise CheckpointError(err.path, err.problem) from None


def model_header(model: Model) -> CheckpointHeader:
    """The checkpoint header of a ``torch.nn.LSTM``, ``lstm_torch.LSTMModeler``, or any
    other module (kind "model", with its tied keys)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"expected a torch.nn.LSTM or lstm_torch.LSTMModeler (or a torch.nn.Module of "
            f"your own), got {type(model).__name__}"
        )
    first = next(model.parameters(), None)
    if first is None:
        raise TypeError(f"save_checkpoint: {type(model).__name__} has no parameters")
    dtype = _numpy_dtype(first.dtype)
    if isinstance(model, LSTMModeler):
        return CheckpointHeader("LSTMModeler", model.config, model.linear.out_features, dtype)
    if isinstance(model, nn.LSTM):
        config = LSTMConfig(
            hidden_size=model.hidden_size,
            input_size=model.input_size,
            num_layers=model.num_layers,
            bias=model.bias,
            batch_first=model.batch_first,
            dropout=float(model.dropout),
            bidirectional=model.bidirectional,
            proj_size=model.proj_size,
        )
        return CheckpointHeader("LSTM", config, None, dtype)
    foreign = [
        f"{name or 'the model'} ({type(m).__name__})"
        for name, m in model.named_modules()
        if isinstance(m, UNMIRRORED)
    ]
    if foreign:
        raise TypeError(
            f"expected a torch.nn.LSTM or lstm_torch.LSTMModeler, or a model of your own "
            f"built of layers lstm_jax mirrors; got {type(model).__name__}, holding "
            f"{', '.join(foreign)}, which lstm_jax has no counterpart of"
        )
    ties = find_ties(model.state_dict())
    return CheckpointHeader(fmt.MODEL, None, None, dtype, type(model).__name__, ties)


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    if dtype == torch.float32:
        return np.dtype(np.float32)
    if dtype == torch.float64:
        return np.dtype(np.float64)
    raise TypeError(f"checkpoints hold float32 or float64 parameters, got {dtype}")


def save_checkpoint(path: PathLike, model: Model) -> None:
    """Write ``model``'s ``state_dict`` and options to ``path`` (safetensors, atomically).

    Arguments:
        path: the file to write; its directory must exist. An existing file is
            replaced only once the new one is completely written.
        model: a ``torch.nn.LSTM`` or ``lstm_torch.LSTMModeler``, float32 or float64,
            on any device; or a model of your own, stored as its ``state_dict`` (tied
            weights once, the tie recorded).

    Raises:
        TypeError: parameters of another dtype.
        FileNotFoundError: the directory does not exist.
    """
    header = model_header(model)
    arrays = {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}
    fmt.common_dtype(arrays, "save_checkpoint")
    fmt.save(path, arrays, header)


def load_checkpoint(path: PathLike, model: Model | None = None) -> Model:
    """Read a checkpoint (written by either backend) into a torch model.

    Arguments:
        path: a file written by ``lstm_torch.save_checkpoint`` or ``lstm_jax.save_checkpoint``.
        model: optional ``nn.LSTM``/``LSTMModeler`` to load into; it must have the
            file's options and dtype (torch would otherwise round float64 to float32
            silently). Without it a model is built from the metadata, on the CPU.
            A file of a model of one's own needs the model to load into (strictly:
            every key, tied keys restored).

    Returns:
        the model, its parameters bitwise those saved.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError (a ValueError): an empty, truncated, foreign or altered file, or
            one saved from another configuration or dtype than ``model``'s; a pickle
            (``torch.save``, ``.pt``) is refused unread, with how to convert it.
    """
    with _as_torch_error():
        header, arrays = fmt.load(path)
        cell = fmt.lstm_cell_sizes(header, arrays)
        if cell is not None and model is None:  # an LSTMCell's file: its keys give the cell
            dtype = torch.float64 if header.dtype == np.float64 else torch.float32
            model = nn.LSTMCell(*cell, dtype=dtype)
        family = fmt.family_file(header.model_class)
        if header.kind == fmt.MODEL and model is None and family is not None:
            raise CheckpointError(
                path,
                f"holds {family}: build it and pass it, load_checkpoint(path, "
                f"torch.nn.{header.model_class}(...))",
            )
        if header.kind == fmt.MODEL and model is None:
            raise CheckpointError(
                path,
                f"holds a model of your own ({header.model_class or 'unnamed'}): build it and "
                f"pass it, load_checkpoint(path, model)",
            )
        if model is None:
            model = build_model(header)
        else:
            fmt.check_fits(header, model_header(model), path)
        arrays = _with_model_ties(arrays, model, path)
        try:  # before torch copies the tensors that fit: all or nothing
            check_param_shapes(
                {key: tuple(v.shape) for key, v in model.state_dict().items()},
                {key: tuple(a.shape) for key, a in arrays.items()},
                f"loading it into {type(model).__name__}",
            )
        except ValueError as err:
            raise CheckpointError(path, str(err)) from None
    model.load_state_dict({key: torch.from_numpy(a) for key, a in arrays.items()}, strict=True)
    return model


def _with_model_ties(
    arrays: dict[str, np.ndarray], model: Model, path: PathLike
) -> dict[str, np.ndarray]:
    """The file's tensors for a model that ties keys itself (``decoder.weight =
    encoder.weight``): a tied key the file lacks takes its partner's tensor (the
    model shares it anyway); both in the file with different values is a
    ``CheckpointError`` (torch would copy both into one tensor, keeping the last)."""
    ties = find_ties(model.state_dict())
    conflicts = [
        f"{alias} and {key}"
        for alias, key in ties.items()
        if alias in arrays and key in arrays and not np.array_equal(arrays[alias], arrays[key])
    ]
    if conflicts:
        raise CheckpointError(
            path,
            f"{type(model).__name__} ties {'; '.join(conflicts)} (one tensor), but the file "
            f"holds different values for them: load it into a model without the tie",
        )
    filled = dict(arrays)
    for alias, key in ties.items():
        if alias not in filled and key in filled:
            filled[alias] = filled[key]
        elif key not in filled and alias in filled:
            filled[key] = filled[alias]
    return filled


def build_model(header: CheckpointHeader) -> Model:
    """A torch model with the header's options and dtype, on the CPU."""
    dtype = torch.float64 if header.dtype == np.float64 else torch.float32
    if header.kind == "LSTM":
        return nn.LSTM(**header.options, dtype=dtype)
    model = LSTMModeler(**header.options).to(dtype)
    model.hidden_cell = model.zero_hidden_cell()  # in the new dtype
    return model

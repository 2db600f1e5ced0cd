"""Save and load torch models as safetensors checkpoints (the format ``lstm_jax`` uses).

The file's tensors are the model's ``state_dict``, its metadata the model's
options (see :mod:`lstm_jax.common.checkpoint_format`, numpy only, shared with the JAX
side), so a file saved here loads with ``lstm_jax.load_checkpoint`` and a file
saved there loads here.

Example::

    lstm_torch.save_checkpoint("model.safetensors", model)      # nn.LSTM or LSTMModeler
    model = lstm_torch.load_checkpoint("model.safetensors")     # built from the metadata
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from lstm_jax.common import checkpoint_format as fmt
from lstm_jax.common.checkpoint_format import CheckpointSpec, PathLike
from lstm_jax.common.config import LSTMConfig
from lstm_torch.model import LSTMModeler

__all__ = ["CheckpointError", "load_checkpoint", "model_spec", "save_checkpoint"]

Model = nn.LSTM | LSTMModeler


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


def model_spec(model: Model) -> CheckpointSpec:
    """The checkpoint spec of a ``torch.nn.LSTM`` or ``lstm_torch.LSTMModeler``."""
    dtype = _numpy_dtype(next(model.parameters()).dtype)
    if isinstance(model, LSTMModeler):
        return CheckpointSpec("LSTMModeler", model.config, model.linear.out_features, dtype)
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
        return CheckpointSpec("LSTM", config, None, dtype)
    raise TypeError(
        f"expected a torch.nn.LSTM or lstm_torch.LSTMModeler, got {type(model).__name__}"
    )


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
            on any device.

    Raises:
        TypeError: another module, or parameters of another dtype.
        FileNotFoundError: the directory does not exist.
    """
    spec = model_spec(model)
    arrays = {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}
    fmt.common_dtype(arrays, "save_checkpoint")
    fmt.save(path, arrays, spec)


def load_checkpoint(path: PathLike, model: Model | None = None) -> Model:
    """Read a checkpoint (written by either backend) into a torch model.

    Arguments:
        path: a file written by ``lstm_torch.save_checkpoint`` or ``lstm_jax.save_checkpoint``.
        model: optional ``nn.LSTM``/``LSTMModeler`` to load into; it must have the
            file's options and dtype (torch would otherwise round float64 to float32
            silently). Without it a model is built from the metadata, on the CPU.

    Returns:
        the model, its parameters bitwise those saved.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError (a ValueError): an empty, truncated, foreign or altered file, or
            one saved from another configuration or dtype than ``model``'s; a pickle
            (``torch.save``, ``.pt``) is refused unread, with how to convert it.
    """
    with _as_torch_error():
        spec, arrays = fmt.load(path)
        if model is None:
            model = build_model(spec)
        else:
            fmt.check_fits(spec, model_spec(model), path)
    model.load_state_dict({key: torch.from_numpy(a) for key, a in arrays.items()}, strict=True)
    return model


def build_model(spec: CheckpointSpec) -> Model:
    """A torch model with the spec's options and dtype, on the CPU."""
    dtype = torch.float64 if spec.dtype == np.float64 else torch.float32
    if spec.kind == "LSTM":
        return nn.LSTM(**spec.options, dtype=dtype)
    model = LSTMModeler(**spec.options).to(dtype)
    model.hidden_cell = model.zero_hidden_cell()  # in the new dtype
    return model

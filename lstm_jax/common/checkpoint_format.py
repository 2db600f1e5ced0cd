"""The checkpoint file format both backends share (numpy and safetensors only).

A checkpoint is a safetensors file whose tensors are the model's torch
``state_dict`` (``weight_ih_l0``, ... for an ``nn.LSTM``; ``lstm.weight_ih_l0``,
..., ``linear.weight``, ``linear.bias`` for an ``LSTMModeler``), so
``model.load_state_dict(safetensors.torch.load_file(path), strict=True)`` works
on a plain torch module. Its string metadata says what model the tensors belong
to, so a file loads without the user repeating the configuration::

    format            "lstm-jax.checkpoint"
    format_version    "1"
    kind              "LSTM" (torch.nn.LSTM / lstm_jax.LSTM)
                      or "LSTMModeler" (lstm_torch / lstm_jax.LSTMModeler)
    config            JSON of the constructor's options under torch's names:
                      LSTM: input_size, hidden_size, num_layers, bias,
                      batch_first, dropout, bidirectional, proj_size;
                      LSTMModeler: input_size, hidden_layer_size, output_size
                      and the same LSTM options
    dtype             "float32" or "float64" (every floating tensor; a BatchNorm's
                      ``num_batches_tracked`` buffer stays an integer, int64 as torch's)
    lstm_jax_version  the package version that wrote the file
    sha256            digest of the tensors (names, dtypes, shapes, bytes)

A model of one's own (kind ``"model"``) has no configuration (``config`` is
``{}``): its tensors are its ``state_dict`` under torch's keys, and two more keys
say what the file cannot show::

    model_class       the class name of the model that was saved (informational)
    tied              JSON {alias: key}: torch keys holding the same tensor as an
                      earlier key (``decoder.weight = encoder.weight``); safetensors
                      refuses shared tensors, so each is stored once, under ``key``,
                      and :func:`load` restores the alias. ``safetensors.torch.load_model``
                      reads such a file into the torch model too.

``lstm_jax.interop.checkpoint`` and ``lstm_torch.checkpoint`` convert their models to
and from numpy arrays and call :func:`save` / :func:`load` here; neither side
has a reader or writer of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from lstm_jax.common.config import (
    LSTM_OPTIONS,
    LSTMConfig,
    check_param_shapes,
    modeler_param_shapes,
)
from lstm_jax.common.numbers import check_positive_int
from lstm_jax.common.version import __version__

FORMAT = "lstm-jax.checkpoint"
FORMAT_VERSION = 1
MODEL = "model"  # any model: its state dict under torch's keys, no configuration
KINDS = ("LSTM", "LSTMModeler", MODEL)
# torch's recurrent classes other than the LSTM (and lstm_jax's of the same names): saved
# as kind "model", their state dict alone, which gives their sizes but not their options
FAMILY = ("GRU", "RNN", "GRUCell", "RNNCell")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
METADATA_KEYS = (
    "format",
    "format_version",
    "kind",
    "config",
    "dtype",
    "lstm_jax_version",
    "sha256",
)

PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A file that is not a valid lstm-jax checkpoint, or that does not fit the model.

    Public as ``lstm_jax.CheckpointError`` (tracebacks name it so); the torch side
    raises its subclass ``lstm_torch.CheckpointError``.
    """

    __module__ = "lstm_jax"  # the public name, not this module's path, in tracebacks

    def __init__(self, path: PathLike, problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint holds: which model, its configuration, its dtype.

    Attributes:
        kind: "LSTM", "LSTMModeler" or "model" (a model of one's own).
        config: the LSTM's options, ``input_size`` included; None for "model".
        output_size: O, the head's outputs ("LSTMModeler"); None otherwise.
        dtype: every tensor's dtype, float32 or float64.
        model_class: the saved model's class name ("model" only; informational).
        tied: ``{alias: key}``, torch keys stored once under ``key`` ("model" only).
    """

    kind: str
    config: LSTMConfig | None
    output_size: int | None
    dtype: np.dtype
    model_class: str | None = None
    tied: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == MODEL:
            if self.config is not None or self.output_size is not None:
                raise ValueError("a checkpoint of kind 'model' has no config or output_size")
            _check_ties(self.tied)
        elif self.config is None or self.tied:
            raise ValueError(f"a checkpoint of kind {self.kind!r} needs a config and no ties")
        elif self.config.input_size is None:
            raise ValueError("a checkpoint's config needs its input_size")
        if self.kind == "LSTMModeler":
            check_positive_int("output_size", self.output_size)
        elif self.output_size is not None:
            raise ValueError(f"an LSTM has no output_size, got {self.output_size!r}")
        if np.dtype(self.dtype) not in DTYPES:
            raise ValueError(
                f"checkpoints hold float32 or float64 parameters, got {np.dtype(self.dtype)}"
            )
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def options(self) -> dict[str, Any]:
        """The constructor's keyword arguments, torch's names (``torch.nn.LSTM(**options)``
        or ``lstm_torch.LSTMModeler(**options)``); none for "model"."""
        c = self.config
        if c is None:
            return {}
        lstm = c.lstm_options()
        if self.kind == "LSTM":
            return {"input_size": c.input_size, "hidden_size": c.hidden_size, **lstm}
        return {
            "input_size": c.input_size,
            "hidden_layer_size": c.hidden_size,
            "output_size": self.output_size,
            **lstm,
        }

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The ``state_dict`` keys and shapes the model has, in torch's order."""
        if self.config is None:
            raise ValueError("a checkpoint of kind 'model' has no parameter list of its own")
        if self.kind == "LSTM":
            return self.config.param_shapes()
        return modeler_param_shapes(self.config, self.output_size or 1)

    def describe(self) -> str:
        if self.kind == MODEL:
            return f"model {self.model_class or '(unnamed)'}, {self.dtype}"
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.kind}({options}), {self.dtype}"

    @property
    def _kind_named(self) -> str:
        """The kind, with the class of a "model" file: "model (GRU)"."""
        if self.kind == MODEL and self.model_class:
            return f"{MODEL} ({self.model_class})"
        return self.kind

    def differences(self, other: CheckpointHeader) -> list[str]:
        """``"name: self's value vs other's"`` for every option (and the dtype) that differ."""
        if self.kind != other.kind:
            return [f"kind: {self._kind_named} vs {other._kind_named}"]
        mine, theirs = self.options, other.options
        found = [
            f"{name}: {mine[name]!r} vs {theirs[name]!r}"
            for name in mine
            if mine[name] != theirs[name]
        ]
        if self.dtype != other.dtype:
            found.append(f"dtype: {self.dtype} vs {other.dtype}")
        return found


def check_fits(
    file_header: CheckpointHeader, model_header: CheckpointHeader, path: PathLike
) -> None:
    """``CheckpointError`` listing every option (and the dtype) in which the file's model
    differs from the model it is being loaded into."""
    differences = file_header.differences(model_header)
    if differences:
        raise CheckpointError(
            path,
            f"saved with another configuration than the model's (file vs model): "
            f"{'; '.join(differences)}",
        )


def lstm_cell_sizes(
    header: CheckpointHeader, arrays: Mapping[str, np.ndarray]
) -> tuple[int, int, bool] | None:
    """``(input_size, hidden_size, bias)`` when a "model" file holds one LSTM cell (an
    ``nn.LSTMCell``'s or ``lstm_jax.LSTMCell``'s keys, none other), else None: such a
    file needs no model to load into (its keys give the cell)."""
    keys = set(arrays)
    if header.kind != MODEL or header.model_class != "LSTMCell":
        return None
    if not {"weight_ih", "weight_hh"} <= keys <= {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}:
        return None
    (rows, input_size), (_, hidden_size) = arrays["weight_ih"].shape, arrays["weight_hh"].shape
    if rows != 4 * hidden_size:
        return None
    return input_size, hidden_size, "bias_ih" in keys


def family_file(model_class: str | None) -> str | None:
    """What a file of the recurrent family (:data:`FAMILY`) holds, for the message that
    asks for the model to load it into; None for any other class."""
    unrecorded = {
        "GRU": "batch_first and dropout",
        "RNN": "nonlinearity, batch_first and dropout",
        "RNNCell": "nonlinearity",
    }
    if model_class not in FAMILY:
        return None
    if model_class not in unrecorded:
        return f"a {model_class}'s state dict"
    return f"a {model_class}'s state dict, which does not record its {unrecorded[model_class]}"


def _check_ties(tied: Mapping[str, str]) -> None:
    if not isinstance(tied, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k != v for k, v in tied.items()
    ):
        raise ValueError(f"tied must map torch keys to other torch keys, got {tied!r}")
    chained = sorted(set(tied) & set(tied.values()))
    if chained:
        raise ValueError(f"tied: {chained} are both aliases and stored keys")


def header_from_options(kind: str, options: Mapping[str, Any], dtype: Any) -> CheckpointHeader:
    """Build a header from a constructor's keyword arguments (the inverse of ``.options``).

    Raises ``ValueError``/``TypeError`` for unknown, missing or invalid options.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == MODEL:
        if options:
            raise ValueError(f"a checkpoint of kind 'model' has no config, got {dict(options)}")
        return CheckpointHeader(MODEL, None, None, np.dtype(dtype))
    hidden = "hidden_size" if kind == "LSTM" else "hidden_layer_size"
    expected = {"input_size", hidden, *LSTM_OPTIONS} | (
        {"output_size"} if kind == "LSTMModeler" else set()
    )
    missing, unknown = sorted(expected - set(options)), sorted(set(options) - expected)
    if missing or unknown:
        raise ValueError(
            f"{kind} options: missing {missing or 'none'}, unexpected {unknown or 'none'}"
        )
    config = LSTMConfig(
        hidden_size=options[hidden],
        input_size=options["input_size"],
        **{name: options[name] for name in LSTM_OPTIONS},
    )
    return CheckpointHeader(kind, config, options.get("output_size"), np.dtype(dtype))


# torch's integer buffer (BatchNorm's batch counter, int64): kept an integer in files
COUNTER = "num_batches_tracked"


def is_integer_buffer(key: str, array: np.ndarray) -> bool:
    """Whether ``key`` is a BatchNorm counter held as an integer (exempt from the dtype)."""
    return key.rsplit(".", 1)[-1] == COUNTER and np.issubdtype(np.dtype(array.dtype), np.integer)


def common_dtype(arrays: Mapping[str, np.ndarray], who: str) -> np.dtype:
    """The one float32/float64 dtype every floating array has (integer buffers, BatchNorm's
    ``num_batches_tracked``, aside), or a ``TypeError`` saying which differ."""
    floating = {k: a for k, a in arrays.items() if not is_integer_buffer(k, a)}
    dtypes = {np.dtype(a.dtype) for a in floating.values()}
    if len(dtypes) != 1:
        listing = ", ".join(f"{k}: {a.dtype}" for k, a in floating.items())
        raise TypeError(
            f"{who}: expected one dtype for every parameter and floating buffer, got {listing}"
        )
    (dtype,) = dtypes
    if dtype not in DTYPES:
        raise TypeError(f"{who}: checkpoints hold float32 or float64 parameters, got {dtype}")
    return dtype


def tensor_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every tensor's name, dtype, shape and little-endian bytes, by name."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.asarray(arrays[key])
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        digest.update(json.dumps([key, array.dtype.name, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def metadata(header: CheckpointHeader, arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """The safetensors metadata (str -> str) that describes ``arrays`` as ``header``."""
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": header.kind,
        "config": json.dumps(header.options),
        "dtype": header.dtype.name,
        "lstm_jax_version": __version__,
        "sha256": tensor_digest(arrays),
    }
    if header.kind == MODEL:
        meta |= {"model_class": header.model_class or "", "tied": json.dumps(dict(header.tied))}
    return meta


def header_from_metadata(meta: Mapping[str, str] | None, path: PathLike) -> CheckpointHeader:
    """Read and validate the metadata; ``CheckpointError`` says what is wrong."""
    if not meta or meta.get("format") != FORMAT:
        found = "no metadata" if not meta else f"metadata keys {sorted(meta)}"
        raise CheckpointError(
            path,
            f"not an lstm-jax checkpoint (a safetensors file with {found}, expected "
            f"format={FORMAT!r}). A bare nn.LSTM state dict loads with "
            f"safetensors.torch.load_file + model.load_state_dict, or "
            f"lstm_jax.params_from_torch(safetensors.numpy.load_file(path))",
        )
    missing = [key for key in METADATA_KEYS if key not in meta]
    if missing:
        raise CheckpointError(path, f"checkpoint metadata lacks {', '.join(missing)}")
    if meta["format_version"] != str(FORMAT_VERSION):
        raise CheckpointError(
            path,
            f"checkpoint format version {meta['format_version']!r} (written by lstm-jax "
            f"{meta['lstm_jax_version']}); this lstm-jax {__version__} reads "
            f"version {FORMAT_VERSION}",
        )
    try:
        options = json.loads(meta["config"])
        if not isinstance(options, dict):
            raise ValueError(f"expected a JSON object, got {meta['config']!r}")
        if meta["dtype"] not in {d.name for d in DTYPES}:
            raise ValueError(f"dtype must be float32 or float64, got {meta['dtype']!r}")
        header = header_from_options(meta["kind"], options, np.dtype(meta["dtype"]))
        if header.kind == MODEL:
            tied = json.loads(meta.get("tied", "{}"))
            header = replace(header, model_class=meta.get("model_class") or None, tied=tied)
        return header
    except (ValueError, TypeError) as err:
        raise CheckpointError(path, f"invalid checkpoint configuration: {err}") from None


def array_problems(header: CheckpointHeader, arrays: Mapping[str, np.ndarray]) -> str | None:
    """What is wrong with ``arrays`` as the ``state_dict`` of ``header``'s model (every key
    and shape, each of the header's dtype; a "model"'s tied keys stored once), or None."""
    if header.kind == MODEL:
        lost = [f"{a} (tied to {k})" for a, k in header.tied.items() if k not in arrays]
        if lost:
            return f"tied keys whose stored tensor is missing: {', '.join(lost)}"
    else:
        try:
            check_param_shapes(
                header.param_shapes(),
                {k: np.shape(a) for k, a in arrays.items()},
                f"tensors for {header.describe()}",
            )
        except ValueError as err:
            return str(err)
    wrong = [
        f"{k}: {a.dtype}"
        for k, a in arrays.items()
        if np.dtype(a.dtype) != header.dtype and not is_integer_buffer(k, a)
    ]
    if wrong:
        return f"dtype {header.dtype} expected, but tensors are {', '.join(wrong)}"
    return None


def save(path: PathLike, arrays: Mapping[str, np.ndarray], header: CheckpointHeader) -> None:
    """Write ``arrays`` (a ``state_dict`` as numpy) as a checkpoint of ``header``, atomically.

    The file is written next to ``path`` under a temporary name, flushed to disk,
    then renamed over ``path``: a failure at any point leaves an existing file as
    it was. The directory must exist (``FileNotFoundError`` otherwise).
    """
    path = Path(path)
    for alias, key in header.tied.items():  # stored once: safetensors refuses shared tensors
        if alias in arrays and not _same_bits(arrays[alias], arrays[key]):
            raise ValueError(
                f"cannot save checkpoint {os.fspath(path)}: {alias} is tied to "
                f"{key} but holds other values"
            )
    arrays = {
        # np.require, not ascontiguousarray: that makes a 0-d buffer (num_batches_tracked) 1-d
        key: np.require(array, requirements="C")
        for key, array in arrays.items()
        if key not in header.tied
    }
    problem = array_problems(header, arrays)
    if problem is not None:
        raise ValueError(f"cannot save checkpoint {os.fspath(path)}: {problem}")
    data = safetensors.numpy.save(arrays, metadata=metadata(header, arrays))
    write_atomic(path, data)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` through a temporary file in the same directory."""
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot save checkpoint {os.fspath(path)}: directory {os.fspath(directory)} "
            f"does not exist (create it first)"
        )
    if path.is_dir():
        raise IsADirectoryError(f"cannot save checkpoint {os.fspath(path)}: it is a directory")
    temporary = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # os.open applies the umask to 0o666, so the checkpoint gets ordinary permissions.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


PICKLE_PROTOCOLS = range(2, 6)  # pickle's b"\x80" PROTO opcode is followed by one of these


def pickle_kind(path: PathLike) -> str | None:
    """What pickle-based file ``path`` is (``torch.save``'s zip archive, or a bare
    pickle such as torch's legacy format), or None; reads the file, never unpickles it.

    Only asked of files safetensors refused: a safetensors header length may begin
    with the same bytes as a pickle.
    """
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("data.pkl") for name in archive.namelist()):
                return "a torch.save file (a zip archive holding a pickle)"
        return None
    with open(path, "rb") as file:
        head = file.read(2)
    if len(head) == 2 and head[0] == 0x80 and head[1] in PICKLE_PROTOCOLS:
        return "a pickle file (torch.save's legacy format, or pickle.dump)"
    return None


def refused_pickle(kind: str) -> str:
    """The problem stated for a pickle handed in as a checkpoint, with the conversion."""
    return (
        f"{kind}, not a safetensors checkpoint. It was not loaded: unpickling can run "
        f"arbitrary code. If you trust the file, convert it once with torch: build the "
        f"model (lstm_torch.LSTMModeler(...) or torch.nn.LSTM(...)), "
        f"model.load_state_dict(torch.load(path, weights_only=True)) (a whole pickled "
        f"model: model = torch.load(path, weights_only=False)), then "
        f'lstm_torch.save_checkpoint("model.safetensors", model)'
    )


def load(path: PathLike) -> tuple[CheckpointHeader, dict[str, np.ndarray]]:
    """Read and validate a checkpoint: its header and ``{torch key: array}`` in torch's order
    (a "model"'s in the file's order, each tied alias the same array as its key).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: an empty, truncated, foreign or altered file, naming the problem;
            a pickle (``torch.save``) is recognised and refused unread.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {os.fspath(path)}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{os.fspath(path)} is a directory, not a checkpoint file")
    try:
        with safetensors.safe_open(os.fspath(path), framework="np") as file:
            meta = file.metadata()
            header = header_from_metadata(meta, path)
            arrays = {key: np.array(file.get_tensor(key)) for key in file.keys()}
    except safetensors.SafetensorError as err:
        pickled = pickle_kind(path)
        if pickled is not None:
            raise CheckpointError(path, refused_pickle(pickled)) from None
        raise CheckpointError(path, f"not a readable safetensors file ({err})") from None
    problem = array_problems(header, arrays)
    if problem is not None:
        raise CheckpointError(path, problem.replace("expected, but", "in the metadata, but"))
    if tensor_digest(arrays) != meta["sha256"]:
        raise CheckpointError(
            path, "tensor data does not match the checksum it was saved with (corrupted or altered)"
        )
    if header.kind == MODEL:  # the tied keys get their tensor back (one array, two keys)
        return header, {**arrays, **{alias: arrays[key] for alias, key in header.tied.items()}}
    return header, {key: arrays[key] for key in header.param_shapes()}

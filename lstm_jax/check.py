"""Check a checkpoint's model in both backends: ``python -m lstm_jax.check CHECKPOINT``.

Loads a safetensors checkpoint (from ``lstm_jax.save_checkpoint`` or
``lstm_torch.save_checkpoint``) into torch and into JAX, runs both on a random
input (and random initial state) of the checkpoint's shapes, and prints
:func:`lstm_jax.compare_with_torch`'s report. An ``LSTMCell``'s file is checked for
one step, ``(B, I)`` and ``(h, c)`` of ``(B, H)`` each, against ``torch.nn.LSTMCell``.
Needs torch (the ``torch`` extra).

    python -m lstm_jax.check model.safetensors --seq-len 16 --batch 4 --seed 0

A file of a model of one's own is checked with both models given by import path,
each ``MODULE:ATTRIBUTE`` (see :func:`load_model` for the convention), and the
input's shape (random) or a function giving the call's arguments:

    python -m lstm_jax.check mine.safetensors --torch pkg.models:Tagger \
        --flax pkg.models:FlaxTagger --input-shape 16,4,8

Exit status: 0 when every difference is within tolerance, 1 when one is not,
2 when the check could not run (a missing or bad file, non-finite parameters, bad
arguments, no torch).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lstm_jax.common import checkpoint_format as fmt


def _int_at_least(least: int, what: str) -> Callable[[str], int]:
    """An argparse type: the text as an int >= ``least``, else "expected {what}, got ..."."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lstm_jax.check",
        description="Compare a checkpoint's model in PyTorch and in JAX on random input: "
        "outputs, final states and gradients, against lstm_jax.common.tolerances.",
        epilog="The random input is (T, B, I) standard normal ((B, T, I) with the "
        "checkpoint's batch_first), I the checkpoint's input_size, with a random initial "
        "state (h_0, c_0) of (D*L, B, H_out) and (D*L, B, H); an LSTMCell's file: one step, "
        "x of (B, I) and (h, c) of (B, H) each. "
        "Exit status: 0 within tolerance, 1 beyond, 2 could not check.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="a .safetensors file saved by lstm_jax or lstm_torch")
    p.add_argument(
        "--seq-len",
        type=_positive_int,
        default=8,
        metavar="T",
        help="time steps T of the random input",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=2,
        metavar="B",
        help="batch size B of the random input",
    )
    p.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        default="tanh",
        help="an nn.RNN's or nn.RNNCell's nonlinearity (its file does not record it)",
    )
    p.add_argument(
        "--seed",
        type=_int_at_least(0, "a non-negative integer"),
        default=0,
        metavar="S",
        help="seed of the random input",
    )
    own = p.add_argument_group(
        "a model of your own",
        "Both models by import path MODULE:ATTRIBUTE (MODULE importable from here, e.g. the "
        "current directory). ATTRIBUTE is a model instance, or a class or function called "
        "without arguments that returns one: a torch.nn.Module for --torch, a Flax linen or "
        "NNX module for --flax. The file is loaded into both, then they run on the same "
        "input: --input-shape draws it at random (standard normal of the file's dtype, or "
        "integers in [0, V) with --tokens V), --example calls MODULE:ATTRIBUTE for the "
        "positional arguments of both models' call (an array or a tuple of them).",
    )
    own.add_argument("--torch", type=_import_path, metavar="MODULE:ATTR", help="the torch model")
    own.add_argument("--flax", type=_import_path, metavar="MODULE:ATTR", help="its Flax port")
    own.add_argument(
        "--input-shape",
        type=_shape,
        metavar="D0,D1,...",
        help="shape of one random input, in the models' layout (e.g. T,B,I)",
    )
    own.add_argument(
        "--tokens",
        type=_positive_int,
        metavar="V",
        help="random integers in [0, V) (tokens) instead of floats",
    )
    own.add_argument(
        "--example",
        type=_import_path,
        metavar="MODULE:ATTR",
        help="a function (or value) giving the call's positional arguments",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        header, arrays = fmt.load(args.checkpoint)  # numpy only: a bad file fails before jax/torch
    except (OSError, fmt.CheckpointError) as err:
        print(f"lstm_jax.check: error: {err}", file=sys.stderr)
        return 2
    nonfinite = {k: int(np.size(a) - np.isfinite(a).sum()) for k, a in arrays.items()}
    nonfinite = {k: n for k, n in nonfinite.items() if n}
    if nonfinite:  # both sides would give NaN: a FAIL would blame the port, not the file
        counts = ", ".join(f"{k} ({n})" for k, n in nonfinite.items())
        print(
            f"lstm_jax.check: error: {args.checkpoint} holds non-finite parameters (NaN or "
            f"inf) in {counts}: both backends would output NaN, nothing to compare (was it "
            f"saved after its training diverged?)",
            file=sys.stderr,
        )
        return 2
    own_options = (args.torch, args.flax, args.input_shape, args.tokens, args.example)
    if any(option is not None for option in own_options):
        return check_own_models(args, header)
    cell = fmt.lstm_cell_sizes(header, arrays)  # an LSTMCell's keys give the cell
    if header.kind == fmt.MODEL and header.model_class in fmt.FAMILY:  # nn.GRU, nn.RNN, cells
        return _check_family(args, header, arrays)
    if header.kind == fmt.MODEL and cell is None:  # no configuration to build both models from
        print(
            f"lstm_jax.check: error: {args.checkpoint} holds a model of your own "
            f"({header.model_class or 'unnamed'}): give both models, --torch MODULE:ATTR "
            f"--flax MODULE:ATTR --input-shape ... (see --help), or check them from Python, "
            f"lstm_jax.compare_with_torch(torch_model, flax_model, variables, *args)",
            file=sys.stderr,
        )
        return 2
    try:
        import torch  # noqa: F401 - only to say plainly that it is missing
    except ImportError:
        print('lstm_jax.check: error: needs torch: pip install "lstm-jax[torch]"', file=sys.stderr)
        return 2

    import jax

    x64 = jax.enable_x64(True) if header.dtype == np.float64 else contextlib.nullcontext()
    try:
        with x64:
            report, x, state = _compare(args, header, cell)
    except MemoryError as err:
        print(
            f"lstm_jax.check: error: the random input of --seq-len {args.seq_len} and --batch "
            f"{args.batch} does not fit in memory ({err}): choose smaller ones",
            file=sys.stderr,
        )
        return 2
    print(f"checkpoint: {args.checkpoint}")
    if cell is None:
        print(f"model: {header.describe()}")
    else:
        input_size, hidden_size, bias = cell
        print(
            f"model: LSTMCell(input_size={input_size}, hidden_size={hidden_size}, bias={bias}), "
            f"{header.dtype} (one step: --seq-len does not apply)"
        )
    print(
        f"input: {x.shape} and random (h_0, c_0) of {state[0].shape}, {state[1].shape}, "
        f"seed {args.seed}"
    )
    print(report)
    return 0 if report.ok else 1


def _compare(
    args: argparse.Namespace, header: fmt.CheckpointHeader, cell: tuple[int, int, bool] | None
) -> tuple[Any, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Both backends' models of the checkpoint on a random input: (report, x, (h_0, c_0))."""
    import lstm_jax
    import lstm_torch

    with warnings.catch_warnings(record=True) as caught:  # both builds warn the same
        warnings.simplefilter("always")
        torch_model = lstm_torch.load_checkpoint(args.checkpoint)
        jax_model, variables = lstm_jax.load_checkpoint(args.checkpoint)
    for message in dict.fromkeys(str(w.message) for w in caught):  # once each, no source line
        print(f"lstm_jax.check: warning: {message}", file=sys.stderr)
    if cell is None:
        x, state = random_input(header, args.seq_len, args.batch, args.seed)
        report = lstm_jax.compare_with_torch(
            torch_model, jax_model, variables, x, initial_state=state, seed=args.seed
        )
    else:  # one step: the cell takes (x, (h, c)) as torch's nn.LSTMCell
        x, state = random_cell_input(cell, header.dtype, args.batch, args.seed)
        report = lstm_jax.compare_with_torch(
            torch_model, jax_model, variables, x, state, seed=args.seed
        )
    return report, x, state


def random_input(
    header: fmt.CheckpointHeader, seq_len: int, batch: int, seed: int
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Standard normal x of (T, B, I) ((B, T, I) with batch_first) and (h_0, c_0)."""
    config = header.config
    if config is None or config.input_size is None:
        raise ValueError(f"{header.describe()}: no LSTM configuration to draw an input for")
    rng = np.random.default_rng(seed)
    shape = (batch, seq_len) if config.batch_first else (seq_len, batch)
    x = rng.standard_normal((*shape, config.input_size)).astype(header.dtype)
    h_shape, c_shape = config.state_shapes(batch)
    state = (
        rng.standard_normal(h_shape).astype(header.dtype),
        rng.standard_normal(c_shape).astype(header.dtype),
    )
    return x, state


def random_cell_input(
    cell: tuple[int, int, bool], dtype: np.dtype, batch: int, seed: int
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Standard normal x of (B, I) and (h, c) of (B, H) each, for an LSTMCell of
    ``cell = (input_size, hidden_size, bias)``."""
    input_size, hidden_size, _ = cell
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, input_size)).astype(dtype)
    h, c = (rng.standard_normal((batch, hidden_size)).astype(dtype) for _ in range(2))
    return x, (h, c)


# --- a model of your own: --torch / --flax ---------------------------------------------------


class CheckError(Exception):
    """The check could not run (exit status 2); the message says why."""


def _import_path(text: str) -> str:
    """An argparse type: ``MODULE:ATTRIBUTE`` (both non-empty), else a clear error."""
    module, colon, attribute = text.partition(":")
    if not colon or not module or not attribute or ":" in attribute:
        raise argparse.ArgumentTypeError(
            f"expected MODULE:ATTRIBUTE (e.g. mypkg.models:Tagger), got {text!r}"
        )
    return text


def _shape(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive integers, e.g. ``16,4,8``."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers (e.g. 16,4,8), got {text!r}"
        )
    return shape


def _attribute(path: str, flag: str) -> Any:
    """The object at ``MODULE:ATTRIBUTE`` (the attribute may be dotted)."""
    import importlib

    module_name, _, attribute = path.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
    except Exception as err:  # ModuleNotFoundError, or any error the module raises
        raise CheckError(
            f"{flag} {path}: cannot import module {module_name!r} ({type(err).__name__}: "
            f"{err}); it must be importable from here (the current directory, or PYTHONPATH)"
        ) from err
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise CheckError(f"{flag} {path}: {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    return value


def _is_model(value: Any, flag: str) -> bool:
    if flag == "--torch":
        import torch

        return isinstance(value, torch.nn.Module)
    import flax.linen
    from flax import nnx

    return isinstance(value, flax.linen.Module | nnx.Module)


def load_model(path: str, flag: str) -> Any:
    """The model at ``MODULE:ATTRIBUTE``: the attribute itself when it is a model (a
    ``torch.nn.Module`` for ``--torch``, a Flax linen or NNX module for ``--flax``), else
    the result of calling it without arguments (a class or a factory function).

    Raises:
        CheckError: a module that cannot be imported, a missing attribute, a factory
            that raises, or something other than a model.
    """
    value = _attribute(path, flag)
    if not _is_model(value, flag):
        if not callable(value):
            raise CheckError(
                f"{flag} {path}: expected a model, a class or a function returning one, got "
                f"{type(value).__name__}"
            )
        try:
            value = value()
        except Exception as err:
            raise CheckError(
                f"{flag} {path}: calling it without arguments raised {type(err).__name__}: {err}"
            ) from err
    if not _is_model(value, flag):
        expected = "a torch.nn.Module" if flag == "--torch" else "a Flax linen or NNX module"
        raise CheckError(f"{flag} {path}: expected {expected}, got {type(value).__name__}")
    return value


def own_input(args: argparse.Namespace, dtype: np.dtype) -> tuple[Any, ...]:
    """The call's positional arguments: ``--example``'s, or one random array of
    ``--input-shape`` (floats of ``dtype``, or integers in [0, V) with ``--tokens V``)."""
    if (args.input_shape is None) == (args.example is None):
        raise CheckError(
            "expected one of --input-shape (a random input) or --example (the call's "
            "arguments), got " + ("both" if args.example is not None else "neither")
        )
    if args.example is not None:
        value = _attribute(args.example, "--example")
        if callable(value):
            try:
                value = value()
            except Exception as err:
                raise CheckError(
                    f"--example {args.example}: calling it raised {type(err).__name__}: {err}"
                ) from err
        return value if isinstance(value, tuple) else (value,)
    rng = np.random.default_rng(args.seed)
    if args.tokens is not None:
        return (rng.integers(0, args.tokens, args.input_shape),)
    return (rng.standard_normal(args.input_shape).astype(dtype),)


def check_own_models(args: argparse.Namespace, header: fmt.CheckpointHeader) -> int:
    """``--torch``/``--flax``: load the file into both models, compare them on one input,
    print the report; the exit status (0 ok, 1 beyond tolerance, 2 could not check)."""
    try:
        import torch  # noqa: F401 - only to say plainly that it is missing
    except ImportError:
        print('lstm_jax.check: error: needs torch: pip install "lstm-jax[torch]"', file=sys.stderr)
        return 2
    import jax

    try:
        if args.torch is None or args.flax is None:
            given = [f for f, v in (("--torch", args.torch), ("--flax", args.flax)) if v]
            raise CheckError(
                f"expected both --torch and --flax (the options of a model of your own), got "
                f"{given[0] if given else 'neither'}"
            )
        call = own_input(args, header.dtype)
        torch_model = load_model(args.torch, "--torch")
        flax_model = load_model(args.flax, "--flax")
        x64 = jax.enable_x64(True) if header.dtype == np.float64 else contextlib.nullcontext()
        with x64:
            report = _compare_own(args.checkpoint, torch_model, flax_model, call)
    except CheckError as err:
        print(f"lstm_jax.check: error: {err}", file=sys.stderr)
        return 2
    print(f"checkpoint: {args.checkpoint}")
    print(f"models: {args.torch} (torch), {args.flax} (Flax), {header.dtype}")
    shapes = ", ".join(f"{np.shape(a)} {np.asarray(a).dtype}" for a in call)
    print(f"input: {shapes}" + ("" if args.example else f", seed {args.seed}"))
    print(report)
    return 0 if report.ok else 1


def _compare_own(path: str, torch_model: Any, flax_model: Any, call: tuple[Any, ...]) -> Any:
    """Load ``path`` into both models and compare them on ``call``."""
    from flax import nnx

    import lstm_jax
    import lstm_torch

    try:
        lstm_torch.load_checkpoint(path, torch_model)
        _, variables = lstm_jax.load_checkpoint(path, flax_model, example=call)
    except (ValueError, TypeError, KeyError) as err:  # CheckpointError is a ValueError
        raise CheckError(f"{path} does not fit the models ({type(err).__name__}: {err})") from err
    args = call if isinstance(flax_model, nnx.Module) else (variables, *call)
    try:
        return lstm_jax.compare_with_torch(torch_model, flax_model, *args)
    except (ValueError, TypeError) as err:
        shapes = ", ".join(str(np.shape(a)) for a in call)
        raise CheckError(
            f"the models could not run on the input of shapes {shapes} ({type(err).__name__}: "
            f"{err}); give the shape they take (--input-shape) or their arguments (--example)"
        ) from err


def _check_family(args: argparse.Namespace, header: fmt.CheckpointHeader, arrays: dict) -> int:
    """Check an ``nn.GRU``'s, ``nn.RNN``'s or their cells' file: both models built from the
    keys' shapes (an RNN's nonlinearity from ``--nonlinearity``), a random input and state."""
    try:
        import torch
    except ImportError:
        print('lstm_jax.check: error: needs torch: pip install "lstm-jax[torch]"', file=sys.stderr)
        return 2
    import jax

    import lstm_jax
    from lstm_jax.common.config import infer_config, rnn_mode

    name = header.model_class or ""
    gru = name.startswith("GRU")
    mode = "GRU" if gru else rnn_mode(args.nonlinearity)
    extra = {} if gru else {"nonlinearity": args.nonlinearity}
    rng = np.random.default_rng(args.seed)
    x64 = jax.enable_x64(True) if header.dtype == np.float64 else contextlib.nullcontext()
    with x64:
        if name.endswith("Cell"):
            hidden, inputs = arrays["weight_hh"].shape[1], arrays["weight_ih"].shape[1]
            bias = "bias_ih" in arrays
            torch_model = getattr(torch.nn, name)(inputs, hidden, bias=bias, **extra)
            jax_model = getattr(lstm_jax, name)(hidden, bias=bias, **extra)
            x = rng.standard_normal((args.batch, inputs)).astype(header.dtype)
            state = rng.standard_normal((args.batch, hidden)).astype(header.dtype)
            described = f"{name}(input_size={inputs}, hidden_size={hidden}, bias={bias}"
        else:
            config = infer_config({k: a.shape for k, a in arrays.items()}, mode)[0]
            options = {
                "num_layers": config.num_layers,
                "bias": config.bias,
                "bidirectional": config.bidirectional,
            } | extra
            input_size = int(config.input_size or arrays["weight_ih_l0"].shape[-1])
            torch_model = getattr(torch.nn, name)(input_size, config.hidden_size, **options)
            jax_model = getattr(lstm_jax, name)(config.hidden_size, **options)
            x = rng.standard_normal((args.seq_len, args.batch, input_size))
            x = x.astype(header.dtype)
            state = rng.standard_normal(config.state_shapes(args.batch)[0]).astype(header.dtype)
            described = f"{name}(input_size={input_size}, hidden_size={config.hidden_size}"
            described += "".join(f", {k}={v!r}" for k, v in options.items() if k != "nonlinearity")
        torch_dtype = torch.float64 if header.dtype == np.float64 else torch.float32
        torch_model = torch_model.to(torch_dtype)
        torch_model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
        variables = lstm_jax.params_from_torch(arrays, model=jax_model)
        report = lstm_jax.compare_with_torch(
            torch_model, jax_model, variables, x, state, seed=args.seed
        )
    if not gru:
        described += f", nonlinearity={args.nonlinearity!r}"
    print(f"checkpoint: {args.checkpoint}")
    print(f"model: {described}), {header.dtype}")
    print(f"input: {x.shape} and a random initial state of {state.shape}, seed {args.seed}")
    if not gru:
        print(
            "note: the file does not record the RNN's nonlinearity; both backends ran "
            f"{args.nonlinearity!r} (--nonlinearity)"
        )
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

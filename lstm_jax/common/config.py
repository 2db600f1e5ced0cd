"""Configuration, parameter names and input checks shared by both backends.

This module imports only numpy, so ``lstm_torch`` can use it without JAX.

Parameter layout (PyTorch's; G gates: 4 for the LSTM (i, f, g, o), 3 for the GRU
(r, z, n), 1 for the plain RNN)::

    weight_ih_l{k}{sfx}  (G*H, I)         I = input_size for k = 0, else D*H_out
    weight_hh_l{k}{sfx}  (G*H, H_out)
    bias_ih_l{k}{sfx}    (G*H,)           only with bias=True
    bias_hh_l{k}{sfx}    (G*H,)           only with bias=True
    weight_hr_l{k}{sfx}  (P, H)           only with proj_size P > 0 (LSTM only)

with ``sfx`` = ``""`` for the forward direction and ``"_reverse"`` for the
backward one, ``D`` = 2 if bidirectional else 1 and ``H_out`` = P if P > 0 else H.
States are ordered ``index = layer * D + direction`` along their first axis.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lstm_jax.common.arrays import flatten
from lstm_jax.common.numbers import check_int

DIRECTION_SUFFIXES = ("", "_reverse")
# ``torch.nn.LSTM``'s keyword options after (input_size, hidden_size), in its order.
LSTM_OPTIONS = ("num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size")
# those of them that the parameters' shapes tell (not batch_first, not dropout)
SHAPE_OPTIONS = tuple(o for o in LSTM_OPTIONS if o not in ("batch_first", "dropout"))
# torch's recurrent modes (``torch.nn.RNNBase.mode``) and their gate counts G.
GATE_COUNTS = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
MODES = tuple(GATE_COUNTS)
# the module each mode is (for messages): nn.LSTM, nn.GRU, nn.RNN
MODULE_NAMES = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}
# ``torch.nn.RNN``'s nonlinearity -> mode
RNN_MODES = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}


def rnn_mode(nonlinearity: object, who: str = "RNN") -> str:
    """``torch.nn.RNN``'s ``nonlinearity`` ("tanh" or "relu") -> its mode, else ValueError."""
    if not isinstance(nonlinearity, str) or nonlinearity not in RNN_MODES:
        raise ValueError(
            f"{who}: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r} "
            f"(torch: Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.)"
        )
    return RNN_MODES[nonlinearity]


@dataclass(frozen=True)
class LSTMConfig:
    """The options of ``torch.nn.LSTM`` (or, with ``mode``, of ``nn.GRU`` / ``nn.RNN``),
    validated on construction.

    ``input_size`` may be ``None`` where it is only known from the data
    (the Flax module infers it at ``init``). ``mode`` is torch's ``RNNBase.mode``:
    "LSTM", "GRU", "RNN_TANH" or "RNN_RELU"; ``proj_size`` is the LSTM's only.
    """

    hidden_size: int
    input_size: int | None = None
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    # torch's mode; a field of :class:`RecurrentConfig` (the LSTM's fields stay torch's)
    mode: ClassVar[str] = "LSTM"

    def __post_init__(self) -> None:
        if self.mode not in GATE_COUNTS:
            raise ValueError(f"expected mode in {MODES}, got {self.mode!r}")
        check_int("hidden_size", self.hidden_size)
        if self.input_size is not None:
            check_int("input_size", self.input_size)
        check_int("num_layers", self.num_layers)
        if not isinstance(self.proj_size, int) or isinstance(self.proj_size, bool):
            raise TypeError(
                f"proj_size should be of type int, got: {type(self.proj_size).__name__}"
            )
        if self.proj_size and self.mode != "LSTM":
            raise ValueError(
                f"{self.module_name}: proj_size argument is only supported for LSTM, not RNN "
                f"or GRU, got proj_size={self.proj_size}"
            )
        if self.proj_size < 0:
            raise ValueError(
                f"proj_size should be a positive integer or zero to disable projections, "
                f"got {self.proj_size}"
            )
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got proj_size={self.proj_size} "
                f"and hidden_size={self.hidden_size}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise TypeError(f"dropout should be a number in [0, 1], got {self.dropout!r}")
        if not 0.0 <= float(self.dropout) <= 1.0 or math.isnan(self.dropout):
            raise ValueError(
                f"dropout should be a number in range [0, 1] representing the probability "
                f"of an element being zeroed, got {self.dropout}"
            )
        for flag in ("bias", "batch_first", "bidirectional"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} should be a bool, got {getattr(self, flag)!r}")

    def lstm_options(self) -> dict[str, Any]:
        """The keyword options of ``torch.nn.LSTM``.

        Returns:
            ``{option: value}`` for each name in ``LSTM_OPTIONS``.
        """
        return {name: getattr(self, name) for name in LSTM_OPTIONS}

    @classmethod
    def of(cls, owner: Any, hidden_size: int, input_size: int | None = None) -> LSTMConfig:
        """The config of any object carrying ``LSTM_OPTIONS`` as attributes (the modules).

        Args:
            owner: the object (a module) holding the options as attributes.
            hidden_size: H.
            input_size: I, when known.

        Returns:
            The :class:`LSTMConfig`.
        """
        options = {name: getattr(owner, name) for name in LSTM_OPTIONS}
        return checked_config(hidden_size=hidden_size, input_size=input_size, **options)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gates(self) -> int:
        """G: the gates stacked in each weight's rows (4 LSTM, 3 GRU, 1 RNN)."""
        return GATE_COUNTS[self.mode]

    @property
    def module_name(self) -> str:
        """ "LSTM", "GRU" or "RNN": the torch module these options are of."""
        return MODULE_NAMES.get(self.mode, "LSTM")

    @property
    def has_cell(self) -> bool:
        """Whether the state is a pair (h, c) (the LSTM) rather than h alone."""
        return self.mode == "LSTM"

    @property
    def output_size(self) -> int:
        """H_out: the size of h (P with projections, else H)."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def layer_input_size(self, layer: int, input_size: int | None = None) -> int:
        if layer > 0:
            return self.num_directions * self.output_size
        size = self.input_size if input_size is None else input_size
        if size is None:
            raise ValueError("input_size is unknown: pass it or infer it from the input")
        return size

    def param_shapes(self, input_size: int | None = None) -> dict[str, tuple[int, ...]]:
        """Torch's ``nn.LSTM`` (``nn.GRU``, ``nn.RNN``) parameters and their shapes.

        Args:
            input_size: I (the config's own when None).

        Returns:
            ``{torch name: shape}`` in torch's order.
        """
        H, P, H_out, G = self.hidden_size, self.proj_size, self.output_size, self.gates
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            for sfx in DIRECTION_SUFFIXES[: self.num_directions]:
                shapes[f"weight_ih_l{layer}{sfx}"] = (
                    G * H,
                    self.layer_input_size(layer, input_size),
                )
                shapes[f"weight_hh_l{layer}{sfx}"] = (G * H, H_out)
                if self.bias:
                    shapes[f"bias_ih_l{layer}{sfx}"] = (G * H,)
                    shapes[f"bias_hh_l{layer}{sfx}"] = (G * H,)
                if P > 0:
                    shapes[f"weight_hr_l{layer}{sfx}"] = (P, H)
        return shapes

    def state_shapes(self, batch_size: int | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of the state.

        Args:
            batch_size: B, or None for an unbatched input.

        Returns:
            The shapes of (h, c): (D*L, B, H_out) and (D*L, B, H); no B axis when
            ``batch_size`` is None.
        """
        lead: tuple[int, ...] = (self.num_directions * self.num_layers,)
        if batch_size is not None:
            lead = (*lead, batch_size)
        return (*lead, self.output_size), (*lead, self.hidden_size)


@dataclass(frozen=True)
class RecurrentConfig(LSTMConfig):
    """:class:`LSTMConfig` for any of torch's recurrent modules: ``mode`` "LSTM", "GRU",
    "RNN_TANH" or "RNN_RELU" (torch's ``RNNBase.mode``); ``proj_size`` stays 0 but for
    the LSTM."""

    mode: str = "LSTM"  # type: ignore[misc]


def _typed_key(options: Mapping[str, Any]) -> tuple:
    """A hashable key telling ``True`` from ``1`` (equal and equally hashed otherwise)."""
    return tuple((name, type(value), value) for name, value in sorted(options.items()))


def _config(**options: Any) -> LSTMConfig:
    return RecurrentConfig(**options) if "mode" in options else LSTMConfig(**options)


@functools.lru_cache(maxsize=256)
def _cached_config(key: tuple) -> LSTMConfig:
    return _config(**{name: value for name, _, value in key})


def checked_config(**options: Any) -> LSTMConfig:
    """``LSTMConfig(**options)`` (a :class:`RecurrentConfig` with ``mode``), validated once
    per distinct set of options (a module's options are checked when it is built; the
    clones Flax makes on every ``init`` and ``apply`` then find the validated config
    instead of checking again)."""
    try:
        key = _typed_key(options)
        hash(key)
    except TypeError:  # an unhashable option value: let the constructor say what is wrong
        return _config(**options)
    return _cached_config(key)


@dataclass(frozen=True)
class InputLayout:
    """What an input's shape means: time steps, batch size (None when unbatched)."""

    seq_len: int
    batch_size: int | None


def check_input(
    config: LSTMConfig,
    shape: Sequence[int],
    dtype_name: str,
    is_floating: bool,
    input_size: int,
    who: str = "LSTM",
    input_size_source: str = "",
) -> InputLayout:
    """Check an ``nn.LSTM`` input; return its layout or raise a clear error.

    Arguments:
        shape: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
        input_size: the I the parameters expect.
        input_size_source: where ``input_size`` comes from, for the message when it is
            not the constructor (``lstm_jax.LSTM`` reads it off ``weight_ih_l0``).
    """
    if not is_floating:
        raise TypeError(f"{who}: expected a floating point input, got dtype {dtype_name}")
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{who}: expected input to be 2-D (unbatched (T, I)) or 3-D "
            f"({'(B, T, I)' if config.batch_first else '(T, B, I)'}), got {len(shape)}-D "
            f"input of shape {tuple(shape)}"
        )
    if shape[-1] != input_size:
        source = f"; input_size from {input_size_source}" if input_size_source else ""
        raise ValueError(
            f"{who}: input.size(-1) must be equal to input_size. Expected {input_size}, "
            f"got {shape[-1]} (input shape {tuple(shape)}{source})"
        )
    if len(shape) == 2:
        layout = InputLayout(seq_len=shape[0], batch_size=None)
    elif config.batch_first:
        layout = InputLayout(seq_len=shape[1], batch_size=shape[0])
    else:
        layout = InputLayout(seq_len=shape[0], batch_size=shape[1])
    if layout.seq_len < 1:
        raise ValueError(
            f"{who}: expected at least one time step, got input of shape {tuple(shape)}"
        )
    if layout.batch_size == 0:
        raise ValueError(
            f"{who}: expected a batch of at least one sequence, got input of shape {tuple(shape)}"
        )
    return layout


def check_state(
    config: LSTMConfig,
    layout: InputLayout,
    h_shape: Sequence[int],
    c_shape: Sequence[int] | None,
    who: str = "LSTM",
) -> None:
    """Check an initial state (h_0, c_0) against the input's layout (h_0 alone, with
    ``c_shape`` None, for a GRU or RNN)."""
    expected_h, expected_c = config.state_shapes(layout.batch_size)
    pairs = [("h_0", expected_h, h_shape)]
    if c_shape is not None:
        pairs.append(("c_0", expected_c, c_shape))
    for name, expected, got in pairs:
        if tuple(got) != expected:
            raise ValueError(
                f"{who}: expected {name} of shape {expected} "
                f"(num_directions*num_layers, {'batch, ' if layout.batch_size else ''}"
                f"{_state_width(config, name)}), "
                f"got {tuple(got)}"
            )


def _state_width(config: LSTMConfig, name: str) -> str:
    """The last axis of state ``name`` ("h_0", "c_0"), for the message."""
    return "proj_size or hidden_size" if name == "h_0" and config.has_cell else "hidden_size"


def check_seq_lengths_layout(
    shape: Sequence[int], dtype: Any, layout: InputLayout, who: str = "LSTM"
) -> None:
    """Check what is known of ``seq_lengths`` even when its values are not (under
    ``jax.jit``): one integer length per batch row, as a (B,) array (or a scalar for B=1)."""
    n = 1 if layout.batch_size is None else layout.batch_size
    shape = tuple(shape)
    if len(shape) > 1:
        raise ValueError(f"{who}: expected seq_lengths of shape ({n},), got shape {shape}")
    count = shape[0] if shape else 1
    if count != n:
        raise ValueError(f"{who}: expected {n} seq_lengths (one per batch row), got {count}")
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"{who}: expected integer seq_lengths, got dtype {dtype}")


def check_seq_lengths(lengths: object, layout: InputLayout, who: str = "LSTM") -> None:
    """Check one integer length per batch row, each in [1, T] (padding at the end).

    ``lengths`` is any array-like of known values (a list, numpy array, ``tensor.tolist()``).
    """
    values = np.asarray(lengths)
    check_seq_lengths_layout(values.shape, values.dtype, layout, who)
    bad = (values < 1) | (values > layout.seq_len)
    if np.any(bad):
        raise ValueError(
            f"{who}: every seq_length must be in [1, T={layout.seq_len}], "
            f"got {np.atleast_1d(values).tolist()}"
        )


def check_param_shapes(
    expected: Mapping[str, tuple[int, ...]],
    actual: Mapping[str, tuple[int, ...]],
    what: str = "state_dict",
) -> None:
    """Raise ``ValueError`` naming every missing or unexpected key and every
    shape mismatch (expected against actual) between two ``{name: shape}`` maps."""
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    mismatched = [
        f"{k}: expected {tuple(expected[k])}, got {tuple(actual[k])}"
        for k in expected
        if k in actual and tuple(actual[k]) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing key(s): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {', '.join(unexpected)}")
    if mismatched:
        problems.append("size mismatch for " + "; ".join(mismatched))
    if problems:
        raise ValueError(
            f"Error(s) in {what}: " + ". ".join(problems) + kind_hint(expected, actual)
        )


# a weight_hh's rows per column -> the module; how to say what came
_MODULE_OF_RATIO = {4: "LSTM", 3: "GRU", 1: "RNN"}
_ROWS_SAID = {"LSTM": "an LSTM's (4H rows)", "GRU": "a GRU's (3H rows)", "RNN": "an RNN's (H rows)"}


def module_of_shape(shape: Sequence[int]) -> str | None:
    """ "LSTM", "GRU" or "RNN": the module whose ``weight_hh`` (G*H, H) has this shape
    (no projection), or None."""
    if len(shape) != 2 or shape[1] == 0 or shape[0] % shape[1]:
        return None
    return _MODULE_OF_RATIO.get(shape[0] // shape[1])


def kind_hint(expected: Mapping[str, Sequence[int]], actual: Mapping[str, Sequence[int]]) -> str:
    """When ``actual``'s recurrent weights are another kind's than ``expected``'s (a GRU's
    state dict given to an LSTM, ...), a sentence saying what came and what to use; else ""."""
    for key in expected:
        if not key.endswith(("weight_hh_l0", "weight_hh")) or key not in actual:
            continue
        prefix = key[: -len("weight_hh_l0")] if key.endswith("_l0") else key[: -len("weight_hh")]
        if f"{prefix}weight_hr_l0" in actual or f"{prefix}weight_hr_l0" in expected:
            continue
        mine, theirs = module_of_shape(expected[key]), module_of_shape(actual[key])
        if mine is None or theirs is None or mine == theirs:
            continue
        cell = "Cell" if key.endswith("weight_hh") else ""
        rows = _ROWS_SAID
        return (
            f". The state dict is another kind's: {key} of shape {tuple(actual[key])} looks like "
            f"{rows[theirs]}, where {rows[mine]} (shape {tuple(expected[key])}) was expected: "
            f"use lstm_jax.{theirs}{cell}"
        )
    return ""


def dropout_warning(config: LSTMConfig) -> str | None:
    """torch's warning for a dropout that never applies (one layer: dropout acts only
    between layers), or None."""
    if config.dropout > 0 and config.num_layers == 1:
        return (
            f"dropout option adds dropout after all but last recurrent layer, so non-zero "
            f"dropout expects num_layers greater than 1, but got dropout={config.dropout} "
            f"and num_layers={config.num_layers}"
        )
    return None


LINEN_DROPOUT_REMEDY = (
    'pass rngs={"dropout": key} to apply, e.g. model.apply(variables, x, '
    'deterministic=False, rngs={"dropout": jax.random.key(0)})'
)


def missing_dropout_rng(config: LSTMConfig, who: str, remedy: str = LINEN_DROPOUT_REMEDY) -> str:
    """The error for a training-mode call (``deterministic=False``) without a dropout key;
    ``remedy``: how to give one (linen's ``apply`` by default)."""
    return (
        f"{who}: deterministic=False with dropout={config.dropout} and "
        f"num_layers={config.num_layers} needs a 'dropout' PRNG key: {remedy}"
    )


def params_of(variables: Any, who: str, *, wrapper_optional: bool = False) -> Mapping[str, Any]:
    """``variables["params"]`` of Flax variables, or an error saying how to pass them.

    Arguments:
        wrapper_optional: take a mapping without a ``"params"`` key as the parameters
            themselves (the weight-transfer functions accept both).

    Raises:
        TypeError: ``variables`` is not a mapping.
        ValueError: no ``"params"`` collection (the parameters passed without the
            ``{"params": ...}`` wrapper ``init`` and ``params_from_torch`` return).
    """
    if not isinstance(variables, Mapping):
        raise TypeError(
            f'{who}: expected variables as a mapping {{"params": {{...}}}}, '
            f"got {type(variables).__name__}"
        )
    if "params" not in variables and wrapper_optional:
        return variables
    if "params" not in variables:
        keys = sorted(variables)
        raise ValueError(
            f'{who}: expected variables of the form {{"params": {{...}}}} (what init and '
            f"lstm_jax.params_from_torch return), got a mapping with keys {keys}"
            + (': the parameters without their wrapper? pass {"params": params}' if keys else "")
        )
    params = variables["params"]
    if isinstance(params, Mapping) and "params" in params:
        raise ValueError(
            f'{who}: expected variables of the form {{"params": {{...}}}}, got them wrapped '
            f'twice ({{"params": {{"params": ...}}}}): pass variables["params"]'
        )
    return params


def check_params(
    params: Mapping[str, Any],
    expected: Mapping[str, tuple[int, ...]],
    who: str,
) -> None:
    """Check a whole parameter tree against the shapes a module's configuration gives.

    Arguments:
        params: ``variables["params"]``: nested mappings of arrays (or anything with a
            ``.shape``), flattened on "." to torch's ``state_dict`` keys.
        expected: ``{torch key: shape}`` (:meth:`LSTMConfig.param_shapes`,
            :func:`modeler_param_shapes`).
        who: the module, for the message.

    Raises:
        ValueError: naming every missing or unexpected key and every size mismatch
            (``size mismatch for weight_ih_l0: expected (28, 3), got (28, 4)``), then the
            configuration the variables were made for where their keys tell it.
    """
    shapes = {key: tuple(np.shape(value)) for key, value in flatten(params).items()}
    try:
        check_param_shapes(expected, shapes, f'{who} variables["params"]')
    except ValueError as err:
        raise ValueError(f"{err}{_made_for(expected, shapes)}") from None


def _made_for(
    expected: Mapping[str, tuple[int, ...]], shapes: Mapping[str, tuple[int, ...]]
) -> str:
    """The options in which the LSTM the variables' keys describe differs from the
    module's (". The variables are those of another configuration: input_size=4 (this
    module: 3)"), or ""."""
    try:
        theirs, their_output = infer_config(shapes)
        mine, my_output = infer_config(expected)
    except (ValueError, TypeError, KeyError, IndexError):
        return ""
    names = ("input_size", "hidden_size", *SHAPE_OPTIONS)
    differ = [
        (name, getattr(theirs, name), getattr(mine, name))
        for name in names
        if getattr(theirs, name) != getattr(mine, name)
    ]
    if their_output != my_output and None not in (their_output, my_output):
        differ.append(("output_size", their_output, my_output))
    if not differ:
        return ""
    listing = ", ".join(
        f"{name}={theirs!r} (this module: {mine!r})" for name, theirs, mine in differ
    )
    return f". The variables are those of another configuration: {listing}"


def modeler_param_shapes(config: LSTMConfig, output_size: int) -> dict[str, tuple[int, ...]]:
    """``LSTMModeler.state_dict()`` names and shapes: ``lstm.*`` then the ``linear`` head."""
    shapes = {f"lstm.{k}": v for k, v in config.param_shapes().items()}
    shapes["linear.weight"] = (output_size, config.num_directions * config.output_size)
    shapes["linear.bias"] = (output_size,)
    return shapes


def lstm_cell_param_shapes(
    hidden_size: int, input_size: int | None, bias: bool = True, gates: int = 4
) -> dict[str, tuple[int, ...]]:
    """``torch.nn.LSTMCell``'s parameter names (no layer suffix) mapped to their shapes;
    with ``gates`` 3 ``nn.GRUCell``'s, with 1 ``nn.RNNCell``'s."""
    check_int("hidden_size", hidden_size)
    if input_size is None:
        raise ValueError("input_size is unknown: pass it or infer it from the input")
    rows = gates * hidden_size
    shapes: dict[str, tuple[int, ...]] = {
        "weight_ih": (rows, input_size),
        "weight_hh": (rows, hidden_size),
    }
    if bias:
        shapes |= {"bias_ih": (rows,), "bias_hh": (rows,)}
    return shapes


def infer_config(
    shapes: Mapping[str, Sequence[int]], mode: str = "LSTM"
) -> tuple[LSTMConfig, int | None]:
    """Read an ``nn.LSTM`` or ``LSTMModeler`` configuration off a ``{key: shape}`` map
    (an ``nn.GRU``'s or ``nn.RNN``'s with ``mode`` "GRU", "RNN_TANH", "RNN_RELU").

    Returns the config (with ``input_size``) and the head's output size (None for a
    bare LSTM). Raises ``ValueError`` when the keys are not an LSTM's; whether every
    key and shape fits the config is :func:`check_param_shapes`'s job.
    """
    if mode != "LSTM":
        return _infer_family_config(shapes, mode), None
    prefix = "lstm." if any(k.startswith("lstm.") for k in shapes) else ""
    first_ih, first_hh = f"{prefix}weight_ih_l0", f"{prefix}weight_hh_l0"
    if first_ih not in shapes or first_hh not in shapes:
        raise ValueError(
            f"expected an LSTM state dict with keys {first_ih!r} and {first_hh!r}, "
            f"got keys {sorted(shapes)[:12]}"
        )
    rows, h_cols = shapes[first_hh][0], shapes[first_hh][-1]
    if len(shapes[first_hh]) != 2 or rows % 4:
        raise ValueError(
            f"{first_hh}: expected shape (4*hidden_size, hidden_size or proj_size) with the "
            f"gates i, f, g, o stacked, got {tuple(shapes[first_hh])} (a GRU or RNN state dict?)"
            + _family_remedy(shapes[first_hh])
        )
    hr = shapes.get(f"{prefix}weight_hr_l0")
    layers = 1 + max(
        int(k[len(prefix) + len("weight_ih_l") :].removesuffix("_reverse"))
        for k in shapes
        if k.startswith(f"{prefix}weight_ih_l")
        and k[len(prefix) + len("weight_ih_l") :].removesuffix("_reverse").isdigit()
    )
    config = LSTMConfig(
        hidden_size=rows // 4,
        input_size=int(shapes[first_ih][-1]),
        num_layers=layers,
        bias=f"{prefix}bias_ih_l0" in shapes or f"{prefix}bias_hh_l0" in shapes,
        bidirectional=f"{prefix}weight_ih_l0_reverse" in shapes,
        proj_size=int(hr[0]) if hr is not None else 0,
    )
    if config.output_size != h_cols:
        raise ValueError(
            f"{first_hh}: expected {config.output_size} columns (hidden_size or proj_size), "
            f"got shape {tuple(shapes[first_hh])}"
            + (
                ""
                if hr is not None
                else " (a GRU or RNN state dict?)" + _family_remedy(shapes[first_hh])
            )
        )
    head = shapes.get("linear.weight")
    output_size = int(head[0]) if prefix and head is not None else None
    if prefix and output_size is None:
        output_size = int(shapes["linear.bias"][0]) if "linear.bias" in shapes else 1
    return config, output_size


def _family_remedy(weight_hh: Sequence[int]) -> str:
    """How to convert a GRU's or RNN's state dict, when ``weight_hh``'s shape says it is one."""
    module = module_of_shape(weight_hh)
    if module not in ("GRU", "RNN"):
        return ""
    kind = "'GRU'" if module == "GRU" else "'RNN_TANH' or 'RNN_RELU'"
    return f": it looks like {_ROWS_SAID[module]}; pass kind={kind} or model=lstm_jax.{module}(...)"


def layer_count(shapes: Mapping[str, Sequence[int]], prefix: str = "") -> int:
    """L: one more than the largest k of the ``{prefix}weight_ih_l{k}`` keys."""
    start = f"{prefix}weight_ih_l"
    found = [k[len(start) :].removesuffix("_reverse") for k in shapes if k.startswith(start)]
    return 1 + max((int(k) for k in found if k.isdigit()), default=0)


def _infer_family_config(shapes: Mapping[str, Sequence[int]], mode: str) -> LSTMConfig:
    """An ``nn.GRU``'s or ``nn.RNN``'s configuration (``mode``) off a ``{key: shape}`` map."""
    name = MODULE_NAMES.get(mode, "LSTM")
    if "weight_ih_l0" not in shapes or "weight_hh_l0" not in shapes:
        raise ValueError(
            f"expected an nn.{name} state dict with keys 'weight_ih_l0' and 'weight_hh_l0', "
            f"got keys {sorted(shapes)[:12]}"
        )
    w_ih, w_hh = tuple(shapes["weight_ih_l0"]), tuple(shapes["weight_hh_l0"])
    gates = GATE_COUNTS[mode]
    if len(w_hh) != 2 or len(w_ih) != 2 or w_hh[0] != gates * w_hh[1]:
        rows = "3*hidden_size" if gates == 3 else "hidden_size"
        theirs = module_of_shape(w_hh)
        raise ValueError(
            f"weight_hh_l0: expected an nn.{name}'s shape ({rows}, hidden_size), got {w_hh}"
            + (f" (this looks like {_ROWS_SAID[theirs]}: use lstm_jax.{theirs})" if theirs else "")
        )
    return RecurrentConfig(
        hidden_size=int(w_hh[1]),
        input_size=int(w_ih[1]),
        num_layers=layer_count(shapes),
        bias="bias_ih_l0" in shapes or "bias_hh_l0" in shapes,
        bidirectional="weight_ih_l0_reverse" in shapes,
        mode=mode,
    )

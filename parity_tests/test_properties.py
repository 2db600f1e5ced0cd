"""Property-based parity: random ``nn.LSTM`` configurations agree with torch.

Each example draws a configuration (1-3 layers, uni/bidirectional, proj_size, bias,
batch_first, hidden 1-32, input 1-8, T 1-20, B 1-5, with or without an initial state
and per-row lengths, float32 or float64, the JAX side's ``impl``) and checks the
forward results and every gradient against ``torch.nn.LSTM`` (packed when lengths are
drawn), within ``lstm_jax.common.tolerances``.

CI runs the ``lstm-jax-ci`` profile: 200 examples, derandomized (the same examples on
every run). More with ``LSTM_JAX_HYPOTHESIS_EXAMPLES=2000 python -m pytest
parity_tests/test_properties.py`` (still derandomized, so failures reproduce).
Each example compiles one new XLA program (its shapes are new), at XLA's backend
optimisation level 0 (``packed_reference.FAST_COMPILE``): about a second of CPU each.
"""

from __future__ import annotations

import os

import helpers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packed_reference import FAST_COMPILE, PackedCase, check_case

settings.register_profile(
    "lstm-jax-ci",
    max_examples=int(os.environ.get("LSTM_JAX_HYPOTHESIS_EXAMPLES", "200")),
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def cases(draw: st.DrawFn) -> PackedCase:
    hidden = draw(st.integers(1, 32), label="hidden_size")
    seq_len = draw(st.integers(1, 20), label="seq_len")
    batch = draw(st.integers(1, 5), label="batch_size")
    case = helpers.Case(
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3), label="num_layers"),
        bidirectional=draw(st.booleans(), label="bidirectional"),
        proj_size=draw(st.integers(0, hidden - 1), label="proj_size"),
        bias=draw(st.booleans(), label="bias"),
        batch_first=draw(st.booleans(), label="batch_first"),
        state=draw(st.sampled_from(["zero", "given"]), label="initial state"),
        seq_len=seq_len,
        batch_size=batch,
        input_size=draw(st.integers(1, 8), label="input_size"),
        dtype=draw(st.sampled_from(["float32", "float64"]), label="dtype"),
        seed=draw(st.integers(0, 2**16), label="seed"),
    )
    lengths = draw(
        st.none() | st.lists(st.integers(1, seq_len), min_size=batch, max_size=batch),
        label="seq_lengths",
    )
    return PackedCase(
        case,
        lengths=None if lengths is None else tuple(lengths),
        # two of the JAX recurrence's implementations (custom backward, plain autodiff)
        impl=draw(st.sampled_from(["auto", "scan"]), label="impl"),
    )


@pytest.mark.slow  # 200 compiled configurations: minutes (LSTM_JAX_HYPOTHESIS_EXAMPLES)
@settings(settings.get_profile("lstm-jax-ci"))
@given(pc=cases())
def test_random_configurations_keep_forward_and_gradient_parity(pc: PackedCase) -> None:
    check_case(pc, compiler_options=FAST_COMPILE)

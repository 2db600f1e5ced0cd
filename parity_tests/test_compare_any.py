"""``compare_with_torch`` for models of one's own: every output leaf and gradient,
integer inputs passed through, a packing torch model against ``seq_lengths``, the
torch model left as it was, and a report that fails where the models differ."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import user_models as um

import lstm_jax
from lstm_jax.common.tolerances import FORWARD, GRADIENT

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def pair(kind: str, dtype: torch.dtype = torch.float32):
    tm, jm = um.torch_model(kind, dtype=dtype), um.flax_model(kind)
    args = um.example(kind, np.float64 if dtype == torch.float64 else np.float32)
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=args)
    return tm, jm, variables, args


@pytest.mark.parametrize("kind", ["lm", "lm-tied", "sentiment", "conv"])
def test_every_output_and_parameter_is_compared(kind: str) -> None:
    tm, jm, variables, args = pair(kind)
    report = lstm_jax.compare_with_torch(tm, jm, variables, *args)
    assert report.ok, str(report)
    names = [d.name for d in report.differences]
    params = dict(tm.named_parameters())  # a tie once, under its first name
    assert [n for n in names if n.startswith("grad ") and n[5:] in params] == [
        f"grad {k}" for k in params
    ]
    for d in report.differences:
        assert d.tolerance == (GRADIENT[F32] if d.group == "gradient" else FORWARD[F32])
    if kind.startswith("lm"):  # logits, then torch's (h_n, c_n) against the LSTMState
        assert names[:3] == ["output[0]", "output[1].h", "output[1].c"]
        assert report.final_state.name in ("output[1].h", "output[1].c")
    inputs = [n for n in names if n.startswith("grad args")]
    assert inputs == (["grad args[0]"] if kind == "conv" else [])  # tokens, lengths: integers
    text = str(report)
    assert "FlaxWordLM against torch" in text or kind not in ("lm", "lm-tied")
    assert f"gradient {report.gradient.scaled:.2e} ({report.gradient.name})" in text


def test_packed_torch_model_against_seq_lengths_with_any_array_kind() -> None:
    tm, jm, variables, (tokens, lengths) = pair("sentiment")
    for wrap in (np.asarray, jnp.asarray, torch.from_numpy):
        report = lstm_jax.compare_with_torch(tm, jm, variables, wrap(tokens), wrap(lengths))
        assert report.ok, str(report)

    report = lstm_jax.compare_with_torch(tm, jm, variables, tokens, lengths=lengths)
    assert report.ok and not any(d.name == "grad lengths" for d in report.differences)

    class IgnoresLengths(um.FlaxSentiment):
        def __call__(self, tokens, lengths):
            return super().__call__(tokens, jnp.full_like(lengths, tokens.shape[1]))

    report = lstm_jax.compare_with_torch(tm, IgnoresLengths(), variables, tokens, lengths)
    assert not report.ok  # padding read as data: the check sees it
    assert report.forward.name == "output" and not report.forward.ok


def test_a_moved_weight_fails_and_is_named() -> None:
    tm, jm, variables, args = pair("lm")
    params = jax.tree.map(np.array, variables["params"])
    params["decoder"]["bias"][1] += np.float32(0.25)
    report = lstm_jax.compare_with_torch(tm, jm, {"params": params}, *args)
    assert not report.ok
    # the logits of token 1 move by exactly 0.25, nothing else moves
    assert report.forward.name == "output[0]"
    assert report.forward.max_abs == pytest.approx(0.25, abs=1e-6)
    assert [d.name for d in report.differences if not d.ok] == ["output[0]"]
    assert "result: FAIL, beyond tolerance: output[0]" in str(report)

    tm, jm, variables, args = pair("conv")
    params = jax.tree.map(np.array, variables["params"])
    params["conv"]["kernel"] = params["conv"]["kernel"][::-1].copy()  # the kernel flipped in time
    report = lstm_jax.compare_with_torch(tm, jm, {"params": params}, *args)
    assert not report.forward.ok and not report.gradient.ok


def test_float64_pair() -> None:
    with jax.enable_x64(True):
        tm, jm, variables, args = pair("conv", torch.float64)
        report = lstm_jax.compare_with_torch(tm, jm, variables, *args)
    assert report.ok, str(report)
    assert report.dtype == F64 and report.forward.tolerance == FORWARD[F64]


def test_torch_model_is_left_as_it_was() -> None:
    tm, jm, variables, args = pair("lm")
    tm.train()
    tm.rnn.eval()
    tm.decoder.bias.requires_grad_(False)
    before = {k: v.clone() for k, v in tm.state_dict().items()}
    report = lstm_jax.compare_with_torch(tm, jm, variables, *args)
    assert report.ok, str(report)  # ran in eval mode: no dropout
    assert tm.training and tm.drop.training and not tm.rnn.training
    assert not tm.decoder.bias.requires_grad and tm.decoder.weight.requires_grad
    assert all(p.grad is None for p in tm.parameters())
    assert all(torch.equal(before[k], v) for k, v in tm.state_dict().items())


def test_mismatched_models_are_refused_clearly() -> None:
    tm, _, _, args = pair("lm")
    jm = um.flax_model("lm-tied")
    variables = lstm_jax.params_from_torch(
        um.torch_model("lm-tied").state_dict(), model=jm, example=args
    )
    with pytest.raises(
        ValueError, match=r"missing .*decoder\.weight|unexpected key\(s\): decoder\.weight"
    ):
        lstm_jax.compare_with_torch(tm, jm, variables, *args)
    with pytest.raises(TypeError, match=r"torch\.nn\.LSTM with lstm_jax\.LSTM"):
        lstm_jax.compare_with_torch(tm, lstm_jax.LSTM(um.HIDDEN), variables, *args)
    tm, jm, variables, args = pair("conv")
    with pytest.raises(TypeError, match=r"args\[0\] of the parameters' dtype float32, got float64"):
        lstm_jax.compare_with_torch(tm, jm, variables, args[0].astype(np.float64))
    with pytest.raises(TypeError, match="initial_state is for the built-in models"):
        lstm_jax.compare_with_torch(tm, jm, variables, *args, initial_state=(1, 2))


def test_nn_lstmcell_pair() -> None:
    torch.manual_seed(0)
    tc = torch.nn.LSTMCell(3, 4)
    x = um.features((2, 3))
    state = (um.features((2, 4), 1), um.features((2, 4), 2))
    variables = lstm_jax.params_from_torch(tc.state_dict())
    report = lstm_jax.compare_with_torch(tc, lstm_jax.LSTMCell(4), variables, x, state)
    assert report.ok, str(report)
    assert [d.name for d in report.differences][:2] == ["output.h", "output.c"]
    assert {"grad args[0]", "grad args[1][0]", "grad args[1][1]", "grad weight_ih"} <= {
        d.name for d in report.differences
    }


def test_variables_that_do_not_fit_the_flax_model_are_named() -> None:
    """Strict on the Flax side too (before: Flax's ScopeParamShapeError for a wrong
    shape, an extra leaf ignored, a state dict read as params)."""
    tm, jm, variables, args = pair("lm")
    params = jax.tree.map(np.asarray, variables["params"])
    narrow = {
        **params,
        "decoder": {**params["decoder"], "kernel": params["decoder"]["kernel"][:, :3]},
    }
    with pytest.raises(
        ValueError, match=r"size mismatch for decoder/kernel: expected \(6, 13\), got \(6, 3\)"
    ):
        lstm_jax.compare_with_torch(tm, jm, {"params": narrow}, *args)
    with pytest.raises(ValueError, match=r"unexpected key\(s\): junk/w"):
        lstm_jax.compare_with_torch(
            tm, jm, {"params": {**params, "junk": {"w": np.zeros(2)}}}, *args
        )
    with pytest.raises(TypeError, match=r"flat mapping with torch-style keys"):
        lstm_jax.compare_with_torch(tm, jm, tm.state_dict(), *args)
    with pytest.raises(TypeError, match=r"got the class FlaxWordLM"):
        lstm_jax.compare_with_torch(tm, um.FlaxWordLM, variables, *args)
    with pytest.raises(
        ValueError, match=r"compare_with_torch: the call's arguments: .*float32\(7, 3\)"
    ):
        lstm_jax.compare_with_torch(tm, jm, variables, args[0].astype(np.float32))


def test_a_packed_sequence_argument_says_what_to_pass() -> None:
    """Before: torch's AttributeError from rebuilding the PackedSequence JAX had flattened."""
    tm, jm, variables, (tokens, lengths) = pair("sentiment")
    embedded = tm.embedding(torch.from_numpy(tokens)).detach()
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        embedded, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    with pytest.raises(
        TypeError, match=r"args\[0\] as the padded batch, got a torch PackedSequence.*seq_lengths"
    ):
        lstm_jax.compare_with_torch(tm, jm, variables, packed, lengths)


def test_a_flax_model_drawing_dropout_is_told_to_be_deterministic() -> None:
    """Before: Flax's InvalidRngError, or the LSTM's advice to pass rngs to apply."""
    tm, _, variables, args = pair("lm")

    class Drawing(um.FlaxWordLM):
        def __call__(self, tokens, hidden=None, deterministic=False):
            return super().__call__(tokens, hidden, deterministic)

    with pytest.raises(ValueError, match=r"Drawing\.apply on the call's arguments .*deterministic"):
        lstm_jax.compare_with_torch(tm, Drawing(), variables, *args)


def test_nn_lstm_pair_with_seq_lengths_or_a_packed_sequence() -> None:
    """The built-in pair packs as the modelers do: ``seq_lengths=`` (torch packs, JAX
    masks) or the ``PackedSequence`` itself as ``x`` (before: a TypeError for
    seq_lengths, numpy's "inhomogeneous shape" for the PackedSequence)."""
    torch.manual_seed(0)
    tm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    jm = lstm_jax.LSTM(4, batch_first=True, bidirectional=True)
    variables = lstm_jax.params_from_torch(tm.state_dict())
    x, lengths = um.features((3, 5, 3)), np.array([5, 2, 3])
    h0 = (um.features((2, 3, 4), 1), um.features((2, 3, 4), 2))
    report = lstm_jax.compare_with_torch(tm, jm, variables, x, h0, seq_lengths=lengths)
    assert report.ok, str(report)
    assert {"grad input", "grad h_0", "grad weight_hh_l0_reverse"} <= {
        d.name for d in report.differences
    }
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    assert lstm_jax.compare_with_torch(tm, jm, variables, packed, h0).ok
    with pytest.raises(TypeError, match="PackedSequence or seq_lengths=, got both"):
        lstm_jax.compare_with_torch(tm, jm, variables, packed, seq_lengths=lengths)

"""Parity on one device: torch's own recurrent module (cuDNN on an NVIDIA GPU) against
``lstm_jax`` with every ``impl``, forward and gradients, in float32 and with bfloat16
compute, one JSON row per case, written as it goes.

    python benchmarks/device_parity.py --out out/parity.json --log out/parity.log
    python benchmarks/device_parity.py --out p.json --impls custom_vjp cudnn --precisions float32
    python benchmarks/device_parity.py --out p.json --deadline 140   # stop adding cases at 140 s

Exit status 1 if a row failed (a deadline-skipped or unsupported case is not a failure).

The grid (``--grid compact``, the default; ``full`` adds two cases per kind): for each kind (LSTM;
GRU and RNN when ``lstm_jax.GRU`` / ``lstm_jax.RNN`` exist, else one row saying so), a
few ``nn.LSTM``/``nn.GRU``/``nn.RNN`` option sets (stacked with an initial state,
bidirectional with packed lengths, projections) times every ``impl``. The reference
is torch's module on the same device (``cuda`` when torch sees one) in float32 with
TF32 off, precision pinned on both sides (:func:`lstm_jax.interop.precision.
pinned_precision`). Tolerances: float32 rows use ``lstm_jax.common.tolerances``
(``FORWARD``/``GRADIENT``); bfloat16-compute rows (parameters, input and state cast to
bfloat16, as ``fit(..., compute_dtype=jnp.bfloat16)`` computes) use
``lstm_jax.common.tolerances.BFLOAT16_COMPUTE`` against the same float32 reference,
and must also differ from it by more than the float32 tolerance (the compute really ran
in bfloat16); torch's own bfloat16 error (``autocast``) is recorded beside them as a
yardstick. A negative control
per kind and precision (the reference's first two gate blocks swapped) must FAIL the
same tolerance: proof that the tolerance catches a swapped gate.

Row fields: ``kind``, ``impl``, ``precision``, ``case``, ``forward_error`` and
``gradient_error`` (scaled: max |jax - torch| / max |torch| over the outputs and final
states, and over every parameter's and the input's and initial state's gradient: what
the tolerances bound), ``forward_tol``/``gradient_tol``, ``forward_max_abs_error`` /
``gradient_max_abs_error`` (the unscaled max |jax - torch|), ``ok``, ``compile_s``
(lower + compile; with ``--compile-workers`` > 1 the impls of one case compile
concurrently), ``run_s`` (one call after compiling), the devices; or ``skipped`` with the
reason. ``--grid smoke`` is the CPU smoke run's: one one-layer case (see :func:`grid`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

T, B, I, H = 9, 3, 5, 8
FULL_SHAPE = (33, 5, 16, 32)  # --grid full: one larger case per kind
PRECISIONS = ("float32", "bfloat16")
KINDS = ("LSTM", "GRU", "RNN")


@dataclass(frozen=True)
class Case:
    """One module configuration: torch's constructor options and per-row lengths."""

    options: dict[str, Any]
    lengths: tuple[int, ...] | None = None  # packed sequences (rows' valid lengths)
    initial_state: bool = False  # random (h_0[, c_0]) given, and its gradient compared
    shape: tuple[int, int, int, int] = (T, B, I, H)

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.options.items()]
        if self.lengths is not None:
            parts.append("packed")
        if self.initial_state:
            parts.append("h0")
        if self.shape != (T, B, I, H):
            parts.append("T{}B{}I{}H{}".format(*self.shape))
        return " ".join(parts)


@dataclass(frozen=True)
class Group:
    """The cases of one kind and precision, run impl by impl (the deadline's unit)."""

    kind: str
    precision: str
    case: Case
    impls: tuple[str, ...]
    control: bool = False  # the negative control: a swapped gate must fail


COMPACT = {
    "LSTM": [
        Case({"num_layers": 2}, initial_state=True),
        Case({"num_layers": 2, "bidirectional": True}, (9, 4, 7)),
        Case({"num_layers": 3, "proj_size": 3}, (9, 2, 5)),
    ],
    "GRU": [
        Case({"num_layers": 2}, initial_state=True),
        Case({"num_layers": 1, "bidirectional": True}, (9, 4, 7)),
    ],
    "RNN": [
        Case({"num_layers": 2, "nonlinearity": "tanh"}, initial_state=True),
        Case({"num_layers": 1, "nonlinearity": "relu", "bidirectional": True}, (9, 4, 7)),
    ],
}
FULL_EXTRA = {
    kind: [
        Case({"num_layers": 1, "bias": False}),
        Case({"num_layers": 2, "bidirectional": True}, (33, 30, 1, 12, 33), True, FULL_SHAPE),
    ]
    for kind in KINDS
}


def cases_for(kind: str, precision: str, grid_name: str) -> list[Case]:
    """The cases of one kind and precision in a grid ("compact", "full" or "smoke")."""
    if grid_name == "full":
        return COMPACT[kind] + FULL_EXTRA[kind]
    if grid_name == "smoke":  # the cheapest program to compile: one layer
        return [Case({"num_layers": 1})]
    if precision == "bfloat16":  # the projection case has its float32 rows
        return COMPACT[kind][:2]
    return COMPACT[kind]


def grid(kinds: list[str], impls: list[str], precisions: list[str], grid_name: str) -> list[Group]:
    """The groups in order of value: LSTM float32, LSTM bfloat16, then the other kinds
    float32, then bfloat16; each (kind, precision) ends with its negative control. The
    smoke grid (CPU CI, where each compile costs seconds) is one one-layer case: the
    LSTM with every impl in float32 and its control, ``custom_vjp`` with bfloat16
    compute; the GRU and the RNN with ``custom_vjp`` (every kind's default) in float32."""
    order = [("LSTM", p) for p in precisions if "LSTM" in kinds]
    order += [(k, p) for p in precisions for k in kinds if k != "LSTM"]
    one = tuple(i for i in impls if i == "custom_vjp") or tuple(impls[:1])
    groups = []
    for kind, precision in order:
        cases = cases_for(kind, precision, grid_name)
        if grid_name != "smoke":
            groups += [Group(kind, precision, case, tuple(impls)) for case in cases]
            groups.append(Group(kind, precision, cases[0], (impls[0],), control=True))
        elif kind == "LSTM":  # every impl in float32 with the control; one in bfloat16
            chosen = tuple(impls) if precision == "float32" else one
            groups += [Group(kind, precision, case, chosen) for case in cases]
            if precision == "float32":
                groups.append(Group(kind, precision, cases[0], (impls[0],), control=True))
        elif precision == "float32":  # the other kinds: that they run
            groups += [Group(kind, precision, case, one) for case in cases]
    return groups


# --- one case ----------------------------------------------------------------------------


@dataclass
class Reference:
    """torch's float32 result on its device: inputs, outputs, gradients (numpy)."""

    x: np.ndarray
    state: list[np.ndarray]  # initial h_0 (and c_0), empty without
    cotangent: np.ndarray
    outputs: list[np.ndarray]  # output and final states
    grads: dict[str, np.ndarray]  # torch parameter names, "x", "h_0", "c_0"
    state_dict: dict[str, np.ndarray]
    bf16_errors: dict[str, float | None] = field(default_factory=dict)


def torch_run(
    kind: str,
    case: Case,
    device: str,
    state_dict: dict[str, np.ndarray] | None = None,
    autocast: bool = False,
) -> tuple[list[np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """torch's module (fresh from seed 0, or loaded with ``state_dict``) on ``device``:
    outputs, gradients and its state dict, and the input it ran (seeded numpy draws)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    steps, _, inputs, hidden = case.shape
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(inputs, hidden, **case.options).to(device)
    if state_dict is not None:
        module.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    x_np, state_np, cot = draws(kind, case)
    xt = torch.tensor(x_np, device=device, requires_grad=True)
    states = [torch.tensor(s, device=device, requires_grad=True) for s in state_np]
    hx: Any = None
    if states:
        hx = tuple(states) if kind == "LSTM" else states[0]
    ctx = torch.autocast(device_type=device, dtype=torch.bfloat16) if autocast else None
    with ctx or contextlib.nullcontext():
        if case.lengths is None:
            out, final = module(xt, hx)
        else:
            packed = pack_padded_sequence(xt, torch.tensor(case.lengths), enforce_sorted=False)
            out_packed, final = module(packed, hx)
            out, _ = pad_packed_sequence(out_packed, total_length=steps)
    finals = list(final) if isinstance(final, tuple) else [final]
    (out.float() * torch.tensor(cot, device=device)).sum().backward()
    grads = {k: grad_of(v) for k, v in module.named_parameters()}
    grads["x"] = grad_of(xt)
    for name, s in zip(("h_0", "c_0"), states, strict=False):
        grads[name] = grad_of(s)
    outputs = [t.detach().float().cpu().numpy() for t in (out, *finals)]
    sd = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    return outputs, grads, sd, x_np


def grad_of(tensor: Any) -> np.ndarray:
    """A leaf tensor's gradient as float32 numpy (every leaf here gets one)."""
    if tensor.grad is None:
        raise RuntimeError("torch computed no gradient for a leaf of the loss")
    return tensor.grad.detach().float().cpu().numpy()


def draws(kind: str, case: Case) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The input (zero past each row's length), initial state and output cotangent."""
    steps, batch, inputs, hidden = case.shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    if case.lengths is not None:
        x[np.arange(steps)[:, None] >= np.array(case.lengths)[None, :]] = 0.0
    directions = 2 if case.options.get("bidirectional") else 1
    layers = case.options.get("num_layers", 1)
    h_out = case.options.get("proj_size") or hidden
    state = []
    if case.initial_state:
        sizes = (h_out, hidden) if kind == "LSTM" else (h_out,)
        state = [rng.standard_normal((directions * layers, batch, n)) for n in sizes]
        state = [s.astype(np.float32) for s in state]
    cot = rng.standard_normal((steps, batch, directions * h_out)).astype(np.float32)
    return x, state, cot


def swapped_gates(kind: str, sd: dict[str, np.ndarray], hidden: int) -> dict[str, np.ndarray]:
    """The state dict with the first two gate blocks of every weight and bias swapped
    (LSTM i/f, GRU r/z); an RNN has one block: its input weights are negated instead."""
    out = {}
    for k, v in sd.items():
        if kind == "RNN":
            out[k] = -v if k.startswith("weight_ih") else v
        elif k.startswith(("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
            v = v.copy()
            v[:hidden], v[hidden : 2 * hidden] = sd[k][hidden : 2 * hidden], sd[k][:hidden]
            out[k] = v
        else:
            out[k] = v
    return out


def reference(kind: str, case: Case, device: str, control: bool) -> Reference:
    """torch in float32 on ``device`` (and under bfloat16 autocast, as a yardstick)."""
    outputs, grads, sd, x = torch_run(kind, case, device)
    _, state, cot = draws(kind, case)
    ref = Reference(x, state, cot, outputs, grads, sd)
    if control:  # JAX gets torch's weights with two gates swapped: it must disagree
        ref.state_dict = swapped_gates(kind, sd, case.shape[3])
    return ref


def torch_bf16_errors(kind: str, case: Case, device: str, ref: Reference) -> dict[str, Any]:
    """torch's own bfloat16 (autocast) error against its float32 result, or why none."""
    from lstm_jax.common.tolerances import scaled_error

    try:
        outputs, grads, _, _ = torch_run(kind, case, device, ref.state_dict, autocast=True)
    except Exception as error:  # autocast may not cover this module on this device
        return {"torch_bf16_error": repr(error)[:200]}
    return {
        "torch_bf16_forward_error": max(map(scaled_error, outputs, ref.outputs)),
        "torch_bf16_gradient_error": max(scaled_error(grads[k], ref.grads[k]) for k in grads),
    }


def jax_model(kind: str, case: Case, impl: str, dtype: Any) -> Any:
    """lstm_jax's module for torch's options with ``impl`` (where the module has one)."""
    import lstm_jax

    cls = getattr(lstm_jax, kind)
    fields = getattr(cls, "__dataclass_fields__", {})
    options: dict[str, Any] = dict(case.options)
    if "param_dtype" in fields:
        options["param_dtype"] = dtype
    if "impl" in fields:
        options["impl"] = impl
    elif impl != "auto":
        raise NotImplementedError(f"lstm_jax.{kind} has no impl option")
    try:
        return cls(case.shape[3], **options)
    except ValueError as error:  # an impl this kind does not offer: a skip, not a failure
        if f"impl={impl!r}" in str(error) or "expected impl" in str(error):
            raise NotImplementedError(str(error)) from error
        raise


@dataclass
class Prepared:
    """A case ready to compile: the lowered program and its arguments."""

    lowered: Any
    args: tuple
    params_keys: list[str]


def prepare(kind: str, case: Case, impl: str, precision: str, ref: Reference) -> Prepared:
    """Trace and lower value-and-gradient of sum(output * cotangent) for one impl."""
    import jax
    import jax.numpy as jnp

    import lstm_jax

    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    model = jax_model(kind, case, impl, dtype)
    if kind == "LSTM":
        variables = lstm_jax.params_from_torch(ref.state_dict)
    else:  # a built-in is checked against its options; another model needs an example
        try:
            variables = lstm_jax.params_from_torch(ref.state_dict, model=model)
        except (TypeError, ValueError):
            example = (jax.ShapeDtypeStruct(ref.x.shape, jnp.float32),)
            variables = lstm_jax.params_from_torch(ref.state_dict, model=model, example=example)
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), variables["params"])
    seq = None if case.lengths is None else jnp.asarray(case.lengths)
    cot = jnp.asarray(ref.cotangent)
    use_state = bool(ref.state)

    def loss(params: Any, x: Any, state: list[Any]) -> Any:
        initial = None
        if use_state:
            initial = tuple(state) if kind == "LSTM" else state[0]
        kwargs = {} if seq is None else {"seq_lengths": seq}
        out, final = model.apply({"params": params}, x, initial, **kwargs)
        outputs = [out, *jax.tree.leaves(final)]
        return jnp.sum(out.astype(jnp.float32) * cot), [o.astype(jnp.float32) for o in outputs]

    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
    args = (params, jnp.asarray(ref.x, dtype), [jnp.asarray(s, dtype) for s in ref.state])
    return Prepared(fn.lower(*args), args, sorted(params))


def compare(
    kind: str, case: Case, precision: str, ref: Reference, results: Any, control: bool
) -> dict[str, Any]:
    """Scaled errors against torch's float32 result and the verdict."""
    from lstm_jax.common.tolerances import BFLOAT16_COMPUTE, FORWARD, GRADIENT, scaled_error

    (_, outputs), (g_params, g_x, g_state) = results
    jax_grads = {k: np.asarray(v, np.float32) for k, v in flat(g_params).items()}
    jax_grads["x"] = np.asarray(g_x, np.float32)
    for name, g in zip(("h_0", "c_0"), g_state, strict=False):
        jax_grads[name] = np.asarray(g, np.float32)
    if set(jax_grads) != set(ref.grads):
        raise KeyError(f"gradient keys: JAX {sorted(jax_grads)}, torch {sorted(ref.grads)}")
    pairs = list(zip(map(np.asarray, outputs), ref.outputs, strict=True))
    forward = max(scaled_error(o, r) for o, r in pairs)
    gradient = max(scaled_error(jax_grads[k], ref.grads[k]) for k in ref.grads)
    forward_abs = max(float(np.max(np.abs(o - r), initial=0.0)) for o, r in pairs)
    gradient_abs = max(
        float(np.max(np.abs(jax_grads[k] - ref.grads[k]), initial=0.0)) for k in ref.grads
    )
    f32 = np.dtype(np.float32)
    if precision == "bfloat16":
        tols = BFLOAT16_COMPUTE["forward"], BFLOAT16_COMPUTE["gradient"]
    else:
        tols = FORWARD[f32], GRADIENT[f32]
    within = forward <= tols[0] and gradient <= tols[1]
    row: dict[str, Any] = {
        "forward_error": forward,
        "gradient_error": gradient,
        "forward_tol": tols[0],
        "gradient_tol": tols[1],
        "forward_max_abs_error": forward_abs,
        "gradient_max_abs_error": gradient_abs,
    }
    if control:  # the swapped-gate model must be caught
        row["expect"] = "fail: the reference's gates are swapped"
        row["ok"] = bool(not within)
    elif precision == "bfloat16":  # within bfloat16's tolerance, yet not float32-exact
        row["ran_in_bfloat16"] = bool(forward > FORWARD[f32])
        row["ok"] = bool(within and row["ran_in_bfloat16"])
    else:
        row["ok"] = bool(within)
    return row


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict of arrays with "."-joined keys (torch's names)."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def why_skip(kind: str, case: Case, impl: str, precision: str, device: str) -> str | None:
    """A reason this impl cannot run this case (recorded, not a failure), or None."""
    if impl == "cudnn" and device == "cpu":
        return (
            "cudnn: GPU only (without one jax.experimental.rnn runs its reference "
            "implementation, which parity_tests/test_recurrence_impls.py covers)"
        )
    if impl == "cudnn" and kind != "LSTM":
        return "cudnn: jax.experimental.rnn has the LSTM only"
    if impl == "cudnn" and case.options.get("proj_size"):
        return "cudnn: no projections (proj_size)"
    if impl == "cudnn" and precision != "float32":
        return "cudnn: jax.experimental.rnn supports float32 only"
    return None


# --- the run -----------------------------------------------------------------------------


def run_group(group: Group, device: str, workers: int) -> Iterator[dict[str, Any]]:
    """Every impl of one case: torch's reference once, the impls' programs lowered in
    turn, compiled (concurrently with ``workers`` > 1), then run one by one."""
    import jax

    base: dict[str, Any] = {
        "kind": group.kind,
        "precision": group.precision,
        "case": group.case.label + (" [control: gates swapped]" if group.control else ""),
        "torch_device": device,
        "jax_device": str(jax.devices()[0]),
    }
    ref = reference(group.kind, group.case, device, group.control)
    yard: dict[str, Any] = {}
    if group.precision == "bfloat16" and not group.control:
        yard = torch_bf16_errors(group.kind, group.case, device, ref)
    prepared: dict[str, Prepared] = {}
    rows: dict[str, dict[str, Any]] = {}
    for impl in group.impls:
        row: dict[str, Any] = {**base, "impl": impl}
        why = why_skip(group.kind, group.case, impl, group.precision, device)
        if why is not None:
            rows[impl] = {**row, "skipped": why}
            continue
        try:
            prepared[impl] = prepare(group.kind, group.case, impl, group.precision, ref)
            rows[impl] = row
        except NotImplementedError as error:
            rows[impl] = {**row, "skipped": str(error)}
        except Exception as error:
            rows[impl] = {**row, "ok": False, "error": repr(error)[:500]}
    compiled = compile_all(prepared, workers)
    for impl in group.impls:
        row = rows[impl]
        if impl in compiled:
            executable, compile_s = compiled[impl]
            row["compile_s"] = compile_s
            try:
                if isinstance(executable, BaseException):
                    raise executable
                start = time.perf_counter()
                out = jax.block_until_ready(executable(*prepared[impl].args))
                row["run_s"] = time.perf_counter() - start
                row |= compare(group.kind, group.case, group.precision, ref, out, group.control)
                row |= yard
            except Exception as error:
                row |= {"ok": False, "error": repr(error)[:500]}
        yield row


def compile_all(prepared: dict[str, Prepared], workers: int) -> dict[str, tuple[Any, float]]:
    """{impl: (executable or the exception, seconds)}, compiled ``workers`` at a time."""

    def one(p: Prepared) -> tuple[Any, float]:
        start = time.perf_counter()
        try:
            return p.lowered.compile(), time.perf_counter() - start
        except Exception as error:
            return error, time.perf_counter() - start

    if workers <= 1 or len(prepared) <= 1:
        return {impl: one(p) for impl, p in prepared.items()}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {impl: pool.submit(one, p) for impl, p in prepared.items()}
        return {impl: f.result() for impl, f in futures.items()}


def absent_kinds(kinds: list[str]) -> list[dict[str, Any]]:
    """A skipped row for each kind lstm_jax does not have yet."""
    import lstm_jax

    return [
        {"kind": k, "skipped": f"lstm_jax.{k} does not exist in this version"}
        for k in kinds
        if not hasattr(lstm_jax, k)
    ]


class Recorder:
    """Rows to the JSON file (rewritten after each row) and one line each to the log."""

    def __init__(self, out: Path, log: Path | None) -> None:
        self.out, self.log = out, log
        self.rows: list[dict[str, Any]] = []
        out.parent.mkdir(parents=True, exist_ok=True)
        if log is not None:
            log.write_text("")

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.rows, indent=1) + "\n")
        os.replace(tmp, self.out)
        line = describe(row)
        print(line, flush=True)
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(line + "\n")


def describe(row: dict[str, Any]) -> str:
    """One log line: verdict, what, errors against tolerances, times."""
    what = " ".join(str(row.get(k, "")) for k in ("kind", "precision", "impl", "case"))
    if "skipped" in row:
        return f"SKIP {what}: {row['skipped']}"
    if "error" in row:
        return f"FAIL {what}: {row['error']}"
    verdict = "ok  " if row["ok"] else "FAIL"
    return (
        f"{verdict} {what}: forward {row['forward_error']:.2e} (tol {row['forward_tol']:.0e}), "
        f"gradient {row['gradient_error']:.2e} (tol {row['gradient_tol']:.0e}), "
        f"compile {row.get('compile_s', 0):.2f} s, run {row.get('run_s', 0):.3f} s"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="JSON file of the rows")
    p.add_argument("--log", type=Path, help="one line per row (besides stdout)")
    p.add_argument("--impls", nargs="+", help="lstm_jax impls (default: every one but auto)")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--grid", choices=("compact", "full", "smoke"), default="compact")
    p.add_argument(
        "--deadline", type=float, help="seconds from the start after which no case starts"
    )
    p.add_argument(
        "--compile-workers", type=int, default=1, help="impls of one case compiled at once"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    import torch

    from lstm_jax.core.options import IMPLS
    from lstm_jax.interop.precision import pinned_precision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    impls = args.impls or [i for i in IMPLS if i != "auto"]
    recorder = Recorder(args.out, args.log)
    for row in absent_kinds(args.kinds):
        recorder.add(row)
    kinds = [k for k in args.kinds if not any(r["kind"] == k for r in recorder.rows)]
    groups = grid(kinds, impls, args.precisions, args.grid)
    last = 0.0  # the previous group's seconds: the estimate of the next one's
    with pinned_precision():
        for group in groups:
            elapsed = time.perf_counter() - started
            if args.deadline is not None and elapsed + last > args.deadline:
                for impl in group.impls:
                    recorder.add(
                        {
                            "kind": group.kind,
                            "precision": group.precision,
                            "impl": impl,
                            "case": group.case.label + (" [control]" if group.control else ""),
                            "skipped": f"deadline ({args.deadline:g} s from the start)",
                        }
                    )
                continue
            start = time.perf_counter()
            for row in run_group(group, device, args.compile_workers):
                recorder.add(row)
            last = time.perf_counter() - start
    rows = recorder.rows
    failed = [r for r in rows if r.get("ok") is False]
    ran = [r for r in rows if "ok" in r]
    print(
        f"device parity: {len(ran) - len(failed)} of {len(ran)} ok, {len(rows) - len(ran)} "
        f"skipped, {time.perf_counter() - started:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

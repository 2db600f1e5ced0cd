"""Time lstm_jax against PyTorch on one machine, in one run: ratios, not absolute numbers.

    python benchmarks/jit_benchmark.py          # the default run (2-core CPU: about 2 minutes)
    python benchmarks/jit_benchmark.py --smoke  # tiny shapes, seconds (CI; no timing asserted)
    python benchmarks/jit_benchmark.py --shapes medium long --layers 1 --repeats 11
    python benchmarks/jit_benchmark.py --report benchmarks/jit_benchmark_cpu.json   # README table

Both sides run the project's models, float32, with the same weights: ``lstm_torch.
LSTMModeler`` (``nn.LSTM`` + ``nn.Linear``; on CPU torch runs oneDNN's fused LSTM)
and ``lstm_jax.LSTMModeler`` under ``jax.jit``. For each shape (T, B, I, H), 1 and 2
layers (and bidirectional for ``medium``), and a GRU in its place (``nn.GRU`` +
``nn.Linear`` against ``lstm_jax.GRU`` + ``lstm_jax.Linear``; torch runs oneDNN's GRU)
for the ``--gru`` shapes (one layer; default ``medium``), it times

- inference: the forward pass (torch under ``inference_mode``);
- a training step: forward, MSE loss, backward, optimizer update (SGD lr 1e-3 by
  default, the same rule on both sides: ``lstm_jax.common.optim``). JAX: one jitted
  ``lstm_jax.train.update`` with the parameters and optimizer state donated.
  torch: ``zero_grad``, forward, ``MSELoss``, ``backward``, ``step``;

and the lecture's whole training (100 epochs x 3 samples, batch 1, shuffled):
torch's loop (the lecture's ``DataLoader`` loop and ``lstm_torch.fit``; the faster
is the reference) against ``lstm_jax.fit``, one compiled program. Cold start: fresh
processes running that training, torch against JAX with its persistent compilation
cache empty ("cold") and filled by the previous process ("warm"). Rematerialization:
the training memory of a T = 10,000 sequence with and without ``remat``.

Method. Warm-up first (JAX's compilation, timed separately as lower + compile).
Each sample runs a calibrated number of back-to-back calls (at least
``--min-sample`` seconds) and ends with ``jax.block_until_ready`` /
``torch.cuda.synchronize``; torch and JAX samples alternate, and each time is the
median over ``--repeats`` samples. Achieved GFLOP/s count 8*B*T*H*(I + H) per layer
and direction forward (I = D*H above the first layer), 3x that for a training
step, against the machine's float32 GEMM rate measured in the same run (the better
of ``jax.numpy``'s and ``torch``'s n x n matmuls): that rate is the limit.
Peak memory: JAX's compiled program (``memory_analysis``: arguments + outputs -
donated + temporaries); torch on CPU the live tensors (parameters, optimizer
state, inputs) plus the high-water mark of torch's allocator events during one
call (``torch.profiler``, ``profile_memory``; oneDNN's own scratchpad is not seen),
on GPU ``torch.cuda.max_memory_allocated``. Matmul precision is pinned to full
float32 on both sides (no TF32) unless ``--tf32``.

Threads: both libraries use all the CPUs the process may run on (torch's
``set_num_threads`` and XLA's thread pool, sized from the CPU affinity).
``--threads N`` pins the process to N CPUs before either library loads.

Output: a table on the terminal, ``out/jit_benchmark_<device>.json`` and a chart of
the ratios ``out/jit_benchmark_<device>.png`` (``--out``, ``--chart``; ``out/`` is
git-ignored). The committed results are written only when asked for:
``--out benchmarks/jit_benchmark_cpu.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from report import markdown, print_table, save_chart, targets

ROOT = Path(__file__).resolve().parent.parent

# (T, B, I, H): time steps, batch, input features, hidden size.
SHAPES = {
    "seed": (1, 1, 1, 10),  # the lecture's model: one step of one feature, hidden 10
    "small": (32, 8, 8, 64),
    "medium": (128, 64, 32, 256),
    "long": (1024, 16, 32, 128),
    "large": (256, 128, 128, 512),  # GPU-sized: skipped on CPU unless named
}
SMOKE_SHAPES = {"tiny": (3, 2, 2, 4), "tiny-long": (16, 2, 2, 4)}

# The lecture: three temperatures and the next day's, hidden 10, SGD lr 0.001, 100 epochs.
LECTURE_X = np.array([[32.0], [37.0], [25.0]], np.float32)
LECTURE_Y = np.array([[34.0], [36.0], [24.0]], np.float32)
LECTURE_HIDDEN, LECTURE_LR, LECTURE_EPOCHS, LECTURE_SEED = 10, 0.001, 100, 0


@dataclass
class Settings:
    """What one run measures (the command-line options)."""

    shapes: list[str]  # names from SHAPES (or SMOKE_SHAPES with --smoke)
    layers: list[int] = field(default_factory=lambda: [1, 2])
    bidirectional: list[str] = field(default_factory=lambda: ["medium"])  # shapes also run bi
    gru: list[str] = field(default_factory=lambda: ["medium"])  # shapes also run as a GRU, L1
    repeats: int = 7  # samples per measurement; the median is reported
    min_sample: float = 0.05  # seconds: calls per sample are calibrated to last at least this
    device: str = "cpu"
    threads: int | None = None  # None: every CPU the process may use
    optimizer: str = "sgd"
    impl: str = "auto"  # lstm_jax's recurrence (see lstm_jax.core.recurrence)
    impls: list[str] = field(default_factory=list)  # several, each case timed with each
    cases: list[str] = field(default_factory=list)  # labels ("medium L2 bi"): instead of
    # the shapes x layers x bidirectional grid, these cases in this order
    deadline: float | None = None  # seconds from the start: no case starts after it
    tf32: bool = False
    compute_dtype: str | None = None  # "bfloat16": JAX computes in it, torch under autocast
    lecture: bool = True
    lecture_epochs: int = LECTURE_EPOCHS
    cold_start: bool = True
    cold_repeats: int = 2  # fresh processes per kind (torch, JAX warm)
    remat_shape: tuple[int, int, int, int] = (10_000, 16, 32, 128)
    remat_chunk: int = 100
    memory: bool = True
    smoke: bool = False


# --- machine, libraries ------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info(settings: Settings) -> dict[str, Any]:
    import jax
    import torch

    gpu = None
    if settings.device == "gpu":
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else str(jax.devices()[0])
    return {
        "cpu": cpu_model(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpus_total": os.cpu_count(),
        "gpu": gpu,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_devices": [str(d) for d in jax.devices()],
    }


def versions() -> dict[str, str]:
    import flax
    import jax
    import jaxlib
    import optax
    import torch

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "torch": torch.__version__,
        "onednn": str(torch.backends.mkldnn.is_available()),
    }


# --- timing ------------------------------------------------------------------------------


@dataclass
class Runner:
    """One backend's piece of work: ``call()`` does it once and returns what to wait on;
    ``wait(result)`` blocks until it is done."""

    call: Callable[[], Any]
    wait: Callable[[Any], None]

    def sample(self, n: int) -> float:
        """Seconds per call over ``n`` back-to-back calls, waited for at the end."""
        start = time.perf_counter()
        result = None
        for _ in range(n):
            result = self.call()
        self.wait(result)
        return (time.perf_counter() - start) / n


def calls_per_sample(runner: Runner, min_sample: float) -> int:
    once = runner.sample(1)
    return max(1, min(100_000, math.ceil(min_sample / max(once, 1e-7))))


def interleaved(runners: dict[str, Runner], repeats: int, min_sample: float) -> dict[str, dict]:
    """Median seconds per call of each runner, samples alternating between runners."""
    for r in runners.values():  # warm-up (compiled already, this settles caches)
        r.sample(1)
    counts = {k: calls_per_sample(r, min_sample) for k, r in runners.items()}
    samples: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    for i in range(repeats):
        for k in names if i % 2 == 0 else names[::-1]:
            samples[k].append(runners[k].sample(counts[k]))
    return {
        k: {"median_s": statistics.median(v), "samples_s": v, "calls_per_sample": counts[k]}
        for k, v in samples.items()
    }


# --- FLOPs and the machine's limit ---------------------------------------------------------


def lstm_flops(T: int, B: int, I: int, H: int, layers: int, directions: int, gates: int = 4) -> int:
    """Forward FLOPs of the recurrence's matmuls: 2*G*B*T*H*(I_l + H) per layer and
    direction, G = 4 gates for the LSTM (8*B*T*H*(I_l + H)), 3 for the GRU."""
    total = 0
    for layer in range(layers):
        fan_in = I if layer == 0 else directions * H
        total += directions * 2 * gates * B * T * H * (fan_in + H)
    return total


def gemm_rate(settings: Settings) -> dict[str, float]:
    """float32 n x n matmul GFLOP/s of each library on the device (the machine's limit)."""
    import jax
    import jax.numpy as jnp
    import torch

    n = 256 if settings.smoke else (8192 if settings.device == "gpu" else 2048)
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, a).block_until_ready()
    t = torch.randn(n, n, device=torch_device(settings))
    runners = {
        "jax": Runner(lambda: matmul(a, a), jax.block_until_ready),
        "torch": Runner(lambda: t @ t, lambda _: torch_sync(settings)),
    }
    times = interleaved(runners, settings.repeats, settings.min_sample)
    rates = {k: 2 * n**3 / v["median_s"] / 1e9 for k, v in times.items()}
    return {
        "n": n,
        "jax_gflops": rates["jax"],
        "torch_gflops": rates["torch"],
        "limit_gflops": max(rates.values()),
    }


def torch_device(settings: Settings) -> str:
    return "cuda" if settings.device == "gpu" else "cpu"


def torch_autocast(settings: Settings) -> contextlib.AbstractContextManager[Any]:
    """torch's mixed precision for ``settings.compute_dtype`` (a no-op without one)."""
    import torch

    if settings.compute_dtype is None:
        return contextlib.nullcontext()
    dtype = getattr(torch, settings.compute_dtype)
    return torch.autocast(device_type=torch_device(settings), dtype=dtype)


def torch_sync(settings: Settings) -> None:
    if settings.device == "gpu":
        import torch

        torch.cuda.synchronize()


# --- memory --------------------------------------------------------------------------------


def jax_peak_bytes(compiled: Any) -> int | None:
    """Arguments + outputs - donated (aliased) + temporaries of a compiled program."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop log lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tensor_bytes(tensors: Any) -> int:
    import torch

    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def torch_peak_bytes(call: Callable[[], Any], live: int, settings: Settings) -> int | None:
    """Peak bytes of one call: on GPU the allocator's own peak; on CPU ``live`` (tensors
    that exist before and after) plus the high-water mark of the allocations and frees
    torch's profiler records during the call."""
    import torch

    if settings.device == "gpu":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    from torch.profiler import ProfilerActivity, profile

    try:
        with (
            quiet_stderr(),
            profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
        ):
            call()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except (AttributeError, RuntimeError):  # the profiler's internals moved: no figure
        return None
    current = high = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        high = max(high, current)
    return live + high


# --- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    shape: str
    T: int
    B: int
    I: int
    H: int
    layers: int
    bidirectional: bool
    kind: str = "LSTM"  # or "GRU"

    @property
    def label(self) -> str:
        bi = " bi" if self.bidirectional else ""
        return f"{self.shape} L{self.layers}{bi}{' GRU' if self.kind == 'GRU' else ''}"

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def flops(self, mode: str) -> int:
        gates = 3 if self.kind == "GRU" else 4
        forward = lstm_flops(self.T, self.B, self.I, self.H, self.layers, self.directions, gates)
        return forward * (3 if mode == "train" else 1)


def make_cases(settings: Settings) -> list[Case]:
    table = SMOKE_SHAPES if settings.smoke else SHAPES
    if settings.cases:  # labels "<shape> L<layers>[ bi]", in the order given
        return [case_of_label(label, table) for label in settings.cases]
    cases = []
    for name in settings.shapes:
        T, B, I, H = table[name]
        for layers in settings.layers:
            for bi in (False, True) if name in settings.bidirectional else (False,):
                cases.append(Case(name, T, B, I, H, layers, bi))
    for name in settings.gru:
        cases.append(Case(name, *table[name], 1, False, "GRU"))
    return cases


def case_of_label(label: str, table: dict[str, tuple[int, int, int, int]]) -> Case:
    """The case a label names ("medium L2 bi", "medium L1 GRU": shape, layers,
    bidirectional, kind)."""
    words = label.split()
    kind = "GRU" if words[-1:] == ["GRU"] else "LSTM"
    words = words[:-1] if kind == "GRU" else words
    ok = len(words) in (2, 3) and words[0] in table and words[1][:1] == "L"
    ok = ok and words[1][1:].isdigit() and words[2:] in ([], ["bi"])
    if not ok:
        raise SystemExit(
            f"--cases: expected '<shape> L<layers>[ bi][ GRU]' with a shape of {list(table)}, "
            f"got {label!r}"
        )
    T, B, I, H = table[words[0]]
    return Case(words[0], T, B, I, H, int(words[1][1:]), len(words) == 3, kind)


def optimizer_spec(settings: Settings) -> Any:
    from lstm_jax.common.optim import SGD, Adam

    return Adam(lr=1e-3) if settings.optimizer == "adam" else SGD(lr=1e-3)


def build_pair(
    case: Case, settings: Settings, seed: int = 0, remat: int = 0
) -> tuple[Any, Any, Any]:
    """The torch model (initialised from ``seed``), its JAX mirror and the copied variables."""
    import jax
    import torch

    import lstm_jax
    import lstm_torch

    torch.manual_seed(seed)
    options = dict(num_layers=case.layers, bidirectional=case.bidirectional)
    if case.kind == "GRU":
        return gru_pair(case, settings, remat)
    tm = lstm_torch.LSTMModeler(case.I, case.H, 1, **options).to(torch_device(settings))
    jm = lstm_jax.LSTMModeler(case.I, case.H, 1, impl=settings.impl, remat=remat, **options)
    variables = jax.device_put(lstm_jax.params_from_torch(tm.state_dict()), jax_device(settings))
    return tm, jm, variables


def gru_pair(case: Case, settings: Settings, remat: int = 0) -> tuple[Any, Any, Any]:
    """The GRU in the LSTMModeler's place: ``nn.GRU`` + ``nn.Linear`` on the last step's
    output (torch's seeded initialisation), its Flax mirror and the copied variables."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import torch

    import lstm_jax

    options = dict(num_layers=case.layers, bidirectional=case.bidirectional)
    out_features = case.directions * case.H

    class TorchGRUModeler(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(case.I, case.H, **options)
            self.linear = torch.nn.Linear(out_features, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(self.gru(x)[0][-1])

    class JaxGRUModeler(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> tuple[Any, Any]:
            gru = lstm_jax.GRU(case.H, impl=settings.impl, remat=remat, name="gru", **options)
            out, h_n = gru(x)
            return lstm_jax.Linear(1, name="linear")(out[-1]), h_n  # as LSTMModeler's

    tm = TorchGRUModeler().to(torch_device(settings))
    jm = JaxGRUModeler()
    example = jnp.zeros((case.T, case.B, case.I), jnp.float32)
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(example,))
    return tm, jm, jax.device_put(variables, jax_device(settings))


def fresh_state(tm: Any, batch: int) -> None:
    """The LSTMModeler's carried state back to zeros before a call (the GRU's has none)."""
    if hasattr(tm, "zero_hidden_cell"):
        tm.hidden_cell = tm.zero_hidden_cell(batch)


def jax_device(settings: Settings) -> Any:
    import jax

    return jax.devices("gpu" if settings.device == "gpu" else "cpu")[0]


def case_data(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """x (T, B, I) and targets y (B, 1), standard normal."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((case.T, case.B, case.I)).astype(np.float32)
    y = rng.standard_normal((case.B, 1)).astype(np.float32)
    return x, y


@dataclass
class Work:
    """One piece of work on both backends: JAX's jitted function and its arguments (for
    the compile time and memory), one call of each side, and torch's live bytes."""

    jitted: Any
    args: tuple
    jax_call: Callable[[], Any]
    torch_call: Callable[[], Any]
    torch_live_bytes: Callable[[], int]  # tensors alive around a torch call


def forward_work(case: Case, settings: Settings) -> Work:
    """Inference: the model's forward pass, hidden_cell from zeros."""
    import jax
    import torch

    tm, jm, variables = build_pair(case, settings)
    x_np, _ = case_data(case)
    xt = torch.from_numpy(x_np).to(torch_device(settings))
    args = (variables, jax.device_put(x_np, jax_device(settings)))
    low = settings.compute_dtype

    def forward(v: Any, x: Any) -> Any:
        if low is None:
            return jm.apply(v, x)[0]
        model = jm.clone(param_dtype=low) if hasattr(jm, "param_dtype") else jm
        return model.apply(jax.tree.map(lambda a: a.astype(low), v), x.astype(low))[0]

    jitted = jax.jit(forward)

    def torch_call() -> Any:
        with torch.inference_mode(), torch_autocast(settings):
            fresh_state(tm, case.B)
            return tm(xt)

    return Work(
        jitted,
        args,
        lambda: jitted(*args),
        torch_call,
        lambda: tensor_bytes(tm.parameters()) + tensor_bytes([xt]),
    )


def train_work(case: Case, settings: Settings, remat: int = 0) -> Work:
    """A training step: forward, MSE loss, backward, optimizer update. JAX's parameters
    and optimizer state are donated and threaded from call to call."""
    import jax
    import torch

    import lstm_jax
    import lstm_torch
    from lstm_jax.train import update

    tm, jm, variables = build_pair(case, settings, remat=remat)
    x_np, y_np = case_data(case)
    dev = torch_device(settings)
    xt, yt = torch.from_numpy(x_np).to(dev), torch.from_numpy(y_np).to(dev)
    spec = optimizer_spec(settings)
    tx = lstm_jax.as_optax(spec)

    def step(params: Any, opt_state: Any, x: Any, y: Any) -> tuple[Any, Any, Any]:
        return update(jm, tx, "mse", params, {}, opt_state, x, y, None, settings.compute_dtype)

    jitted = jax.jit(step, donate_argnums=(0, 1))
    params = variables["params"]
    state = [params, tx.init(params), *jax.device_put((x_np, y_np), jax_device(settings))]

    def jax_call() -> Any:
        state[0], state[1], loss = jitted(*state)
        return loss

    t_opt = lstm_torch.make_optimizer(spec, tm.parameters())
    loss_fn = torch.nn.MSELoss()

    def torch_call() -> Any:
        t_opt.zero_grad()
        fresh_state(tm, case.B)
        with torch_autocast(settings):
            loss = loss_fn(tm(xt).float(), yt)
        loss.backward()
        t_opt.step()
        return loss

    def torch_live_bytes() -> int:  # gradients are freed by zero_grad and counted as new
        opt_state = [v for s in t_opt.state.values() for v in s.values()]
        return tensor_bytes(tm.parameters()) + tensor_bytes([*opt_state, xt, yt])

    return Work(jitted, tuple(state), jax_call, torch_call, torch_live_bytes)


def run_case(case: Case, mode: str, settings: Settings, limit: float) -> dict[str, Any]:
    """Time one case in one mode ("forward" or "train") on both backends."""
    import jax

    work = forward_work(case, settings) if mode == "forward" else train_work(case, settings)
    start = time.perf_counter()
    compiled = work.jitted.lower(*work.args).compile()  # later calls reuse this executable
    compile_s = time.perf_counter() - start
    work.torch_call()  # creates the gradients and optimizer state
    jax_peak = torch_peak = None
    if settings.memory:
        jax_peak = jax_peak_bytes(compiled)
        torch_peak = torch_peak_bytes(work.torch_call, work.torch_live_bytes(), settings)

    times = interleaved(
        {
            "torch": Runner(work.torch_call, lambda _: torch_sync(settings)),
            "jax": Runner(work.jax_call, jax.block_until_ready),
        },
        settings.repeats,
        settings.min_sample,
    )
    flops = case.flops(mode)
    t_torch, t_jax = times["torch"]["median_s"], times["jax"]["median_s"]
    return {
        "case": case.label,
        "shape": case.shape,
        "T": case.T,
        "B": case.B,
        "I": case.I,
        "H": case.H,
        "layers": case.layers,
        "bidirectional": case.bidirectional,
        "kind": case.kind,
        "mode": mode,
        "torch_s": t_torch,
        "jax_s": t_jax,
        "ratio": t_jax / t_torch,
        "jax_compile_s": compile_s,
        "flops": flops,
        "torch_gflops": flops / t_torch / 1e9,
        "jax_gflops": flops / t_jax / 1e9,
        "torch_share_of_limit": flops / t_torch / 1e9 / limit,
        "jax_share_of_limit": flops / t_jax / 1e9 / limit,
        "torch_peak_bytes": torch_peak,
        "jax_peak_bytes": jax_peak,
        "samples": times,
    }


# --- the lecture's training ------------------------------------------------------------------


def lecture_loop(model: Any, epochs: int, seed: int) -> list[float]:
    """The lecture's training loop as written: DataLoader(batch 1, shuffled), hidden_cell
    reset per sample, MSELoss, SGD(lr 0.001), ``loss.item()`` summed per epoch."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(
        TensorDataset(torch.from_numpy(LECTURE_X), torch.from_numpy(LECTURE_Y)),
        batch_size=1,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    loss_function = torch.nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LECTURE_LR)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            model.hidden_cell = model.zero_hidden_cell(1)
            loss = loss_function(model(x), y[0])
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total)
    return losses


def lecture(settings: Settings) -> dict[str, Any]:
    """The lecture's whole training: torch's loops against ``lstm_jax.fit``."""
    import jax
    import torch

    import lstm_jax
    import lstm_torch
    from lstm_jax.common.optim import SGD

    epochs = settings.lecture_epochs
    spec = SGD(lr=LECTURE_LR)
    torch.manual_seed(LECTURE_SEED)
    tm = lstm_torch.LSTMModeler(1, LECTURE_HIDDEN, 1)
    initial = {k: v.clone() for k, v in tm.state_dict().items()}
    jm = lstm_jax.LSTMModeler(1, LECTURE_HIDDEN, 1, impl=settings.impl)
    variables = lstm_jax.params_from_torch(tm.state_dict())

    def jax_fit() -> Any:
        return lstm_jax.fit(
            jm,
            variables,
            LECTURE_X,
            LECTURE_Y,
            optimizer=spec,
            epochs=epochs,
            shuffle_seed=LECTURE_SEED,
        )

    def torch_fit() -> Any:
        tm.load_state_dict(initial)
        return lstm_torch.fit(
            tm, LECTURE_X, LECTURE_Y, optimizer=spec, epochs=epochs, shuffle_seed=LECTURE_SEED
        )

    def torch_lecture() -> Any:
        tm.load_state_dict(initial)
        return lecture_loop(tm, epochs, LECTURE_SEED)

    start = time.perf_counter()
    jax.block_until_ready(jax_fit())
    first_call_s = time.perf_counter() - start
    times = interleaved(
        {
            "torch_lecture_loop": Runner(torch_lecture, lambda _: None),
            "torch_fit": Runner(torch_fit, lambda _: None),
            "jax_fit": Runner(jax_fit, jax.block_until_ready),
        },
        settings.repeats,
        settings.min_sample,
    )
    t_torch = min(times["torch_lecture_loop"]["median_s"], times["torch_fit"]["median_s"])
    t_jax = times["jax_fit"]["median_s"]
    return {
        "epochs": epochs,
        "steps": epochs * len(LECTURE_X),
        "torch_lecture_loop_s": times["torch_lecture_loop"]["median_s"],
        "torch_fit_s": times["torch_fit"]["median_s"],
        "torch_s": t_torch,
        "jax_s": t_jax,
        "jax_first_call_s": first_call_s,
        "ratio": t_jax / t_torch,
        "samples": times,
    }


def child_lecture(backend: str, epochs: int, cache_dir: str | None) -> None:
    """A fresh process's whole lecture training; prints JSON timings (seconds since the
    interpreter started, and of the training itself: model creation, compile, run)."""
    started = time.perf_counter()
    if backend == "jax":
        import jax

        if cache_dir:
            jax.config.update("jax_compilation_cache_dir", cache_dir)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        import lstm_jax
        from lstm_jax.common.optim import SGD

        imported = time.perf_counter()
        model = lstm_jax.LSTMModeler(1, LECTURE_HIDDEN, 1)
        variables = jax.jit(model.init)(jax.random.key(LECTURE_SEED), LECTURE_X)
        _, losses = lstm_jax.fit(
            model,
            variables,
            LECTURE_X,
            LECTURE_Y,
            optimizer=SGD(lr=LECTURE_LR),
            epochs=epochs,
            shuffle_seed=LECTURE_SEED,
        )
        if "torch" in sys.modules:
            raise RuntimeError("the JAX process imported torch")
    else:
        import torch

        import lstm_torch

        imported = time.perf_counter()
        torch.manual_seed(LECTURE_SEED)
        model = lstm_torch.LSTMModeler(1, LECTURE_HIDDEN, 1)
        losses = lecture_loop(model, epochs, LECTURE_SEED)
        if "jax" in sys.modules:
            raise RuntimeError("the torch process imported jax")
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "import_s": imported - started,
                "train_s": done - imported,
                "final_loss": float(losses[-1]),
            }
        )
    )


def cold_start(settings: Settings) -> dict[str, Any]:
    """Fresh processes running the lecture's training: torch's loop; JAX with an empty
    persistent compilation cache (cold), then with the cache the cold run filled (warm)."""

    def run(backend: str, cache: str | None) -> dict[str, float]:
        command = [sys.executable, os.fspath(Path(__file__).resolve()), "--child", backend]
        command += ["--lecture-epochs", str(settings.lecture_epochs)]
        if cache:
            command += ["--cache-dir", cache]
        if settings.threads:
            command += ["--threads", str(settings.threads)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"cold-start child {backend} failed:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {"process_s": wall, **result}

    def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in runs) for k in runs[0]}

    with tempfile.TemporaryDirectory(prefix="jax_cache_") as cache:
        torch_runs, warm_runs = [], []
        cold = run("jax", cache)  # empty cache: compiles, and fills the cache
        for _ in range(settings.cold_repeats):
            torch_runs.append(run("torch", None))
            warm_runs.append(run("jax", cache))
        uncached = None if settings.smoke else run("jax", None)
    torch_run, warm = median_of(torch_runs), median_of(warm_runs)
    return {
        "torch": torch_run,
        "jax_cold_cache": cold,
        "jax_warm_cache": warm,
        "jax_no_cache": uncached,  # no persistent cache at all (JAX's default)
        "ratio_warm_train": warm["train_s"] / torch_run["train_s"],
        "ratio_cold_train": cold["train_s"] / torch_run["train_s"],
        "ratio_warm_process": warm["process_s"] / torch_run["process_s"],
        "ratio_cold_process": cold["process_s"] / torch_run["process_s"],
    }


# --- rematerialization ------------------------------------------------------------------------


def remat_demo(settings: Settings) -> dict[str, Any]:
    """Training-step memory (and one step's time, compiled) of one long sequence: JAX
    without and with ``remat``, and torch."""
    import jax

    T, B, I, H = (64, 2, 2, 4) if settings.smoke else settings.remat_shape
    chunk = 8 if settings.smoke else settings.remat_chunk
    case = Case("remat", T, B, I, H, 1, False)
    result: dict[str, Any] = {"T": T, "B": B, "I": I, "H": H, "chunk": chunk}
    for remat in (0, chunk):
        work = train_work(case, settings, remat=remat)
        compiled = work.jitted.lower(*work.args).compile()
        result[f"jax_remat{remat}_peak_bytes"] = jax_peak_bytes(compiled)
        start = time.perf_counter()
        jax.block_until_ready(work.jax_call())
        result[f"jax_remat{remat}_step_s"] = time.perf_counter() - start
    start = time.perf_counter()
    work.torch_call()
    torch_sync(settings)
    result["torch_step_s"] = time.perf_counter() - start
    result["torch_peak_bytes"] = torch_peak_bytes(
        work.torch_call, work.torch_live_bytes(), settings
    )
    return result


# --- driver ---------------------------------------------------------------------------------------


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in ``--help`` (those without one say theirs in words), the
    epilog's lines kept."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def shapes_help() -> str:
    """The epilog: what each shape name means."""
    notes = {
        "seed": "the lecture's model: one step of one feature",
        "large": "GPU-sized: skipped on CPU unless named",
    }
    lines = ["shapes (--shapes, --bidirectional): T time steps, B batch, I inputs, H hidden"]
    for name, (t, b, i, h) in SHAPES.items():
        note = f"  ({notes[name]})" if name in notes else ""
        lines.append(f"  {name:<7} T={t:<5} B={b:<4} I={i:<4} H={h}{note}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog=shapes_help(), formatter_class=HelpFormatter
    )
    p.add_argument(
        "--shapes", nargs="+", help=f"of {list(SHAPES)} (default: all but large on CPU; all on GPU)"
    )
    p.add_argument("--layers", nargs="+", type=int, default=[1, 2], help="layer counts to run")
    p.add_argument(
        "--cases",
        nargs="+",
        help="case labels such as 'medium L1' 'large L2' 'medium L1 bi', run in this order "
        "(instead of --shapes x --layers x --bidirectional; default: that grid)",
    )
    p.add_argument("--bidirectional", nargs="*", default=["medium"], help="shapes also run bi")
    p.add_argument(
        "--gru", nargs="*", default=["medium"], help="shapes also run as a one-layer GRU"
    )
    p.add_argument("--repeats", type=int, default=7, help="samples per measurement (median)")
    p.add_argument("--min-sample", type=float, default=0.05, help="seconds per sample, at least")
    p.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto: a GPU if any"
    )
    p.add_argument(
        "--threads", type=int, help="pin the process to this many CPUs (default: all usable)"
    )
    p.add_argument(
        "--optimizer", choices=("sgd", "adam"), default="sgd", help="the training step's update"
    )
    p.add_argument(
        "--impl", default="auto", help="lstm_jax recurrence (lstm_jax.core.options.IMPLS)"
    )
    p.add_argument(
        "--impls",
        nargs="+",
        help="several recurrences in one run: each case and mode is timed with each, torch "
        "alongside every time; rows carry 'impl' and the label '[impl]' (default: --impl)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        help="seconds from the start after which no case starts (the ones left are listed "
        "under 'skipped'); the JSON is rewritten after every case either way (default: "
        "none, every case runs)",
    )
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on GPU (both sides)")
    p.add_argument(
        "--compute-dtype",
        choices=("bfloat16", "float16"),
        help="compute in this dtype (JAX: parameters and input cast, fit's compute_dtype; "
        "torch: autocast); default float32",
    )
    p.add_argument("--no-lecture", action="store_true", help="skip the lecture's training")
    p.add_argument("--no-cold-start", action="store_true", help="skip the fresh processes")
    p.add_argument("--no-remat", action="store_true", help="skip the T=10,000 memory demo")
    p.add_argument("--no-memory", action="store_true", help="skip peak memory")
    p.add_argument(
        "--lecture-epochs", type=int, default=LECTURE_EPOCHS, help="the lecture's training"
    )
    p.add_argument("--smoke", action="store_true", help="tiny shapes, 2 repeats (CI)")
    p.add_argument(
        "--out",
        type=Path,
        help="JSON path (default: out/jit_benchmark_<device>.json, git-ignored; the committed "
        "results: --out benchmarks/jit_benchmark_cpu.json)",
    )
    p.add_argument("--chart", type=Path, help="PNG path (default: the JSON's, .png)")
    p.add_argument("--no-chart", action="store_true", help="write no chart (no matplotlib)")
    p.add_argument(
        "--report", type=Path, help="print the README table of a JSON file and exit (default: run)"
    )
    p.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def default_out(device: str) -> Path:
    """Where results go without ``--out``: the git-ignored ``out/``, never over the
    committed ``benchmarks/jit_benchmark_<device>.json``."""
    return ROOT / "out" / f"jit_benchmark_{device}.json"


def pin_threads(threads: int | None) -> None:
    """Restrict the process to ``threads`` CPUs before jax/torch load (both size their
    thread pools from the affinity); torch is also told explicitly, later."""
    if threads:
        cpus = sorted(os.sched_getaffinity(0))
        if threads > len(cpus):
            raise SystemExit(f"--threads {threads}: only {len(cpus)} CPUs are usable")
        os.sched_setaffinity(0, cpus[:threads])


def resolve_device(requested: str) -> str:
    import jax
    import torch

    has_gpu = torch.cuda.is_available() and any(d.platform == "gpu" for d in jax.devices())
    if requested == "gpu" and not has_gpu:
        raise SystemExit("--device gpu: torch and JAX must both see a GPU")
    return "gpu" if requested == "gpu" or (requested == "auto" and has_gpu) else "cpu"


def settings_from(args: argparse.Namespace, device: str) -> Settings:
    if args.smoke:
        shapes = args.shapes or ["tiny"]
        return Settings(
            shapes=shapes,
            layers=[1],
            bidirectional=["tiny"],
            gru=["tiny"] if args.gru else [],
            repeats=2,
            min_sample=0.0,
            device=device,
            threads=args.threads,
            optimizer=args.optimizer,
            impl=args.impl,
            impls=args.impls or [args.impl],
            cases=args.cases or [],
            deadline=args.deadline,
            tf32=args.tf32,
            compute_dtype=args.compute_dtype,
            lecture_epochs=2,
            cold_repeats=1,
            smoke=True,
            cold_start=not args.no_cold_start,
            lecture=not args.no_lecture,
            memory=not args.no_memory,
        )
    shapes = args.shapes or [s for s in SHAPES if device == "gpu" or s != "large"]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; expected some of {list(SHAPES)}")
    return Settings(
        shapes=shapes,
        layers=args.layers,
        bidirectional=args.bidirectional,
        gru=args.gru,
        repeats=args.repeats,
        min_sample=args.min_sample,
        device=device,
        threads=args.threads,
        optimizer=args.optimizer,
        impl=args.impl,
        impls=args.impls or [args.impl],
        cases=args.cases or [],
        deadline=args.deadline,
        tf32=args.tf32,
        compute_dtype=args.compute_dtype,
        lecture=not args.no_lecture,
        lecture_epochs=args.lecture_epochs,
        cold_start=not args.no_cold_start,
        memory=not args.no_memory,
    )


def pinned_precision(tf32: bool) -> contextlib.AbstractContextManager[None]:
    """Both backends' matmul precision pinned (full float32, or TF32 with ``tf32``)."""
    from lstm_jax.interop import precision  # imports jax and torch only when entered

    return precision.pinned_precision(tf32=tf32)


def write_json(results: dict[str, Any], out: Path) -> None:
    """The results so far, replacing ``out`` in one step (a killed run leaves the last)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out)


def timed_cases(
    settings: Settings, limit: float, results: dict[str, Any], out: Path, started: float
) -> None:
    """Every case and mode with every impl, into ``results["cases"]`` (written after
    each); a run that raises goes to ``results["failed"]``; past ``settings.deadline``
    (or when the last run would not fit before it) the rest go to ``results["skipped"]``."""
    results["cases"], results["skipped"], results["failed"] = [], [], []
    several = len(settings.impls) > 1
    last = 0.0
    for case in make_cases(settings):
        for mode in ("forward", "train"):
            for impl in settings.impls:
                elapsed = time.perf_counter() - started
                if settings.deadline is not None and elapsed + last > settings.deadline:
                    reason = f"deadline ({settings.deadline:g} s from the start)"
                    results["skipped"].append(
                        {"case": case.label, "mode": mode, "impl": impl, "reason": reason}
                    )
                    continue
                start = time.perf_counter()
                try:
                    row = run_case(case, mode, replace(settings, impl=impl), limit)
                except Exception as error:  # recorded; the other impls still run
                    what = {"case": case.label, "mode": mode, "impl": impl}
                    results["failed"].append({**what, "error": repr(error)[:1000]})
                    print(f"{case.label} {mode} [{impl}] FAILED: {error!r}", flush=True)
                    write_json(results, out)
                    continue
                finally:
                    last = time.perf_counter() - start
                row["impl"] = impl
                if several:
                    row["case"] = f"{row['case']} [{impl}]"
                results["cases"].append(row)
                print(f"{row['case']:<16}{mode:<8} ratio {row['ratio']:.3f}", flush=True)
                write_json(results, out)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return None
    pin_threads(args.threads)
    if args.child:
        child_lecture(args.child, args.lecture_epochs, args.cache_dir)
        return None
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = settings_from(args, device)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "machine": machine_info(settings),
        "versions": versions(),
        "settings": {
            **asdict(settings),
            "command": f"python benchmarks/jit_benchmark.py {argv_text}".strip(),
        },
    }
    out = args.out or default_out(device)
    with pinned_precision(settings.tf32):
        results["gemm"] = gemm_rate(settings)
        write_json(results, out)
        timed_cases(settings, results["gemm"]["limit_gflops"], results, out, started)
        if settings.lecture:
            results["lecture"] = lecture(settings)
        if settings.cold_start and device == "cpu":
            results["cold_start"] = cold_start(settings)
        if not args.no_remat:
            results["remat"] = remat_demo(settings)
    results["wall_s"] = time.perf_counter() - started
    results["targets"] = targets(results)
    print_table(results)
    write_json(results, out)
    if args.no_chart:
        print(f"\nwrote {out} ({results['wall_s']:.0f} s)")
        return results
    chart = args.chart or out.with_suffix(".png")
    save_chart(results, chart)
    print(f"\nwrote {out} and {chart} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()

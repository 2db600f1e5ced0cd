"""The Python steps of ``benchmarks/gpu_check.sh`` that are not a script of their own:
the environment record, the lecture's training on the device, and the summary.

    python benchmarks/gpu_check.py env OUT/environment.json
    python benchmarks/gpu_check.py lecture OUT/lecture.json [--epochs 100]
    python benchmarks/gpu_check.py summary OUT [--steps STEPS.tsv] [--budget 480]

``summary`` needs neither JAX nor torch: it reads the JSON files the other steps wrote
(a step that did not run or was cut short leaves its file missing or partial, and the
summary says so), writes ``OUT/summary.md`` and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = (  # versions recorded from the installed metadata (no import needed)
    "jax",
    "jaxlib",
    "jax-cuda13-plugin",
    "jax-cuda13-pjrt",
    "jax-cuda12-plugin",
    "jax-cuda12-pjrt",
    "flax",
    "optax",
    "orbax-checkpoint",
    "torch",
    "numpy",
    "nvidia-cudnn-cu13",
    "nvidia-cudnn-cu12",
)
BENCH_FILES = {"fp32": "bench_fp32.json", "tf32": "bench_tf32.json"}
BENCH_IMPLS = ("custom_vjp", "hoisted", "cudnn", "wavefront")


# --- environment ---------------------------------------------------------------------------


def nvidia_smi() -> dict[str, Any]:
    """The GPU's name, driver, memory and the CUDA version the driver reports."""
    info: dict[str, Any] = {}
    query = "name,driver_version,memory.total,compute_cap"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        info["gpus"] = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
        found = re.search(r"CUDA Version:\s*([\d.]+)", header.stdout)
        info["driver_cuda"] = found.group(1) if found else None
    return info


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def environment(out: Path) -> dict[str, Any]:
    """The machine and libraries; ``device`` is "gpu" when JAX and torch both see one."""
    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "git_commit": git_commit(),
        "versions": {},
        **nvidia_smi(),
    }
    for name in DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info["versions"][name] = importlib.metadata.version(name)
    if not info.get("gpus") and not Path("/dev/nvidiactl").exists():
        # No NVIDIA driver: neither library can see a GPU; skip their imports (seconds
        # of the smoke run's budget on a small CPU machine).
        info["device"] = "cpu"
        info["note"] = "no NVIDIA driver (nvidia-smi, /dev/nvidiactl): jax and torch not imported"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(info, indent=1) + "\n")
        return info
    try:
        import jax

        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
        info["jax_environment"] = jax.print_environment_info(return_string=True)
    except Exception as error:  # recorded: the later steps fail and say why
        info["jax_error"] = repr(error)
    try:
        import torch

        info["torch_cuda_available"] = torch.cuda.is_available()
        info["torch_cuda"] = torch.version.cuda
        info["torch_cudnn"] = torch.backends.cudnn.version()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except Exception as error:
        info["torch_error"] = repr(error)
    gpu = info.get("torch_cuda_available") and info.get("jax_backend") == "gpu"
    info["device"] = "gpu" if gpu else "cpu"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=1) + "\n")
    return info


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# --- the lecture's training --------------------------------------------------------------------


def lecture(out: Path, epochs: int) -> dict[str, Any]:
    """The lecture's training (``examples/seed_lstm.py``'s: LSTMModeler(1, 10, 1), SGD lr
    0.001, batch 1, shuffled with seed 0) with torch on its GPU (when it sees one) and
    ``lstm_jax.fit`` on JAX's default device, from the same initial weights; precision
    pinned on both sides. Per-epoch losses side by side, their scaled difference
    against ``TRAINING``'s float32 tolerance, the wall times."""
    import jax
    import torch

    import lstm_jax
    import lstm_torch
    from lstm_jax.common.lecture import LECTURE_TEST_X, LECTURE_X, LECTURE_Y
    from lstm_jax.common.optim import SGD
    from lstm_jax.common.tolerances import TRAINING, scaled_error
    from lstm_jax.interop.precision import pinned_precision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(1)  # as examples/seed_lstm.py: more threads only synchronise
    options: dict[str, Any] = {
        "optimizer": SGD(0.001),
        "epochs": epochs,
        "batch_size": 1,
        "shuffle_seed": 0,
    }
    with pinned_precision():
        torch.manual_seed(0)
        model = lstm_torch.LSTMModeler(1, 10, 1).to(device)
        initial = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        times: dict[str, float] = {}
        start = time.perf_counter()
        torch_losses = np.asarray(lstm_torch.fit(model, LECTURE_X, LECTURE_Y, **options))
        times["torch_first_s"] = time.perf_counter() - start
        again = lstm_torch.LSTMModeler(1, 10, 1).to(device)
        again.load_state_dict(initial)
        start = time.perf_counter()
        lstm_torch.fit(again, LECTURE_X, LECTURE_Y, **options)
        times["torch_second_s"] = time.perf_counter() - start

        jm = lstm_jax.LSTMModeler(1, 10, 1)
        variables = lstm_jax.params_from_torch(initial)
        start = time.perf_counter()
        trained, jax_losses = lstm_jax.fit(jm, variables, LECTURE_X, LECTURE_Y, **options)
        jax.block_until_ready(trained)
        times["jax_first_s"] = time.perf_counter() - start  # tracing and compiling included
        start = time.perf_counter()
        jax.block_until_ready(lstm_jax.fit(jm, variables, LECTURE_X, LECTURE_Y, **options))
        times["jax_second_s"] = time.perf_counter() - start
        test = np.full((1, 1, 1), LECTURE_TEST_X, np.float32)
        jax_prediction = float(jax.jit(jm.apply)(trained, test)[0][0, 0])
        with torch.no_grad():
            model.hidden_cell = model.zero_hidden_cell(1)
            torch_prediction = float(model(torch.from_numpy(test).to(device))[0, 0])
    jax_losses = np.asarray(jax_losses)
    torch_params = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    jax_params = lstm_jax.params_to_torch(trained)
    tol = TRAINING[np.dtype(np.float32)]
    loss_error = scaled_error(jax_losses, torch_losses)
    param_error = max(scaled_error(jax_params[k], v) for k, v in torch_params.items())
    result = {
        "torch_device": device,
        "jax_device": str(jax.devices()[0]),
        "epochs": epochs,
        "torch_losses": torch_losses.tolist(),
        "jax_losses": jax_losses.tolist(),
        "loss_error": loss_error,
        "param_error": param_error,
        "tolerance": tol,
        "ok": bool(loss_error <= tol and param_error <= tol),
        "prediction_27": {"torch": torch_prediction, "jax": jax_prediction, "true": 28.0},
        **times,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(lecture_lines(result))
    return result


def lecture_lines(r: dict[str, Any]) -> str:
    """The losses side by side (epoch 1, every 10th, the last) and the verdict."""
    rows = ["| epoch | torch loss | JAX loss |", "| ---: | ---: | ---: |"]
    for epoch in range(1, r["epochs"] + 1):
        if epoch == 1 or epoch % 10 == 0 or epoch == r["epochs"]:
            t, j = r["torch_losses"][epoch - 1], r["jax_losses"][epoch - 1]
            rows.append(f"| {epoch} | {t:.7g} | {j:.7g} |")
    p = r["prediction_27"]
    verdict = "ok" if r["ok"] else "FAILED"
    rows += [
        "",
        f"torch on {r['torch_device']}, JAX on {r['jax_device']}: losses {verdict} (scaled "
        f"difference {r['loss_error']:.2e}, parameters {r['param_error']:.2e}, tolerance "
        f"{r['tolerance']:.0e}); prediction for 27 (true 28): torch {p['torch']:.4f}, "
        f"JAX {p['jax']:.4f}.",
        f"Wall time: torch fit {r['torch_first_s']:.3f} s (second run "
        f"{r['torch_second_s']:.3f} s), JAX fit {r['jax_first_s']:.3f} s with compiling, "
        f"{r['jax_second_s']:.4f} s compiled.",
    ]
    return "\n".join(rows)


# --- the summary -------------------------------------------------------------------------------


def load(path: Path) -> Any:
    """A JSON file's content, or None if it is missing or unreadable."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return None


def env_lines(env: dict[str, Any] | None, budget: float | None) -> list[str]:
    if env is None:
        return ["# GPU check: no environment record (the first step did not finish)"]
    v = env.get("versions", {})
    gpu = env.get("gpu") or "no GPU (CPU run)"
    smi = "; ".join(env.get("gpus", [])) or "-"
    plugin = v.get("jax-cuda13-plugin") or v.get("jax-cuda12-plugin") or "-"
    lines = [
        f"# GPU check: {gpu}, {env['date_utc']}",
        "",
        f"- device `{env['device']}`; nvidia-smi: {smi}; driver CUDA "
        f"{env.get('driver_cuda') or '-'}; CPU {env['cpu']} ({env['cpus']} cores)",
        f"- jax {v.get('jax', '-')}, jaxlib {v.get('jaxlib', '-')}, CUDA plugin {plugin}, "
        f"flax {v.get('flax', '-')}, optax {v.get('optax', '-')}, torch {v.get('torch', '-')}"
        f" (CUDA {env.get('torch_cuda') or '-'}, cuDNN {env.get('torch_cudnn') or '-'}), "
        f"Python {env['python']}; commit {env.get('git_commit') or '-'}",
    ]
    if budget is not None:
        lines[-1] += f"; budget {budget:g} s"
    return lines


def steps_lines(steps_tsv: Path | None, elapsed: float | None) -> list[str]:
    """The steps' verdicts and times (``gpu_check.sh`` writes one tab-separated line each:
    name, result, wall seconds, CPU seconds (user + system, the step's processes), cap in
    seconds, note), and the total before the summary. CPU far below wall on a step that
    computes on the CPU means the machine was busy with something else."""
    if steps_tsv is None or not steps_tsv.exists():
        return []
    lines = [
        "",
        "## Steps",
        "",
        "| step | result | wall s | CPU s | cap s | note |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for line in steps_tsv.read_text().splitlines():
        fields = (line.split("\t") + [""] * 6)[:6]
        lines.append("| " + " | ".join(fields) + " |")
    if elapsed is not None:
        lines += ["", f"{elapsed:g} s from the start to the summary."]
    return lines


def parity_lines(rows: list[dict[str, Any]] | None) -> list[str]:
    """Per kind, precision and impl: cases ok of those run, the worst errors against
    their tolerances, the longest compile; then every failure and the skip reasons."""
    lines = ["", "## Parity: JAX against torch's module on the same device, TF32 off", ""]
    if rows is None:
        return [*lines, "No parity.json: the step did not run or wrote nothing."]
    lines += [
        "| kind | precision | impl | ok / run | worst forward (tol) | worst gradient (tol) "
        "| compile s (max) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if "ok" in r and "control" not in r.get("case", ""):
            groups.setdefault((r["kind"], r["precision"], r["impl"]), []).append(r)
    for (kind, precision, impl), rs in groups.items():
        ok = sum(r["ok"] for r in rs)
        measured = [r for r in rs if "forward_error" in r]
        cells = ["-", "-", "-"]
        if measured:
            fwd = max(measured, key=lambda r: r["forward_error"])
            grad = max(measured, key=lambda r: r["gradient_error"])
            cells = [
                f"{fwd['forward_error']:.1e} ({fwd['forward_tol']:.0e})",
                f"{grad['gradient_error']:.1e} ({grad['gradient_tol']:.0e})",
                f"{max(r.get('compile_s', 0) for r in measured):.1f}",
            ]
        lines.append(
            f"| {kind} | {precision} | {impl} | {ok} / {len(rs)} | " + " | ".join(cells) + " |"
        )
    controls = [r for r in rows if "control" in r.get("case", "") and "ok" in r]
    if controls:
        caught = sum(r["ok"] for r in controls)
        lines += [
            "",
            f"Negative controls (swapped gates must fail): {caught} of {len(controls)} caught.",
        ]
    failed = [r for r in rows if r.get("ok") is False]
    for r in failed:
        what = f"{r['kind']} {r['precision']} {r['impl']} {r['case']}"
        detail = r.get("error") or (
            f"forward {r['forward_error']:.2e}, gradient {r['gradient_error']:.2e}"
        )
        lines.append(f"- FAILED {what}: {detail}")
    reasons: dict[str, int] = {}
    for r in rows:
        if "skipped" in r:
            reasons[r["skipped"]] = reasons.get(r["skipped"], 0) + 1
    if reasons:
        lines += ["", "Skipped: " + "; ".join(f"{n} x {why}" for why, n in reasons.items())]
    return lines


def correct_impls(rows: list[dict[str, Any]] | None) -> set[str]:
    """The impls whose LSTM float32 parity rows ran and all passed."""
    result: dict[str, bool] = {}
    for r in rows or []:
        if r.get("kind") == "LSTM" and r.get("precision") == "float32" and "ok" in r:
            if "control" not in r.get("case", ""):
                result[r["impl"]] = result.get(r["impl"], True) and r["ok"]
    return {impl for impl, ok in result.items() if ok}


def bench_lines(name: str, bench: dict[str, Any] | None, correct: set[str]) -> list[str]:
    """One precision's benchmark: per case and mode torch's time and each impl's time,
    ratio to torch and compile time; the fastest impl that passed parity."""
    title = {"fp32": "float32, TF32 off", "tf32": "default precision (TF32 allowed)"}[name]
    lines = ["", f"## Benchmark, {title}: ms (JAX / torch), compile s", ""]
    if bench is None:
        return [*lines, f"No {BENCH_FILES[name]}: the step did not run or wrote nothing."]
    gemm = bench.get("gemm")
    if gemm:
        lines += [
            f"GEMM float32 n={gemm['n']}: jax {gemm['jax_gflops']:.4g}, torch "
            f"{gemm['torch_gflops']:.4g} GFLOP/s.",
            "",
        ]
    cases = bench.get("cases", [])
    impls = [i for i in BENCH_IMPLS if any(c.get("impl") == i for c in cases)]
    header = "| case | mode | torch ms | " + " | ".join(impls) + " | fastest correct |"
    lines += [header, "| --- | --- | ---: | " + " | ".join("---:" for _ in impls) + " | --- |"]
    table: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for c in cases:
        label = c["case"].split(" [")[0]
        table.setdefault((label, c["mode"]), {})[c.get("impl", "auto")] = c
    for (label, mode), by_impl in table.items():
        torch_ms = np.median([c["torch_s"] for c in by_impl.values()]) * 1e3
        cells = []
        for impl in impls:
            c = by_impl.get(impl)
            cells.append(
                "-"
                if c is None
                else f"{c['jax_s'] * 1e3:.3g} ({c['ratio']:.2f}x), {c['jax_compile_s']:.1f}"
            )
        ok = {i: c for i, c in by_impl.items() if i in correct}
        best = min(ok, key=lambda i: ok[i]["jax_s"]) if ok else "-"
        lines.append(f"| {label} | {mode} | {torch_ms:.3g} | " + " | ".join(cells) + f" | {best} |")
    for f in bench.get("failed", []):
        lines.append(f"- FAILED {f['case']} {f['mode']} [{f['impl']}]: {f['error'][:300]}")
    if bench.get("skipped"):
        lines.append(f"- {len(bench['skipped'])} runs left out at the deadline.")
    return lines


def summary(
    out_dir: Path, steps_tsv: Path | None, budget: float | None, elapsed: float | None = None
) -> str:
    """summary.md from the step files in ``out_dir``: the machine, the steps, parity, the
    two benchmark tables and the lecture's losses."""
    env = load(out_dir / "environment.json")
    parity = load(out_dir / "parity.json")
    lines = env_lines(env, budget) + steps_lines(steps_tsv, elapsed) + parity_lines(parity)
    correct = correct_impls(parity)
    for name, file in BENCH_FILES.items():
        lines += bench_lines(name, load(out_dir / file), correct)
    lines += ["", "## The lecture's training, both backends on the device", ""]
    lec = load(out_dir / "lecture.json")
    lines.append(lecture_lines(lec) if lec else "No lecture.json: the step did not finish.")
    text = "\n".join(lines) + "\n"
    (out_dir / "summary.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    env_p = sub.add_parser("env", help="record the machine and libraries")
    env_p.add_argument("out", type=Path)
    lec_p = sub.add_parser("lecture", help="the lecture's training in both backends")
    lec_p.add_argument("out", type=Path)
    lec_p.add_argument("--epochs", type=int, default=100)
    sum_p = sub.add_parser("summary", help="summary.md from the step files")
    sum_p.add_argument("out_dir", type=Path)
    sum_p.add_argument("--steps", type=Path, help="the steps' tab-separated records")
    sum_p.add_argument("--budget", type=float)
    sum_p.add_argument("--elapsed", type=float, help="seconds the steps took")
    args = p.parse_args(argv)
    if args.command == "env":
        info = environment(args.out)
        print(json.dumps({k: v for k, v in info.items() if k != "jax_environment"}, indent=1))
        return 0
    if args.command == "lecture":
        return 0 if lecture(args.out, args.epochs)["ok"] else 1
    print(summary(args.out_dir, args.steps, args.budget, args.elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``benchmarks/jit_benchmark.py --smoke``: the whole benchmark at tiny shapes, in a fresh
process (it pins threads and precision globally). No timing is asserted: what is checked
is that every part ran and reported coherent figures (FLOP counts against the formula
computed here, ratios against the times they come from), and that the JSON, the chart
and the README table are written. The same for ``benchmarks/workloads.py --smoke`` and
``benchmarks/gpu_check.sh --smoke --budget 60`` (tiny settings, on the CPU when no GPU is
there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "jit_benchmark.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), out, done.stdout


def forward_flops(T: int, B: int, I: int, H: int, layers: int, directions: int, gates: int) -> int:
    """2*G*B*T*H*(fan_in + H) per layer and direction (G gates: the LSTM's 4, the GRU's
    3); fan_in = D*H above layer 0."""
    return sum(
        directions * 2 * gates * B * T * H * ((I if layer == 0 else directions * H) + H)
        for layer in range(layers)
    )


@pytest.mark.slow
def test_every_part_ran(smoke: tuple[dict, Path, str]) -> None:
    results, _, _ = smoke
    assert results["machine"]["cpu"] and results["machine"]["cpus_usable"] >= 1
    assert {"jax", "jaxlib", "torch", "flax", "optax", "numpy"} <= set(results["versions"])
    assert results["gemm"]["limit_gflops"] == max(
        results["gemm"]["jax_gflops"], results["gemm"]["torch_gflops"]
    )
    modes = {(c["case"], c["mode"]) for c in results["cases"]}
    assert modes == {
        (case, mode)
        for case in ("tiny L1", "tiny L1 bi", "tiny L1 GRU")
        for mode in ("forward", "train")
    }
    assert results["lecture"]["steps"] == 3 * results["lecture"]["epochs"]
    cold = results["cold_start"]
    for kind in ("torch", "jax_cold_cache", "jax_warm_cache"):
        assert cold[kind]["process_s"] > cold[kind]["train_s"] > 0
    remat = results["remat"]
    assert remat[f"jax_remat{remat['chunk']}_peak_bytes"] < remat["jax_remat0_peak_bytes"]


@pytest.mark.slow
def test_figures_are_coherent(smoke: tuple[dict, Path, str]) -> None:
    results, _, _ = smoke
    limit = results["gemm"]["limit_gflops"]
    for c in results["cases"]:
        directions = 2 if c["bidirectional"] else 1
        gates = {"LSTM": 4, "GRU": 3}[c["kind"]]
        expected = forward_flops(c["T"], c["B"], c["I"], c["H"], c["layers"], directions, gates)
        assert c["flops"] == expected * (3 if c["mode"] == "train" else 1), c["case"]
        assert c["torch_s"] > 0 and c["jax_s"] > 0 and c["jax_compile_s"] > 0
        assert c["ratio"] == pytest.approx(c["jax_s"] / c["torch_s"])
        assert c["jax_share_of_limit"] == pytest.approx(c["flops"] / c["jax_s"] / 1e9 / limit)
        assert c["jax_peak_bytes"] > 0 and c["torch_peak_bytes"] > 0
        samples = c["samples"]
        assert len(samples["jax"]["samples_s"]) == results["settings"]["repeats"]


@pytest.mark.slow
def test_outputs_are_written(smoke: tuple[dict, Path, str]) -> None:
    results, out, stdout = smoke
    chart = out.with_suffix(".png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "targets (JAX / torch)" in stdout
    report = subprocess.run(
        [sys.executable, str(SCRIPT), "--report", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert report.returncode == 0, report.stderr
    for c in results["cases"]:
        assert f"| {c['case']} | {c['mode']} |" in report.stdout


@pytest.mark.slow
def test_workloads_smoke(tmp_path: Path) -> None:
    """``benchmarks/workloads.py --smoke``: every workload ran on both backends with
    coherent figures (rates from the times, ratios JAX / torch), the CPU named."""
    out = tmp_path / "workloads.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "workloads.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["machine"]["cpu"]
    lm = results["lm"]
    assert lm["tokens_per_call"] == lm["sizes"]["T"] * lm["sizes"]["B"]
    for part in (lm["train"], lm["inference"], results["classifier"]["train"]):
        assert part["ratio"] == pytest.approx(part["jax_s"] / part["torch_s"])
        assert part["jax_per_s"] > 0 and part["torch_per_s"] > 0
    stream = results["streaming"]
    assert stream["ratio"] == pytest.approx(stream["jax_lean_us"] / stream["torch_us"])
    assert stream["ratio_apply"] == pytest.approx(stream["jax_apply_us"] / stream["torch_us"])
    assert {t["target"] for t in results["targets"]} >= {"LM training step", "medium forward"}
    assert "| word LM training" in done.stdout


GPU_CHECK_FILES = (
    "environment.json",
    "parity.json",
    "parity.log",
    "bench_fp32.json",
    "bench_tf32.json",
    "lecture.json",
    "summary.md",
    "gpu_check.log",
)


@pytest.mark.slow
def test_gpu_check_smoke_within_its_budget(tmp_path: Path) -> None:
    """``benchmarks/gpu_check.sh --smoke --budget 60`` on a machine without a GPU: every
    step runs on the CPU inside the budget, writes exactly the eight files the device
    tool brings back, the parity rows that ran passed (and the swapped-gate control was
    caught), the benchmark rows carry their impl, the lecture's losses agree, and the
    summary is printed last. The steps need about 45 CPU seconds: a quiet machine fits
    them in 60 s, but the suite runs on 2 workers of 2 cores, so the test gives them
    180 s of wall time by default (``GPU_CHECK_SMOKE_BUDGET`` sets another)."""
    budget = int(os.environ.get("GPU_CHECK_SMOKE_BUDGET", "180"))
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    script = str(ROOT / "benchmarks" / "gpu_check.sh")
    start = time.perf_counter()
    done = subprocess.run(
        ["bash", script, "--smoke", "--budget", str(budget), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=budget + 60,
        cwd=ROOT,
        env=env,
    )
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert wall < budget + 10, wall  # the budget, and the summary's own few seconds
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GPU_CHECK_FILES)
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert {"jax", "torch", "flax"} <= set(environment["versions"])
    rows = json.loads((tmp_path / "parity.json").read_text())
    ran = [r for r in rows if "ok" in r]
    assert ran and all(r["ok"] for r in ran), [r for r in ran if not r["ok"]]
    impls = {r["impl"] for r in ran if r["kind"] == "LSTM" and r["precision"] == "float32"}
    assert {"scan", "custom_vjp", "hoisted", "wavefront"} <= impls
    assert any("control" in r["case"] for r in ran)  # a swapped gate failed the tolerance
    assert any(r["precision"] == "bfloat16" and r["ran_in_bfloat16"] for r in ran)
    if environment["device"] == "cpu":
        cudnn = [r for r in rows if r.get("impl") == "cudnn"]
        assert cudnn and all("GPU only" in r["skipped"] for r in cudnn)
    benches = {p: json.loads((tmp_path / f"bench_{p}.json").read_text()) for p in ("fp32", "tf32")}
    for bench in benches.values():
        assert bench["cases"] and not bench["failed"] and not bench["skipped"]
        assert all(c["jax_s"] > 0 and c["torch_s"] > 0 for c in bench["cases"])
    fp32_impls = {c["impl"] for c in benches["fp32"]["cases"]}
    assert {"custom_vjp", "wavefront"} <= fp32_impls  # several impls in one run, labelled
    assert all(f"[{c['impl']}]" in c["case"] for c in benches["fp32"]["cases"])
    assert benches["tf32"]["settings"]["tf32"] and not benches["fp32"]["settings"]["tf32"]
    lecture = json.loads((tmp_path / "lecture.json").read_text())
    assert lecture["ok"] and len(lecture["jax_losses"]) == lecture["epochs"]
    summary = (tmp_path / "summary.md").read_text()
    for heading in ("## Steps", "## Parity", "## Benchmark, float32", "## The lecture"):
        assert heading in summary
    assert "timed out" not in summary and "FAILED" not in summary
    assert done.stdout.rstrip().endswith(summary.rstrip().splitlines()[-1])


@pytest.mark.slow
def test_gpu_check_plan_fits_its_budget_and_the_readme() -> None:
    """``gpu_check.sh --plan``: the steps' caps, in order of value, sum to at most the
    budget (8 minutes on the GPU, 60 s for the smoke run), and the plan in
    ``benchmarks/gpu/README.md`` states the same seconds."""
    script = str(ROOT / "benchmarks" / "gpu_check.sh")
    order = ["env", "parity", "bench-fp32", "bench-tf32", "lecture", "summary"]
    readme = (ROOT / "benchmarks" / "gpu" / "README.md").read_text()
    for flags, budget in ((["--budget", "480"], 480), (["--smoke", "--budget", "60"], 60)):
        done = subprocess.run(
            ["bash", script, "--plan", *flags], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        caps = dict(line.split()[:2] for line in done.stdout.splitlines())
        assert list(caps) == [*order, "margin"]
        seconds = {step: int(s) for step, s in caps.items()}
        assert sum(seconds[s] for s in order) + seconds["margin"] == budget
        assert seconds["margin"] >= 0.05 * budget  # room for kill grace and teardown
        if budget == 480:
            for step in order:
                assert f"| {step} |" in readme
                row = next(line for line in readme.splitlines() if line.startswith(f"| {step} |"))
                assert f"| {seconds[step]} (" in row, (step, seconds[step], row)

"""``benchmarks/jit_benchmark.py --smoke``: the whole benchmark at tiny shapes, in a fresh
process (it pins threads and precision globally). No timing is asserted: what is checked
is that every part ran and reported coherent figures (FLOP counts against the formula
computed here, ratios against the times they come from), and that the JSON, the chart
and the README table are written. The same for ``benchmarks/workloads.py --smoke`` and
``benchmarks/gpu_check.sh`` (tiny settings, on the CPU when no GPU is there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def forward_flops(T: int, B: int, I: int, H: int, layers: int, directions: int) -> int:
    """8*B*T*H*(fan_in + H) per layer and direction; fan_in = D*H above layer 0."""
    return sum(
        directions * 8 * B * T * H * ((I if layer == 0 else directions * H) + H)
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
        (case, mode) for case in ("tiny L1", "tiny L1 bi") for mode in ("forward", "train")
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
        expected = forward_flops(c["T"], c["B"], c["I"], c["H"], c["layers"], directions)
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


@pytest.mark.slow
def test_gpu_check_script_degrades_to_cpu(tmp_path: Path) -> None:
    """``benchmarks/gpu_check.sh`` with tiny settings on a machine without a GPU: it says
    so, every step succeeds on the CPU and writes its JSON and logs to the folder given."""
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_CHECK_SMOKE": "1",
        "GPU_CHECK_IMPLS": "wavefront",
        "GPU_CHECK_PRECISIONS": "bf16",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert {"jax", "torch", "flax", "optax", "device"} <= set(environment)
    summary = (tmp_path / "summary.txt").read_text()
    if environment["device"] == "cpu":
        assert "no GPU visible" in summary
    assert "FAILED" not in summary
    junit = (tmp_path / "parity.xml").read_text()
    assert 'failures="0"' in junit and 'errors="0"' in junit and 'tests="0"' not in junit
    rows = json.loads((tmp_path / "device_parity.json").read_text())
    assert rows and all(r["ok"] for r in rows)
    bench = json.loads((tmp_path / "jit_wavefront_bf16.json").read_text())
    assert bench["settings"]["impl"] == "wavefront"
    assert bench["settings"]["compute_dtype"] == "bfloat16"
    assert bench["cases"]

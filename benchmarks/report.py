"""Reporting for ``benchmarks/jit_benchmark.py``: the targets, the terminal table, the
chart of the ratios and the README's markdown table, all from the results dict (the
JSON file's content). Needs no JAX or torch, so ``--report FILE`` starts fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MB = 2**20


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value (ratios JAX / torch)."""
    rows = []

    def add(name: str, value: float | None, limit: float) -> None:
        if value is not None:
            rows.append({"target": name, "value": value, "limit": limit, "met": value <= limit})

    cases = results.get("cases", [])
    for shape in ("medium", "long"):
        for mode in ("forward", "train"):
            ratios = [c["ratio"] for c in cases if c["shape"] == shape and c["mode"] == mode]
            add(f"{shape} {mode}: worst ratio", max(ratios) if ratios else None, 1.0)
            mems = [
                c["jax_peak_bytes"] / c["torch_peak_bytes"]
                for c in cases
                if c["shape"] == shape and c["mode"] == "train" and mode == "train"
                if c["jax_peak_bytes"] and c["torch_peak_bytes"]
            ]
            add(f"{shape} train: worst peak memory JAX/torch", max(mems) if mems else None, 1.0)
    seed = [c["ratio"] for c in cases if c["shape"] == "seed" and c["mode"] == "train"]
    add("seed train step ratio (L1)", seed[0] if seed else None, 0.07)
    if "lecture" in results:
        add("lecture training, compiled: ratio", results["lecture"]["ratio"], 0.0033)
    if "cold_start" in results:
        cs = results["cold_start"]
        add("cold start, warm cache: fresh process", cs["ratio_warm_process"], 1.0)
    if "remat" in results:
        r = results["remat"]
        chunk = r["chunk"]
        if r["jax_remat0_peak_bytes"] and r[f"jax_remat{chunk}_peak_bytes"]:
            ratio = r[f"jax_remat{chunk}_peak_bytes"] / r["jax_remat0_peak_bytes"]
            add(f"T={r['T']} training memory, remat={chunk} / no remat", ratio, 0.5)
    return rows


def fmt_bytes(n: int | None) -> str:
    return "-" if not n else f"{n / MB:.1f}"


def print_table(results: dict[str, Any]) -> None:
    m = results["machine"]
    gemm = results.get("gemm", {})
    print(
        f"\n{m['cpu']} ({m['cpus_usable']} CPUs usable), GPU: {m['gpu'] or 'none'}; "
        f"torch threads {m['torch_threads']}"
    )
    if gemm:
        print(
            f"GEMM float32 n={gemm['n']}: jax {gemm['jax_gflops']:.0f} GFLOP/s, "
            f"torch {gemm['torch_gflops']:.0f} GFLOP/s (limit {gemm['limit_gflops']:.0f})"
        )
    header = (
        f"{'case':<16}{'mode':<8}{'torch ms':>10}{'jax ms':>10}{'ratio':>8}{'compile s':>10}"
        f"{'GF/s torch':>12}{'GF/s jax':>10}{'MB torch':>10}{'MB jax':>9}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for c in results.get("cases", []):
        print(
            f"{c['case']:<16}{c['mode']:<8}{c['torch_s'] * 1e3:>10.3f}{c['jax_s'] * 1e3:>10.3f}"
            f"{c['ratio']:>8.3f}{c['jax_compile_s']:>10.2f}"
            f"{c['torch_gflops']:>6.1f} ({c['torch_share_of_limit']:>3.0%})"
            f"{c['jax_gflops']:>5.1f}({c['jax_share_of_limit']:>3.0%})"
            f"{fmt_bytes(c['torch_peak_bytes']):>10}{fmt_bytes(c['jax_peak_bytes']):>9}"
        )
    if "lecture" in results:
        lec = results["lecture"]
        print(
            f"\nlecture training ({lec['steps']} steps): torch lecture loop "
            f"{lec['torch_lecture_loop_s'] * 1e3:.1f} ms, lstm_torch.fit "
            f"{lec['torch_fit_s'] * 1e3:.1f} ms; lstm_jax.fit {lec['jax_s'] * 1e3:.2f} ms "
            f"(first call {lec['jax_first_call_s']:.2f} s): ratio {lec['ratio']:.4f}"
        )
    if "cold_start" in results:
        cs = results["cold_start"]
        for k in ("torch", "jax_cold_cache", "jax_warm_cache", "jax_no_cache"):
            r = cs[k]
            if r is None:
                continue
            print(
                f"cold start {k:<15} process {r['process_s']:.2f} s, import "
                f"{r['import_s']:.2f} s, training {r['train_s']:.2f} s"
            )
    if "remat" in results:
        r = results["remat"]
        chunk = r["chunk"]
        print(
            f"T={r['T']} (B={r['B']}, I={r['I']}, H={r['H']}) training step: JAX "
            f"{fmt_bytes(r['jax_remat0_peak_bytes'])} MB, remat={chunk} "
            f"{fmt_bytes(r[f'jax_remat{chunk}_peak_bytes'])} MB, torch "
            f"{fmt_bytes(r['torch_peak_bytes'])} MB"
        )
    print("\ntargets (JAX / torch):")
    for t in results.get("targets", []):
        print(
            f"  {'met ' if t['met'] else 'MISS'} {t['target']}: {t['value']:.4g} (<= {t['limit']})"
        )


def save_chart(results: dict[str, Any], path: Path) -> None:
    """Horizontal bars of the ratios JAX / torch (log scale; left of 1 = JAX faster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = [], [], []
    palette = {"forward": "tab:blue", "train": "tab:orange", "lecture": "tab:green"}
    for c in results.get("cases", []):
        labels.append(f"{c['case']} {c['mode']}")
        values.append(c["ratio"])
        colors.append(palette[c["mode"]])
    if "lecture" in results:
        labels.append("lecture training")
        values.append(results["lecture"]["ratio"])
        colors.append(palette["lecture"])
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(labels) + 1.5))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlim(right=max([*values, 1.0]) * 2.5)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in palette.values()]
    ax.legend(handles, list(palette), fontsize=8, loc="lower right")
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:.3g}", va="center", fontsize=7)
    m = results["machine"]
    ax.set_title(
        f"time JAX / time torch (< 1: JAX faster)\n{m['gpu'] or m['cpu']}, "
        f"CPUs used: {m['cpus_usable']}, float32",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    """The README's results table from a JSON file."""
    m, v = results["machine"], results["versions"]
    lines = [
        f"Machine: {m['gpu'] or m['cpu']}, CPUs used: {m['cpus_usable']}; jax {v['jax']}, "
        f"torch {v['torch']}; `{results['settings']['command']}`.",
        "",
        "| case | mode | torch ms | JAX ms | JAX / torch | JAX compile s | JAX GFLOP/s "
        "(share of GEMM) | peak MB torch / JAX |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in results.get("cases", []):
        lines.append(
            f"| {c['case']} | {c['mode']} | {c['torch_s'] * 1e3:.3g} | {c['jax_s'] * 1e3:.3g} "
            f"| **{c['ratio']:.2f}** | {c['jax_compile_s']:.2f} | {c['jax_gflops']:.1f} "
            f"({c['jax_share_of_limit']:.0%}) | {fmt_bytes(c['torch_peak_bytes'])} / "
            f"{fmt_bytes(c['jax_peak_bytes'])} |"
        )
    if "lecture" in results:
        lec = results["lecture"]
        lines.append(
            f"| lecture training | {lec['steps']} steps | {lec['torch_s'] * 1e3:.3g} "
            f"| {lec['jax_s'] * 1e3:.3g} | **{lec['ratio']:.4f}** "
            f"| {lec['jax_first_call_s']:.2f} | | |"
        )
    lines += ["", "| target | measured | limit | |", "| --- | ---: | ---: | --- |"]
    for t in results.get("targets", []):
        verdict = "met" if t["met"] else "missed"
        lines.append(f"| {t['target']} | {t['value']:.4g} | {t['limit']} | {verdict} |")
    return "\n".join(lines)

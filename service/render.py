"""Rendering for people: GiB at the edge only, rich tables. No arithmetic beyond unit conversion."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from estimator.errors import Problem

GIB = float(1 << 30)


def gib(n: float | int | None) -> str:
    return "-" if n is None else f"{n / GIB:,.2f} GiB"


def print_problems(console: Console, problems: list[Problem]) -> None:
    console.print(f"[bold red]error:[/] {len(problems)} problem(s) with the input")
    for p in problems:
        console.print(f"  - [bold]{p.field or '(input)'}[/]: {p.message}")


def estimate_table(est: dict[str, Any]) -> Table:
    mem = est["memory"]
    spec = est["spec"]
    title = f"{spec['model'] if isinstance(spec['model'], str) else 'inline model'} · {spec['method']} · " \
            f"batch {spec['batch_size']} × seq {spec['seq_len']}"  # fmt: skip
    t = Table(title=title, show_lines=False)
    t.add_column("term")
    t.add_column("bytes", justify="right")
    t.add_column("GiB", justify="right")
    for key in ("weights", "quant_constants", "trainable_params", "gradients", "optimizer_states",
                "activations", "transient"):  # fmt: skip
        t.add_row(key, f"{mem[key]:,}", gib(mem[key]))
    t.add_section()
    t.add_row(f"peak_allocated ({mem['peak_phase']})", f"{mem['peak_allocated']:,}", gib(mem["peak_allocated"]))
    t.add_row(
        f"peak_reserved (slack {mem['allocator_slack']:.0%})",
        f"{mem['peak_reserved']:,}",
        gib(mem["peak_reserved"]),
    )
    t.add_row("cuda_context", f"{mem['cuda_context']:,}", gib(mem["cuda_context"]))
    if mem.get("paged_optimizer_states"):
        t.add_row("paged optimizer states", f"{mem['paged_optimizer_states']:,}", gib(mem["paged_optimizer_states"]))
    t.add_row("[bold]peak_device[/]", f"{mem['peak_device']:,}", f"[bold]{gib(mem['peak_device'])}[/]")
    return t


def phase_table(est: dict[str, Any]) -> Table:
    t = Table(title="by phase (GiB)")
    t.add_column("phase")
    cols = ("weights", "quant_constants", "trainable_params", "gradients", "optimizer_states", "activations",
            "transient", "total")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="right")
    for ph, v in est["memory"]["phases"].items():
        mark = " *" if ph == est["memory"]["peak_phase"] else ""
        t.add_row(ph + mark, *[f"{v[c] / GIB:.2f}" for c in cols])
    return t


def print_estimate(console: Console, est: dict[str, Any]) -> None:
    console.print(estimate_table(est))
    console.print(phase_table(est))
    p = est["params"]
    console.print(f"params: total {p['total']:,} · trainable {p['trainable']:,} · quantized {p['quantized']:,}")
    if est.get("gpu"):
        verdict = "[green]fits[/]" if est["fits"] else "[red]does not fit[/]"
        lf = est.get("largest_fit") or {}
        console.print(
            f"{est['gpu']['id']}: usable {gib(est['gpu']['usable_bytes'])} → {verdict}, headroom "
            f"{gib(est['headroom_bytes'])}; largest batch at this seq_len: {lf.get('batch_size')}, "
            f"largest seq_len at this batch: {lf.get('seq_len')}"
        )
    tp = est["throughput"]
    if tp["tokens_per_second"]:
        cal = "calibrated" if tp["calibrated"] else "uncalibrated"
        console.print(
            f"throughput: {tp['tokens_per_second']:,.0f} tokens/s per GPU at MFU {tp['mfu']:.0%} ({cal}); "
            f"{tp['flops_per_token'] / 1e9:,.1f} GFLOP/token"
        )
    for a in est["assumptions"]:
        console.print(f"[dim]· {a}[/]")

"""``estimate cost`` and ``estimate decide``: the programme's bill and the gate before it.

    estimate cost --model meta-llama/Llama-3.1-8B --method lora --gpu h100-sxm-80gb \\
        --examples 10000 --tokens-per-example 1000 --epochs 3 [--price-tier spot] [--json]
    estimate cost --spec programme.yaml [--prices my_prices.json]
    estimate decide --goal "answer in our brand tone, as JSON" --gap behaviour \\
        --prompting-tried --has-eval-set [--json]

A spec file holds ``{"training": {TrainingSpec fields}, "programme": {...}}``; flags given
explicitly override it. Bad input exits with code 2 and lists every problem. The commands only
translate: the arithmetic lives in ``estimator.tco`` and ``estimator.decision``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from estimator.decision import Decision, Gap, Route, decide
from estimator.errors import Problem, SpecError
from estimator.tco import CostReport, PriceTier, load_price_file, tco


def register(app: typer.Typer) -> None:
    """Add ``cost`` and ``decide`` to the ``estimate`` app."""
    app.command("cost")(cost)
    app.command("decide")(decide_command)


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``data[path]`` (creating nested objects) unless ``value`` is None."""
    if value is None:
        return
    for key in path[:-1]:
        nxt = data.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            data[key] = nxt
        data = nxt
    data[path[-1]] = value


def build_cost_request(spec_file: Path | None, flags: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """A raw cost request from a spec file and/or flags (keyed by their path in the request)."""
    from service.cli import load_spec_file

    data: dict[str, Any] = load_spec_file(spec_file) if spec_file else {}
    for path, value in flags.items():
        _set(data, path, value)
    return data


def cost(
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help='YAML or JSON: {"training": {...}, "programme": {...}}.')
    ] = None,
    model: Annotated[str | None, typer.Option(help="Catalog id (case-insensitive) or config.json path.")] = None,
    method: Annotated[str | None, typer.Option(help="full | lora | qlora")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU id, e.g. h100-sxm-80gb.")] = None,
    num_gpus: Annotated[int | None, typer.Option(help="Data-parallel GPUs.")] = None,
    sharding: Annotated[str | None, typer.Option(help="ddp | fsdp | zero1-3 (needed for > 1 GPU).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Micro-batch per GPU.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence.")] = None,
    examples: Annotated[int | None, typer.Option(help="Training examples (default 10,000).")] = None,
    tokens_per_example: Annotated[int | None, typer.Option(help="Mean tokens per example (1,000).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data (3).")] = None,
    gpu_price: Annotated[
        float | None, typer.Option(help="USD per GPU-hour; default: the catalog price for the tier.")
    ] = None,
    price_tier: Annotated[
        PriceTier | None, typer.Option(help="on-demand (catalog 'typical') | spot (catalog 'low').")
    ] = None,
    horizon_months: Annotated[int | None, typer.Option(help="Months the bill covers (12).")] = None,
    prices: Annotated[
        Path | None, typer.Option("--prices", help="JSON price file shaped like pricing.json (overrides).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bill and alternatives as JSON.")] = False,
) -> None:
    """The whole cost of a fine-tuning programme over a horizon, beside hosted and retrieval options."""
    from service.cli import console, fail

    problems: list[Problem] = []
    try:
        raw = build_cost_request(
            spec_file,
            {
                ("training", "model"): model,
                ("training", "method"): method,
                ("training", "gpu"): gpu,
                ("training", "num_gpus"): num_gpus,
                ("training", "sharding"): sharding,
                ("training", "batch_size"): batch_size,
                ("training", "seq_len"): seq_len,
                ("programme", "dataset", "examples"): examples,
                ("programme", "dataset", "tokens_per_example"): tokens_per_example,
                ("programme", "dataset", "epochs"): epochs,
                ("programme", "compute", "gpu_price_per_hour"): gpu_price,
                ("programme", "compute", "price_tier"): price_tier.value if price_tier else None,
                ("programme", "horizon_months"): horizon_months,
            },
        )
    except SpecError as exc:
        fail(exc.problems)
    if prices is not None:
        try:
            raw["prices"] = {**(raw.get("prices") or {}), **load_price_file(prices)}
        except SpecError as exc:
            problems.extend(Problem("--prices", p.message) for p in exc.problems)
    try:
        report = tco(raw)
    except SpecError as exc:
        problems.extend(exc.problems)
    if problems:
        fail(problems)
    if as_json:
        sys.stdout.write(json.dumps(report.model_dump(mode="json"), indent=1) + "\n")
        return
    print_report(console, report)


def decide_command(
    goal: Annotated[str | None, typer.Option(help="What the model should do better, in words.")] = None,
    route: Annotated[Route | None, typer.Option(help="The route, when you know it.")] = None,
    gap: Annotated[Gap | None, typer.Option(help="Is the gap knowledge or behaviour?")] = None,
    prompting_tried: Annotated[
        bool | None,
        typer.Option("--prompting-tried/--no-prompting-tried", help="Prompting and retrieval exhausted?"),
    ] = None,
    has_eval_set: Annotated[
        bool | None, typer.Option("--has-eval-set/--no-has-eval-set", help="Is there a held-out eval set?")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Should this gap be closed by fine-tuning, and which kind? Asks instead of guessing."""
    from service.cli import console, fail

    try:
        decision = decide(
            {
                "goal": goal,
                "route": route,
                "gap": gap,
                "prompting_tried": prompting_tried,
                "has_eval_set": has_eval_set,
            }
        )
    except SpecError as exc:
        fail(exc.problems)
    if as_json:
        sys.stdout.write(json.dumps(decision.model_dump(mode="json"), indent=1) + "\n")
        return
    print_decision(console, decision)


# --------------------------------------------------------------------------------------------
# Rendering for people (no arithmetic beyond formatting)


def _usd(v: Any) -> str:
    return f"${float(v):,.2f}"


def _usd0(v: Any) -> str:
    return f"${float(v):,.0f}"


def bill_table(report: CostReport) -> Table:
    b, c = report.bill, report.bill.compute
    t = Table(title=f"{c.model} · {c.method.value} · {c.num_gpus} x {c.gpu} · {b.horizon_months} months")
    t.add_column("line")
    for col in ("quantity", "unit", "unit price", "amount"):
        t.add_column(col, justify="left" if col == "unit" else "right")
    for recurring, label, subtotal in (
        (False, "one-time", b.one_time_total),
        (True, "recurring", b.recurring_total),
    ):
        t.add_row(f"[bold]{label}[/]", "", "", "", "")
        for ln in b.lines:
            if ln.recurring is recurring:
                t.add_row(f"  {ln.name}", f"{ln.quantity:,.2f}", ln.unit, f"{ln.unit_price:,.4g}", _usd(ln.amount))
        t.add_row(f"  [italic]{label} total[/]", "", "", "", _usd(subtotal))
        t.add_section()
    t.add_row("[bold]total[/]", "", "", "", f"[bold]{_usd(b.total)}[/]")
    return t


def alternatives_table(report: CostReport) -> Table:
    t = Table(title="side by side")
    t.add_column("option")
    for col in ("one-time", "recurring", "total", "vs fine-tuning"):
        t.add_column(col, justify="right")
    b = report.bill
    t.add_row("fine-tuning on your GPUs", _usd0(b.one_time_total), _usd0(b.recurring_total), _usd0(b.total), "-")
    for a in report.alternatives:
        if not a.available:
            t.add_row(a.name, "-", "-", "-", f"n/a: {a.reason}")
            continue
        diff = a.total - b.total
        t.add_row(
            a.name,
            _usd0(a.one_time_total),
            _usd0(a.recurring_total),
            _usd0(a.total),
            f"{'+' if diff >= 0 else '-'}{_usd0(abs(diff))}",
        )
    return t


def print_report(console: Console, report: CostReport) -> None:
    b, c = report.bill, report.bill.compute
    console.print(bill_table(report))
    calibrated = "calibrated" if c.calibrated else "[yellow]uncalibrated[/]"
    console.print(
        f"GPU-hours per run: [bold]{b.gpu_hours_per_run:,.2f}[/] ({c.tokens_per_run:,} tokens at "
        f"{c.tokens_per_second_per_gpu:,.0f} tokens/s per GPU, MFU {c.mfu:.0%} {calibrated}); "
        f"wall clock {b.wall_clock_hours_per_run:,.2f} h per run, {b.wall_clock_days_per_release:,.2f} days "
        f"per release; GPU compute is {b.gpu_compute_share:.1%} of the total."
    )
    console.print(f"GPU price: ${c.gpu_price_per_hour:g}/GPU-h ({c.price_tier.value}, as of {c.price_as_of or 'n/a'})")
    console.print(alternatives_table(report))
    for a in b.assumptions:
        console.print(f"  - {a}")


def print_decision(console: Console, d: Decision) -> None:
    if d.status == "needs_input":
        console.print("[bold yellow]need more input[/]")
    else:
        go = "" if d.proceed else " [yellow](not yet: see below)[/]"
        console.print(f"[bold]recommendation:[/] {d.recommendation} · {d.label}{go}")
    for title, items in (
        ("why", d.reasons),
        ("would change it", d.would_change),
        ("answer next", d.questions),
    ):
        if items:
            console.print(f"[bold]{title}:[/]")
            for item in items:
                console.print(f"  - {item}")

"""``estimate calibrate``: run calibration sweeps, fit the environment coefficients, report residuals.

    estimate calibrate run --backend cuda --sweep quick|standard --gpu-minutes 8 --out DIR [--dry-run]
    estimate calibrate run --backend cpu --sweep smoke|ci|full --out DIR
    estimate calibrate fit [--records DIR] [--out FILE]
    estimate calibrate report [--records DIR] [--json]

Records land in ``<out>/<gpu-slug>/`` (CPU: ``<out>/cpu/``), one JSON file per run. The heavy
libraries (torch, transformers, peft, bitsandbytes, pynvml) are imported inside the commands only.
Exit codes: 0 success, 2 bad input or no GPU for a CUDA sweep, 1 an unexpected failure.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECORDS = ROOT / "calibration_data" / "records"
CUDA_SWEEPS = ("quick", "standard")
CPU_SWEEPS_FALLBACK = ("smoke", "ci", "full")

console = Console()
err_console = Console(stderr=True)

calibrate_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Measure real steps and fit the estimator's environment terms.",
)


class Backend(StrEnum):
    cuda = "cuda"
    cpu = "cpu"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def cpu_sweep_names() -> tuple[str, ...]:
    """The CPU sweeps ``profiler.sweeps`` offers (its ``SWEEPS`` table), or the documented three."""
    try:
        from profiler import sweeps
    except ImportError:
        return CPU_SWEEPS_FALLBACK
    table = getattr(sweeps, "SWEEPS", None)
    return tuple(table) if isinstance(table, dict) else CPU_SWEEPS_FALLBACK


def run_cpu_sweep(sweep: str, out_root: Path) -> list[dict[str, Any]]:
    """``profiler.sweeps.run_sweep`` into ``out_root/cpu``, then fill each record's prediction
    (the estimator side of the record: ``device: cpu``) and rewrite it atomically."""
    from profiler import sweeps
    from profiler.fit import predict_record
    from profiler.record import write_record

    out_dir = out_root / "cpu"
    records: list[dict[str, Any]] = sweeps.run_sweep(sweep, out_dir, progress=lambda line: err_console.print(line))
    for record in records:
        if record.get("prediction") is None:
            record["prediction"] = predict_record(record)
            write_record(record, out_dir)
    return records


@calibrate_app.command("run")
def run_command(
    backend: Annotated[Backend, typer.Option(help="cuda (GPU sweep) | cpu (profiler.sweeps)")] = Backend.cuda,
    sweep: Annotated[str, typer.Option(help="cuda: quick | standard; cpu: smoke | ci | full")] = "quick",
    gpu_minutes: Annotated[float, typer.Option(help="Time budget of a CUDA sweep, minutes.")] = 8.0,
    out: Annotated[Path, typer.Option(help="Records root; runs go to <out>/<gpu-slug>/.")] = DEFAULT_RECORDS,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="CUDA: print the plan, run nothing.")] = False,
    gpu: Annotated[
        str | None, typer.Option(help="Catalog GPU id to plan for with --dry-run (default: the device).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan / summary as JSON.")] = False,
) -> None:
    """Run a calibration sweep: one record per run, OOMs recorded as data points."""
    if backend is Backend.cpu:
        names = cpu_sweep_names()
        if sweep not in names:
            raise _fail(f"--backend cpu takes --sweep {' | '.join(names)}, not {sweep!r}")
        try:
            records = run_cpu_sweep(sweep, out)
        except ImportError as exc:
            raise _fail(f"the CPU sweep needs the profiler extra (torch, transformers, peft): {exc}") from exc
        failed = sum(1 for r in records if r.get("error"))
        _summary(
            {
                "backend": "cpu",
                "sweep": sweep,
                "records": len(records),
                "failed": failed,
                "out": str(out / "cpu"),
            },
            as_json,
        )
        return
    if sweep not in CUDA_SWEEPS:
        raise _fail(f"--backend cuda takes --sweep {' | '.join(CUDA_SWEEPS)}, not {sweep!r}")
    if gpu_minutes <= 0:
        raise _fail("--gpu-minutes must be positive")
    if dry_run:
        _dry_run(sweep, gpu_minutes, gpu, as_json)
        return
    try:
        from profiler.probes import cuda_available
    except ImportError as exc:
        raise _fail(f"a CUDA sweep needs the profiler extra: {exc}") from exc
    if not cuda_available():
        raise _fail("no CUDA GPU here (torch.cuda.is_available() is False); try --dry-run to see the plan")
    from profiler.cuda_sweep import run_cuda_sweep

    plan, result = run_cuda_sweep(sweep, out, gpu_minutes=gpu_minutes, progress=lambda line: err_console.print(line))
    ooms = sum(1 for r in result.records if r.get("oom"))
    errors = sum(1 for r in result.records if r.get("error") and not r.get("oom"))
    _summary(
        {
            "backend": "cuda",
            "sweep": sweep,
            "gpu_id": plan.gpu_id,
            "planned": len(plan.runs),
            "records": len(result.records),
            "oom": ooms,
            "errors": errors,
            "skipped": [f"{n}: {why}" for n, why in result.skipped],
            "elapsed_s": round(result.elapsed_s, 1),
            "out": str(result.paths[0].parent) if result.paths else str(out),
        },
        as_json,
    )


def _dry_run(sweep: str, gpu_minutes: float, gpu: str | None, as_json: bool) -> None:
    from estimator.gpus import find_gpu
    from profiler.cuda_sweep import plan_sweep

    found = find_gpu(gpu) if gpu else None
    if gpu and found is None:
        raise _fail(f"unknown GPU {gpu!r} (see `estimate gpus`)")
    plan = plan_sweep(
        sweep,
        gpu_minutes * 60.0,
        gpu_id=found.id if found else None,
        usable_bytes=found.usable_bytes if found else None,
    )
    if as_json:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=1) + "\n")
        return
    t = Table(
        title=f"{sweep} sweep on {plan.gpu_id or 'an unknown GPU'}: {len(plan.runs)} runs, "
        f"~{plan.predicted_s:.0f}s of {plan.budget_s:.0f}s"
    )
    for c in ("run", "tokens", "predicted device GiB", "fits", "cost s"):
        t.add_column(c, justify="left" if c == "run" else "right")
    for r in plan.runs:
        t.add_row(
            r.name,
            str(r.tokens),
            f"{r.predicted_peak_device / 2**30:.1f}",
            "yes" if r.predicted_fits else "no (past OOM)",
            f"{r.cost_s + r.build_cost_s:.1f}",
        )
    console.print(t)
    if plan.dropped:
        console.print(f"{len(plan.dropped)} runs left out by the budget")


def _summary(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    for k, v in data.items():
        if isinstance(v, list):
            console.print(f"{k}: {len(v)}")
            for item in v:
                console.print(f"  {item}")
        else:
            console.print(f"{k}: {v}")


@calibrate_app.command("fit")
def fit_command(
    records: Annotated[Path, typer.Option(help="Records root (searched recursively).")] = DEFAULT_RECORDS,
    out: Annotated[Path | None, typer.Option(help="Fitted file (default: calibration_data/fitted.json).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fitted file.")] = False,
) -> None:
    """Fit CUDA context, allocator slack and MFU per GPU; write fitted.json with residuals."""
    from profiler.fit import fit_and_write

    try:
        data, path, loaded = fit_and_write(records, out)
    except FileNotFoundError as exc:
        raise _fail(f"{exc}; nothing written") from exc
    for problem in loaded.problems:
        err_console.print(f"[yellow]skipped[/yellow] {problem}")
    if as_json:
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    t = Table(title=f"fitted {path} ({data['records']} records, hash {str(data['records_hash'])[:12]})")
    for c in ("gpu", "records", "context MiB", "slack", "mfu", "stack"):
        t.add_column(c)
    for gid, e in data["gpus"].items():
        mfu = ", ".join(f"{k} {v:.1%}" for k, v in e["mfu"].items()) or "-"
        t.add_row(
            gid,
            str(e["records"]),
            f"{e['cuda_context_bytes'] / 2**20:.0f}",
            f"{e['allocator_slack']:.3f}",
            mfu,
            str(e.get("stack", "")),
        )
    console.print(t)
    _print_residuals(data["residuals"])


def _pct(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1%}"


def _print_residuals(res: dict[str, dict[str, dict[str, Any]]]) -> None:
    t = Table(title="residuals: (predicted - measured) / measured")
    for c in ("group", "metric", "n", "median |err|", "p90 |err|", "median err"):
        t.add_column(c, justify="left" if c in ("group", "metric") else "right")
    for gid, metrics in res.items():
        for metric, s in metrics.items():
            if "." in metric and not metric.startswith("phase."):
                continue  # categories: see `estimate calibrate report`
            t.add_row(gid, metric, str(s["n"]), _pct(s["median_abs_error"]), _pct(s["p90"]), _pct(s["median_error"]))
    console.print(t)


@calibrate_app.command("report")
def report_command(
    records: Annotated[Path, typer.Option(help="Records root (searched recursively).")] = DEFAULT_RECORDS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Per GPU predicted vs measured (current estimator and fitted file), per phase and category."""
    from profiler.fit import load_records, report

    loaded = load_records(records)
    data = report(loaded)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    t = Table(title=f"predicted vs measured ({data['records']} records under {records})")
    for c in (
        "gpu",
        "n",
        "|err| allocated",
        "|err| device",
        "|err| step time",
        "calibration",
        "fit verdicts",
    ):
        t.add_column(c, justify="left" if c in ("gpu", "calibration", "fit verdicts") else "right")
    for gid, g in data["gpus"].items():
        v = g.get("fit_verdicts")
        verdict = "-" if not v else f"{v['oom']} OOM of {v['runs']}; false fit {v['false_fit']}"
        t.add_row(
            gid,
            str(g["n"]),
            _pct(g["median_abs_error_allocated"]),
            _pct(g["median_abs_error_device"]),
            _pct(g["median_abs_error_step_time"]),
            str(g["calibration"]),
            verdict,
        )
    console.print(t)
    for gid, phases in data["phases"].items():
        pt = Table(title=f"{gid}: per phase, median |err| (categories as a share of the phase peak)")
        cats = ("weights", "trainable_params", "gradients", "optimizer_states", "activations", "transient")
        for c in ("phase", "n", "peak", *cats):
            pt.add_column(c, justify="left" if c == "phase" else "right")
        for phase, s in phases.items():
            row = [_pct((s["categories"].get(c) or {}).get("median_abs_error")) for c in cats]
            pt.add_row(phase, str(s["n"]), _pct(s["median_abs_error"]), *row)
        console.print(pt)
    for problem in data["problems"]:
        err_console.print(f"[yellow]skipped[/yellow] {problem}")


def register(app: typer.Typer) -> None:
    """Add ``estimate calibrate ...`` to the main CLI (service.cli._register_optional)."""
    app.add_typer(calibrate_app, name="calibrate")

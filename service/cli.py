"""The ``estimate`` command line.

    estimate memory --model meta-llama/Llama-3.1-8B --method qlora --gpu rtx-4090 [--json]
    estimate memory --spec run.yaml [--simulate]
    estimate models | gpus

Exit codes: 0 success, 2 bad input (every problem listed, no traceback), 1 an unexpected failure.
Heavy libraries are imported inside the commands that need them only.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from estimator.errors import Problem, SpecError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Will this fine-tuning run fit, how fast, at what cost."
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

MAX_SPEC_BYTES = 1 << 20


def fail(problems: list[Problem]) -> NoReturn:
    from service.render import print_problems

    print_problems(err_console, problems)
    raise typer.Exit(2)


def load_spec_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON spec (YAML through ``safe_load``); problems raise SpecError."""
    import yaml

    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError([Problem("--spec", f"{path} is larger than {MAX_SPEC_BYTES} bytes")])
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem("--spec", f"cannot read {path}: {exc.strerror or exc}")]) from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError(
            [Problem("--spec", f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}")]
        ) from exc
    if not isinstance(data, dict):
        raise SpecError([Problem("--spec", f"{path} must hold a mapping of spec fields")])
    return data


class MethodOpt(StrEnum):
    full = "full"
    lora = "lora"
    qlora = "qlora"


def _targets(v: str | None) -> str | list[str] | None:
    if v is None:
        return None
    return "all-linear" if v.strip() == "all-linear" else [t.strip() for t in v.split(",") if t.strip()]


def build_spec_dict(spec_file: Path | None, overrides: dict[str, Any], lora: dict[str, Any],
                    quant: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """A raw spec from a file and/or flags; flags given explicitly override the file."""
    data: dict[str, Any] = load_spec_file(spec_file) if spec_file else {}
    for k, v in overrides.items():
        if v is not None:
            data[k] = v
    lora = {k: v for k, v in lora.items() if v is not None}
    if lora:
        data["lora"] = {**(data.get("lora") or {}), **lora}
    quant = {k: v for k, v in quant.items() if v is not None}
    if quant:
        data["quantization"] = {**(data.get("quantization") or {}), **quant}
    if "model" not in data:
        raise SpecError([Problem("model", "give --model (a catalog id, config.json path) or --spec FILE")])
    return data


@app.command()
def memory(
    spec_file: Annotated[Path | None, typer.Option("--spec", help="YAML or JSON training spec.")] = None,
    model: Annotated[str | None, typer.Option(help="Catalog id (case-insensitive) or config.json path.")] = None,
    method: Annotated[MethodOpt | None, typer.Option(help="full | lora | qlora")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Micro-batch per GPU.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence.")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU id, e.g. h100-sxm-80gb, rtx-4090.")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    lora_alpha: Annotated[float | None, typer.Option(help="LoRA alpha.")] = None,
    lora_dropout: Annotated[float | None, typer.Option(help="LoRA dropout.")] = None,
    targets: Annotated[str | None, typer.Option(help="'all-linear' or comma-separated module names.")] = None,
    adapter_dtype: Annotated[str | None, typer.Option(help="fp32 (PEFT default) | bf16")] = None,
    quant: Annotated[str | None, typer.Option("--quant", help="nf4 | fp4 | int8 | gptq4 | awq4 (qlora)")] = None,
    double_quant: Annotated[bool | None, typer.Option("--double-quant/--no-double-quant")] = None,
    param_dtype: Annotated[str | None, typer.Option(help="bf16 | fp16 | fp32")] = None,
    autocast: Annotated[str | None, typer.Option(help="bf16 | fp16 (mixed precision)")] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(help="adamw | adamw_8bit | paged_adamw | paged_adamw_8bit | sgd | adafactor | lion"),
    ] = None,
    optimizer_in_backward: Annotated[
        bool | None, typer.Option("--optimizer-in-backward/--no-optimizer-in-backward")
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    offload_checkpoints: Annotated[
        bool, typer.Option("--offload-checkpoints", help="Keep checkpoints in CPU memory.")
    ] = False,
    attention: Annotated[str | None, typer.Option(help="sdpa | flash_attention_2 | eager")] = None,
    loss: Annotated[str | None, typer.Option(help="standard | chunked | fused")] = None,
    gradient_accumulation: Annotated[int | None, typer.Option(help="Micro-batches per optimizer step.")] = None,
    num_gpus: Annotated[int | None, typer.Option(help="Data-parallel GPUs.")] = None,
    sharding: Annotated[str | None, typer.Option(help="none | ddp | fsdp | zero1 | zero2 | zero3")] = None,
    cpu_offload: Annotated[bool | None, typer.Option("--cpu-offload/--no-cpu-offload")] = None,
    device: Annotated[str | None, typer.Option(help="cuda | cpu (what the prediction is for)")] = None,
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate",
            help="Trace the real step under FakeTensorMode (slow, exact; needs the profiler extra).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the Estimate as JSON.")] = False,
) -> None:
    """Peak GPU memory of one training step, term by term, and whether it fits."""
    from estimator.spec import check_spec

    ckpt: bool | str | None = gradient_checkpointing
    if offload_checkpoints:
        ckpt = "offload"
    try:
        raw = build_spec_dict(
            spec_file,
            {
                "model": model, "method": method.value if method else None, "batch_size": batch_size,
                "seq_len": seq_len, "gpu": gpu, "param_dtype": param_dtype, "autocast": autocast,
                "optimizer": optimizer, "optimizer_in_backward": optimizer_in_backward,
                "gradient_checkpointing": ckpt, "attention": attention, "loss": loss,
                "gradient_accumulation": gradient_accumulation, "num_gpus": num_gpus, "sharding": sharding,
                "cpu_offload": cpu_offload, "device": device,
            },
            {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout, "targets": _targets(targets),
             "adapter_dtype": adapter_dtype},
            {"type": quant, "double_quant": double_quant},
        )  # fmt: skip
        spec = check_spec(raw)
    except SpecError as exc:
        fail(exc.problems)
    if simulate:
        try:
            from profiler.simulate import simulate_estimate
        except ImportError as exc:
            fail([Problem("--simulate", f"needs the profiler extra (torch, transformers, peft): {exc}")])
        try:
            result = simulate_estimate(spec)
        except SpecError as exc:
            fail(exc.problems)
    else:
        from estimator.estimate import estimate

        result = estimate(spec).model_dump(mode="json")
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return
    from service.render import print_estimate

    print_estimate(console, result)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the embedded model catalog."""
    from estimator.architecture import parse_architecture
    from estimator.models import model_catalog

    rows: list[dict[str, Any]] = []
    for m in model_catalog().values():
        a = parse_architecture(m.config)
        rows.append({"id": m.id, "family": a.family, "params": a.total_params, "active_params": a.active_params,
                     "layers": a.layers, "hidden": a.hidden, "vocab": a.vocab, "source": m.source})  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} models")
    for c in ("id", "family", "params", "layers", "hidden", "vocab"):
        t.add_column(c, justify="right" if c in ("params", "layers", "hidden", "vocab") else "left")
    for r in rows:
        t.add_row(
            r["id"],
            r["family"],
            f"{r['params'] / 1e9:,.2f}B",
            str(r["layers"]),
            str(r["hidden"]),
            str(r["vocab"]),
        )
    console.print(t)


@app.command()
def gpus(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the GPU catalog: memory as reported, usable memory, peak bf16 rate, typical price."""
    from estimator.gpus import gpu_catalog

    rows = [g.to_json() for g in gpu_catalog().values()]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    from rich.table import Table

    from service.render import gib

    t = Table(title=f"{len(rows)} GPUs")
    for c in ("id", "name", "memory", "usable", "bf16 TFLOPS", "$/h typical", "as of"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["id"], r["name"], gib(r["memory_bytes"]), gib(r["usable_bytes"]),
                  "-" if r["bf16_tflops"] is None else f"{r['bf16_tflops']:,.0f}",
                  str(r["price_usd_per_hour"].get("typical", "-")), r["price_as_of"])  # fmt: skip
    console.print(t)


_OPTIONAL = {
    "cost": "service.cli_cost",
    "decide": "service.cli_cost",
    "serve": "service.cli_serve",
    "calibrate": "service.cli_calibrate",
    "report": "service.cli_report",
}


def _register_optional(argv: list[str] | None) -> None:
    """Sub-commands contributed by other modules (cost, decide, serve, calibrate, report).

    Only the module of the command being run is imported (``estimate memory`` stays quick to
    start); with no command, or ``--help``, all of them are, so the help lists every command.
    """
    import importlib

    first = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    if first in ("memory", "models", "gpus"):
        return
    wanted = [_OPTIONAL[first]] if first in _OPTIONAL else sorted(set(_OPTIONAL.values()))
    for mod in wanted:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                continue
            raise
        m.register(app)


# Importers (tests, the service) get every command; the console script registers lazily in main().
_LAZY_CLI = Path(sys.argv[0]).name == "estimate"
if not _LAZY_CLI:
    _register_optional(None)


def main() -> None:
    if _LAZY_CLI:
        _register_optional(sys.argv[1:])
    try:
        app()
    except SpecError as exc:
        from service.render import print_problems

        print_problems(err_console, exc.problems)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()

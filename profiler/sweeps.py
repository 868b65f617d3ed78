"""Named sweeps of profiled configurations -> calibration records.

``smoke``      4 tiny configs, well under a minute on 2 cores: does the whole pipe work?
``ci``         38 tiny configs (~1 min on 2 cores): full / LoRA / QLoRA, checkpointing on and off,
               sdpa and eager, standard and chunked loss, AdamW and 8-bit AdamW (plus SGD, Adafactor,
               Lion, paged, fp32, autocast, adapter-dtype and target variants), two families (a Llama-like
               GQA config; a Qwen3-like one with q_norm/k_norm, head_dim > hidden/heads, tied embeddings)
               and two batch x seq shapes with the same token count (1 x 256, 4 x 64), so per-token and
               per-sequence (s^2) terms separate.
``full``       bigger real CPU runs (hidden 1024, 4 layers, vocab 32k, 1024 tokens; ~1 min each on a
               busy 2-core machine, so ~25 min) plus
               real-size shapes (Llama-3.1-8B, Qwen3-8B at 1 x 2048) simulated under FakeTensorMode.
``real_size``  only the simulated real-size shapes (seconds each).

Run one: ``python -m profiler.sweeps ci --out artifacts/ci_sweep_records`` (prints a summary table).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LLAMA_TINY: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
}
"""Llama-3-like: GQA 8 query / 2 KV heads (head_dim 32), SwiGLU, untied lm_head."""

QWEN3_TINY: dict[str, Any] = {
    "model_type": "qwen3",
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "vocab_size": 8192,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
}
"""Qwen3-like: q_norm/k_norm, head_dim 64 (q width 512 > hidden 256), tied embeddings."""

LLAMA_MEDIUM: dict[str, Any] = {
    **LLAMA_TINY,
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
QWEN3_MEDIUM: dict[str, Any] = {
    **QWEN3_TINY,
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 32768,
    "max_position_embeddings": 4096,
}

LLAMA_3_1_8B: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "tie_word_embeddings": False,
}
"""meta-llama/Llama-3.1-8B config.json shape fields."""

QWEN3_8B: dict[str, Any] = {
    "model_type": "qwen3",
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
}
"""Qwen/Qwen3-8B config.json shape fields."""

FAMILIES: dict[str, dict[str, Any]] = {"llama": LLAMA_TINY, "qwen3": QWEN3_TINY}
SHAPES: tuple[tuple[int, int], ...] = ((1, 256), (4, 64))


@dataclass(frozen=True)
class SweepEntry:
    """One configuration of a sweep: a label, the spec, the backend, an optional layer override."""

    name: str
    spec: dict[str, Any]
    backend: str = "cpu"
    num_layers: int | None = None
    tags: tuple[str, ...] = field(default=())


def _spec(config: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": {"config": dict(config)}, **fields}


def _label(family: str, spec: dict[str, Any]) -> str:
    parts = [family, spec.get("method", "lora")]
    parts.append("gc" if spec.get("gradient_checkpointing", True) else "nogc")
    parts.append(spec.get("attention", "sdpa"))
    parts.append(spec.get("loss", "standard"))
    parts.append(spec.get("optimizer", "adamw"))
    parts.append(f"{spec['batch_size']}x{spec['seq_len']}")
    return "-".join(parts)


def smoke_entries() -> list[SweepEntry]:
    """Four tiny configs (seconds): full, LoRA + checkpointing, chunked loss, QLoRA on Qwen3."""
    specs = [
        ("llama", _spec(LLAMA_TINY, method="full", gradient_checkpointing=False, batch_size=1, seq_len=64)),
        ("llama", _spec(LLAMA_TINY, method="lora", gradient_checkpointing=True, batch_size=2, seq_len=64)),
        (
            "llama",
            _spec(
                LLAMA_TINY,
                method="lora",
                gradient_checkpointing=False,
                loss="chunked",
                batch_size=1,
                seq_len=64,
            ),
        ),
        ("qwen3", _spec(QWEN3_TINY, method="qlora", gradient_checkpointing=True, batch_size=1, seq_len=64)),
    ]
    return [SweepEntry(name=_label(f, s), spec=s) for f, s in specs]


def ci_entries() -> list[SweepEntry]:
    """The calibration grid (module docstring): 24 balanced base configs + 14 single-knob variants.

    Base: family (2) x method (3) x shape (2) x variant (2). Variant 0 runs without checkpointing,
    variant 1 with it; attention, loss and optimizer alternate with different parities so that no two
    knobs always change together.
    """
    entries: list[SweepEntry] = []
    for (fi, family), (mi, method), (si, shape), v in itertools.product(
        enumerate(FAMILIES), enumerate(("full", "lora", "qlora")), enumerate(SHAPES), (0, 1)
    ):
        attention = "eager" if (si + v) % 2 else "sdpa"
        loss = "chunked" if (mi + v + fi) % 2 else "standard"
        optimizer = "adamw_8bit" if (si + mi + fi + v) % 2 == 0 and (fi + v) % 2 else "adamw"
        spec = _spec(
            FAMILIES[family],
            method=method,
            gradient_checkpointing=bool(v),
            attention=attention,
            loss=loss,
            optimizer=optimizer,
            batch_size=shape[0],
            seq_len=shape[1],
        )
        entries.append(SweepEntry(name=_label(family, spec), spec=spec, tags=("base",)))

    def variant(tag: str, family: str, **fields: Any) -> None:
        base: dict[str, Any] = {"gradient_checkpointing": False, "batch_size": 1, "seq_len": 256}
        spec = _spec(FAMILIES[family], **{**base, **fields})
        entries.append(SweepEntry(name=f"{_label(family, spec)}-{tag}", spec=spec, tags=("variant", tag)))

    variant("autocast-bf16", "llama", method="lora", autocast="bf16")
    variant("adapters-bf16", "llama", method="lora", lora={"adapter_dtype": "bf16"})
    variant("qv-only", "llama", method="lora", lora={"targets": ["q_proj", "v_proj"]})
    variant("dropout0", "llama", method="lora", lora={"dropout": 0.0})
    variant("r64", "llama", method="lora", lora={"r": 64})
    variant("save-lm-head", "llama", method="lora", lora={"modules_to_save": ["lm_head"]})
    variant("fp32", "llama", method="full", param_dtype="fp32")
    variant("fp32-autocast-bf16", "llama", method="full", param_dtype="fp32", autocast="bf16")
    variant("sgd", "qwen3", method="full", optimizer="sgd")
    variant("adafactor", "qwen3", method="full", optimizer="adafactor")
    variant("lion", "qwen3", method="full", optimizer="lion")
    variant("paged8bit", "llama", method="full", optimizer="paged_adamw_8bit")
    variant("fp4-nodq", "llama", method="qlora", quantization={"type": "fp4", "double_quant": False})
    variant("int8", "llama", method="qlora", quantization={"type": "int8"})
    return entries


def real_size_entries() -> list[SweepEntry]:
    """Real-size shapes at 1 x 2048, simulated (backend cpu-fake): seconds each, no memory."""
    out: list[SweepEntry] = []
    for family, config in (("llama-3.1-8b", LLAMA_3_1_8B), ("qwen3-8b", QWEN3_8B)):
        for method, use_gc in (("lora", True), ("lora", False), ("full", True)):
            spec = _spec(config, method=method, gradient_checkpointing=use_gc, batch_size=1, seq_len=2048)
            out.append(SweepEntry(name=_label(family, spec) + "-fake", spec=spec, backend="cpu-fake"))
    spec = _spec(LLAMA_3_1_8B, method="lora", gradient_checkpointing=True, loss="chunked", batch_size=1, seq_len=2048)
    out.append(SweepEntry(name=_label("llama-3.1-8b", spec) + "-fake", spec=spec, backend="cpu-fake"))
    return out


def full_entries() -> list[SweepEntry]:
    """Medium real CPU runs (hidden 1024, vocab 32k) plus :func:`real_size_entries`."""
    entries: list[SweepEntry] = []
    for (family, config), method, use_gc, shape in itertools.product(
        (("llama", LLAMA_MEDIUM), ("qwen3", QWEN3_MEDIUM)),
        ("full", "lora", "qlora"),
        (False, True),
        ((1, 1024), (2, 512)),
    ):
        spec = _spec(config, method=method, gradient_checkpointing=use_gc, batch_size=shape[0], seq_len=shape[1])
        entries.append(SweepEntry(name=_label(family + "-medium", spec), spec=spec))
    return entries + real_size_entries()


SWEEPS: dict[str, Callable[[], list[SweepEntry]]] = {
    "smoke": smoke_entries,
    "ci": ci_entries,
    "full": full_entries,
    "real_size": real_size_entries,
}


def run_entry(entry: SweepEntry, sweep: str = "", *, timed_steps: int = 3) -> dict[str, Any]:
    """Run one entry on its backend and return its calibration record (not written).

    ``timed_steps`` untraced steps are timed for ``step_time_s`` (0 skips the timing).
    """
    from profiler.record import make_record

    if entry.backend == "cpu-fake":
        from profiler.simulate import simulate_spec

        measurement = simulate_spec(entry.spec, num_layers=entry.num_layers)
    elif entry.backend == "cpu":
        from profiler.harness import run_spec

        measurement = run_spec(entry.spec, num_layers=entry.num_layers, timed_steps=timed_steps)
    else:
        raise ValueError(f"sweeps run on cpu or cpu-fake, not {entry.backend!r}")
    record = make_record(measurement)
    record["sweep"] = {"name": sweep, "entry": entry.name, "tags": list(entry.tags)}
    return record


def run_sweep(
    name: str,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every entry of sweep ``name``, write one record per entry into ``out_dir``, return them."""
    from profiler.record import write_record

    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r}; known: {sorted(SWEEPS)}")
    records: list[dict[str, Any]] = []
    for entry in SWEEPS[name]():
        started = time.perf_counter()
        record = run_entry(entry, sweep=name)
        write_record(record, out_dir)
        records.append(record)
        gc.collect()
        if progress is not None:
            status = "ok" if record["error"] is None else record["error"][:80]
            progress(f"{entry.name:60s} {time.perf_counter() - started:6.2f}s {status}")
    return records


# ----------------------------------------------------------------------------- reporting
_SHORT = {
    "weights": "w",
    "trainable_params": "p",
    "gradients": "g",
    "optimizer_states": "o",
    "activations": "a",
    "transient": "t",
}


def _kib(n: int) -> str:
    return f"{n / 1024:.1f}"


def summary_table(records: list[dict[str, Any]], *, categories: bool = True) -> str:
    """A text table: entry, peak_allocated (bytes), peak phase, each phase's peak (KiB) and categories.

    Category letters: w weights, p trainable params, g gradients, o optimizer states,
    a activations, t transient (KiB each).
    """
    from profiler.tracer import PHASES

    lines = []
    header = f"{'entry':62s} {'peak_allocated':>14s} {'peak_phase':>14s} " + " ".join(
        f"{p + ' KiB':>20s}" for p in PHASES
    )
    lines.append(header)
    for record in records:
        name = record.get("sweep", {}).get("entry", record["id"])
        measured = record.get("measured")
        if measured is None:
            lines.append(f"{name:62s} {'-':>14s} {record['error'] or ''}")
            continue
        phases = measured["phases"]
        cells = " ".join(f"{_kib(phases[p]['peak']) if p in phases else '-':>20s}" for p in PHASES)
        lines.append(f"{name:62s} {measured['peak_allocated']:>14d} {measured['peak_phase']:>14s} {cells}")
        if categories:
            for p in PHASES:
                if p not in phases:
                    continue
                split = " ".join(f"{_SHORT[c]}={_kib(b)}" for c, b in phases[p]["by_category"].items())
                lines.append(f"    {p:15s} {split}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m profiler.sweeps NAME --out DIR [--no-categories]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("name", choices=sorted(SWEEPS))
    parser.add_argument("--out", required=True, help="directory for the records (one JSON file per run)")
    parser.add_argument("--no-categories", action="store_true", help="one line per config")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    records = run_sweep(args.name, args.out, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(summary_table(records, categories=not args.no_categories))
    failed = [r for r in records if r["error"] is not None]
    elapsed = time.perf_counter() - started
    print(f"\n{len(records)} records in {args.out} ({len(failed)} failed) in {elapsed:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Schema-valid synthetic records: real estimator predictions plus known offsets."""

from __future__ import annotations

import copy
from typing import Any

from profiler import PHASES
from profiler.cuda_sweep import build_record, environment_fingerprint, measured_block, predict
from profiler.record import record_id

MIB = 1 << 20
GPU_ID = "h100-sxm-80gb"
GPU = {
    "name": "NVIDIA H100 80GB HBM3",
    "memory_bytes": 81559 * MIB,
    "id": GPU_ID,
    "slug": GPU_ID,
    "driver": "580.00",
    "cuda": "12.8",
    "torch_total_memory": 79_646 * MIB,
}

TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "vocab_size": 8192,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}


def spec(
    method: str = "lora", *, seq_len: int = 1024, batch_size: int = 1, gc: bool = True, **extra: Any
) -> dict[str, Any]:
    return {
        "model": {"config": dict(TINY_LLAMA)},
        "method": method,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "gradient_checkpointing": gc,
        "gpu": GPU_ID,
        "device": "cuda",
        **extra,
    }


def cuda_record(
    s: dict[str, Any], *, context: int, slack: float, mfu: float, alloc_error: float = 0.0, peak_flops: float
) -> dict[str, Any]:
    """A CUDA record whose measurements are the prediction with known offsets:
    allocated = predicted * (1 + alloc_error); reserved = allocated * (1 + slack);
    NVML process peak = reserved + context; tokens/s = peak_flops * mfu / flops_per_token."""
    pred = predict(s)
    assert pred is not None
    alloc_phases = {}
    nvml_phases = {}
    for phase in PHASES:
        a = round(pred["memory"]["phases"][phase]["total"] * (1 + alloc_error))
        r = round(a * (1 + slack))
        alloc_phases[phase] = {
            "allocated_peak": a,
            "reserved_peak": r,
            "active_peak": a,
            "num_alloc_retries": 0,
            "num_ooms": 0,
            "allocated_at_start": 0,
            "reserved_at_start": 0,
        }
        nvml_phases[phase] = {"process_peak": r + context, "device_peak": r + context + 3 * MIB}
    peak_phase = max(alloc_phases, key=lambda p: alloc_phases[p]["allocated_peak"])
    peak_alloc = alloc_phases[peak_phase]["allocated_peak"]
    peak_res = max(v["reserved_peak"] for v in alloc_phases.values())
    probes = {
        "allocator": {
            "phases": alloc_phases,
            "peak_phase": peak_phase,
            "peak_allocated": peak_alloc,
            "peak_reserved": peak_res,
            "peak_active": peak_alloc,
            "reserved_at_allocated_peak": alloc_phases[peak_phase]["reserved_peak"],
            "num_alloc_retries": 0,
        },
        "nvml": {
            "phases": nvml_phases,
            "process_peak": peak_res + context,
            "device_peak": peak_res + context,
            "baseline": {},
            "sampling": {},
        },
    }
    tokens = s["batch_size"] * s["seq_len"]
    tps = peak_flops * mfu / pred["throughput"]["flops_per_token"]
    idle = {"context_bytes": context - 100 * MIB, "source": "process"}
    measured = measured_block(probes, step_time_s=tokens / tps, tokens=tokens, idle=idle)
    return build_record(copy.deepcopy(s), environment_fingerprint(GPU), measured, prediction=pred)


def cpu_record(s: dict[str, Any], *, alloc_error: float) -> dict[str, Any]:
    """A CPU-backend record (what profiler.sweeps writes) with measured = predicted (device cpu) * (1 + e)."""
    cpu_spec = {k: v for k, v in s.items() if k not in ("gpu", "device")}
    pred = predict({**cpu_spec, "device": "cpu"})
    assert pred is not None
    phases = {}
    for phase in PHASES:
        p = pred["memory"]["phases"][phase]
        cats = {
            c: round(p[c] * (1 + alloc_error))
            for c in (
                "weights",
                "trainable_params",
                "gradients",
                "optimizer_states",
                "activations",
                "transient",
            )
        }
        cats["weights"] += p["quant_constants"]
        phases[phase] = {"peak": sum(cats.values()), "by_category": cats}
    peak_phase = max(phases, key=lambda ph: phases[ph]["peak"])
    return {
        "schema": 1,
        "id": record_id(cpu_spec, "cpu"),
        "backend": "cpu",
        "spec": cpu_spec,
        "environment": {"torch": "2.13.0+cpu"},
        "measured": {
            "peak_allocated": phases[peak_phase]["peak"],
            "peak_phase": peak_phase,
            "phases": phases,
            "step_time_s": 1.0,
            "tokens_per_second": 1.0,
        },
        "oom": False,
        "error": None,
        "notes": [],
        "prediction": None,
    }

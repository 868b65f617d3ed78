"""``estimate(spec)``: the SPEC.md Estimate for a TrainingSpec.

Pure arithmetic over the cached memory model: no I/O after the first call for a model, no heavy
imports. Compute is kept apart from rendering (the CLI and the API only format this object).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field

from estimator.calibration import Coefficients, coefficients, fitted_mfu
from estimator.gpus import GPU, find_gpu
from estimator.memory import CATEGORIES, MemoryModel, Phase, build_memory_model, framework
from estimator.spec import Device, Method, TrainingSpec
from estimator.throughput import flops_parts, throughput

MAX_SEARCH_SEQ = 10_000_000


class Params(BaseModel):
    total: int
    trainable: int
    quantized: int


class PhaseMemory(BaseModel):
    """Live bytes at one phase's peak, by category (an extension of SPEC.md)."""

    total: int
    weights: int
    quant_constants: int
    trainable_params: int
    gradients: int
    optimizer_states: int
    activations: int
    transient: int


class Memory(BaseModel):
    weights: int
    quant_constants: int
    trainable_params: int
    gradients: int
    optimizer_states: int
    activations: int
    transient: int
    peak_phase: Phase
    peak_allocated: int
    peak_reserved: int
    cuda_context: int
    peak_device: int
    paged_optimizer_states: int = 0
    nccl_buffers: int = 0
    allocator_slack: float = 0.0
    phases: dict[str, PhaseMemory] = Field(default_factory=dict)


class GPUInfo(BaseModel):
    id: str
    usable_bytes: int


class LargestFit(BaseModel):
    """The largest micro-batch at this seq_len, and the largest seq_len at this batch, that fit."""

    batch_size: int
    seq_len: int


class ThroughputOut(BaseModel):
    flops_per_token: float
    tokens_per_second: float
    mfu: float
    calibrated: bool = False
    step_time_s: float | None = None


class CalibrationInfo(BaseModel):
    source: str
    records: int


class Estimate(BaseModel):
    """The answer (SPEC.md). Sizes are integer bytes."""

    spec: dict[str, Any]
    params: Params
    memory: Memory
    gpu: GPUInfo | None
    fits: bool | None
    headroom_bytes: int | None
    largest_fit: LargestFit | None = None
    throughput: ThroughputOut
    calibration: CalibrationInfo
    assumptions: list[str]


def _spec_key(spec: TrainingSpec) -> tuple[Any, ...]:
    import json

    model = spec.model if isinstance(spec.model, str) else json.dumps(spec.model, sort_keys=True)
    lora = None
    if spec.lora is not None:
        lo = spec.lora
        targets = lo.targets if isinstance(lo.targets, str) else tuple(lo.targets)
        lora = (lo.r, lo.alpha, lo.dropout, targets, lo.adapter_dtype, tuple(lo.modules_to_save))
    q = None if spec.quantization is None else (spec.quantization.type, spec.quantization.double_quant)
    return (
        model, spec.method, lora, q, spec.param_dtype, spec.autocast, spec.optimizer, spec.optimizer_in_backward,
        spec.gradient_checkpointing, spec.attention, spec.loss, spec.gradient_accumulation, spec.num_gpus,
        spec.sharding, spec.cpu_offload, spec.device, spec.gpu, tuple(sorted(spec.stack.items())),
    )  # fmt: skip


@dataclass(frozen=True)
class _Prepared:
    """What ``estimate`` needs that does not depend on the batch shape (cached per settings)."""

    mm: MemoryModel
    flops: tuple[float, float]
    framework_note: str | None


_MODELS: dict[tuple[Any, ...], _Prepared] = {}


def _prepared(spec: TrainingSpec) -> _Prepared:
    key = _spec_key(spec)
    prep = _MODELS.get(key)
    if prep is None:
        if len(_MODELS) > 4096:
            _MODELS.clear()
        mm = build_memory_model(spec)
        note = None
        if spec.method is not Method.FULL:
            note = f"framework conventions: {framework(spec)} (set stack.framework to override)"
        prep = _Prepared(mm, flops_parts(spec, mm.arch, mm.static.adapter_count), note)
        _MODELS[key] = prep
    return prep


def memory_model(spec: TrainingSpec) -> MemoryModel:
    """The memory model for a spec's shape-independent settings (cached, bounded)."""
    return _prepared(spec).mm


def _env(spec: TrainingSpec, gpu: GPU | None, mm: MemoryModel) -> tuple[float, int, int, int, Coefficients]:
    """(allocator slack, CUDA context, NCCL bytes, paged bytes, coefficients) for the device."""
    coef = coefficients(gpu.id if gpu else None)
    if spec.device is Device.CPU:
        return 0.0, 0, 0, 0, coef
    nccl = coef.nccl_bytes if spec.num_gpus > 1 else 0
    return coef.allocator_slack, coef.cuda_context_bytes, nccl, mm.static.paged_optimizer_states, coef


_SPEC_JSON: dict[int, tuple[TrainingSpec, dict[str, Any]]] = {}


def _spec_json(spec: TrainingSpec) -> dict[str, Any]:
    """``spec.to_json()``, memoised per (immutable) spec object: a budget tool re-asks often."""
    hit = _SPEC_JSON.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_SPEC_JSON) > 1024:
        _SPEC_JSON.clear()
    out = spec.to_json()
    _SPEC_JSON[id(spec)] = (spec, out)
    return out


@lru_cache(maxsize=256)
def _gpu(gid: str | None) -> GPU | None:
    return None if gid is None else find_gpu(gid)


def estimate(spec: TrainingSpec) -> Estimate:
    """Memory, fit and throughput for one spec (SPEC.md)."""
    prep = _prepared(spec)
    return _assemble(spec, prep, prep.mm.phases(spec.batch_size, spec.seq_len), None)


def estimate_from_phases(spec: TrainingSpec, phases: dict[str, dict[str, int]], source: str,
                         note: str | None = None) -> Estimate:  # fmt: skip
    """The Estimate for live bytes measured or simulated per phase and category (``source`` names
    how, e.g. ``simulated``). Reserved and device bytes, the fit verdict and throughput come from
    the same environment coefficients as :func:`estimate`; ``largest_fit`` stays analytic."""
    prep = _prepared(spec)
    clean: dict[Phase, dict[str, int]] = {}
    for name, cats in phases.items():
        clean[Phase(name)] = {k: int(cats.get(k, 0)) for k in CATEGORIES}
    return _assemble(spec, prep, clean, (source, note))


def _assemble(spec: TrainingSpec, prep: _Prepared, phases: dict[Phase, dict[str, int]],
              measured: tuple[str, str | None] | None) -> Estimate:  # fmt: skip
    mm = prep.mm
    gpu = _gpu(spec.gpu)
    coefs = mm.total_coefs
    b, s = spec.batch_size, spec.seq_len
    totals = {ph: sum(v.values()) for ph, v in phases.items()}
    phase = max(totals, key=totals.__getitem__)
    at_peak = phases[phase]
    slack, ctx, nccl, paged, coef = _env(spec, gpu, mm)
    peak_alloc = totals[phase]
    peak_reserved = peak_alloc + math.ceil(peak_alloc * slack)
    peak_device = peak_reserved + ctx + nccl + paged

    fits: bool | None = None
    headroom: int | None = None
    largest: dict[str, int] | None = None
    gpu_info: dict[str, Any] | None = None
    if gpu is not None:
        usable = gpu.usable_bytes
        gpu_info = {"id": gpu.id, "usable_bytes": usable}
        headroom = usable - peak_device
        fits = headroom >= 0
        budget = (usable - ctx - nccl - paged) / (1 + slack)
        largest = {"batch_size": _largest_batch(coefs, s, budget), "seq_len": _largest_seq(coefs, b, budget)}

    tp = throughput(spec, mm.arch, gpu, fitted_mfu(coef, spec.method), mm.static.adapter_count, prep.flops)
    step = None
    if tp.tokens_per_second > 0:
        step = b * s * spec.gradient_accumulation / tp.tokens_per_second

    assumptions = list(mm.assumptions)
    if prep.framework_note:
        assumptions.append(prep.framework_note)
    if coef.source == "default" and spec.device is Device.CUDA:
        assumptions.append("CUDA context and allocator slack are defaults (no calibration for this GPU)")
    if not tp.calibrated:
        assumptions.append(f"efficiency (MFU) {tp.mfu:.0%} is an uncalibrated default for {spec.method.value}")
    if spec.device is Device.CPU:
        assumptions.append("device cpu: no CUDA context, no allocator slack, CPU kernels")
    source = coef.source if spec.device is Device.CUDA else "default"
    if measured is not None:
        source = measured[0]
        if measured[1]:
            assumptions.insert(0, measured[1])

    memory = {
        **{k: at_peak[k] for k in CATEGORIES},
        "peak_phase": phase,
        "peak_allocated": peak_alloc,
        "peak_reserved": peak_reserved,
        "cuda_context": ctx,
        "peak_device": peak_device,
        "paged_optimizer_states": paged,
        "nccl_buffers": nccl,
        "allocator_slack": slack,
        "phases": {ph: {"total": totals[ph], **v} for ph, v in phases.items()},
    }
    st = mm.static
    # One validation pass over plain data is faster than building each nested model in turn.
    return Estimate.model_validate(
        {
            "spec": _spec_json(spec),
            "params": {
                "total": st.total_count,
                "trainable": st.trainable_count,
                "quantized": st.quantized_count,
            },
            "memory": memory,
            "gpu": gpu_info,
            "fits": fits,
            "headroom_bytes": headroom,
            "largest_fit": largest,
            "throughput": {
                "flops_per_token": tp.flops_per_token,
                "tokens_per_second": tp.tokens_per_second,
                "mfu": tp.mfu,
                "calibrated": tp.calibrated,
                "step_time_s": step,
            },
            "calibration": {"source": source, "records": coef.records},
            "assumptions": assumptions,
        }
    )


def _largest_batch(coefs: tuple[tuple[float, float, float], ...], seq: int, budget: float) -> int:
    """The largest micro-batch whose every phase fits ``budget`` bytes at ``seq`` (0: none)."""
    best = math.inf
    ss = seq * seq
    for c, p, q in coefs:
        if budget < c:
            return 0
        per = p * seq + q * ss
        if per > 0:
            room = (budget - c) / per
            if room < best:
                best = room
    return 0 if best < 1 else int(best) if best != math.inf else 1_000_000


def _largest_seq(coefs: tuple[tuple[float, float, float], ...], batch: int, budget: float) -> int:
    """The largest sequence length whose every phase fits ``budget`` bytes at ``batch`` (0: none)."""
    best = float(MAX_SEARCH_SEQ)
    for c, p, q in coefs:
        room = budget - c
        if room < 0:
            return 0
        qa, pb = q * batch, p * batch
        if qa > 0:
            s = (-pb + math.sqrt(pb * pb + 4 * qa * room)) / (2 * qa)
        elif pb > 0:
            s = room / pb
        else:
            continue
        best = min(best, s)
    return int(best)

"""Throughput: FLOPs per token and tokens per second.

FLOPs per token (Kaplan et al. 2020; EleutherAI "Transformer Math 101"; Chowdhery et al. 2022
(PaLM) App. B for the attention term): a forward pass costs 2 FLOPs per active parameter; the
backward costs 4 (grad of inputs + grad of weights) for trainable weights and 2 (inputs only) for
frozen ones. Full fine-tuning: 6P; LoRA/QLoRA: 4P + adapter terms; checkpointing recomputes the
forward: +2P. Attention scores and weighted values: 2 x 2 x s x d per layer forward (causal
kernels skip about half of it, which we do not credit), so 12 x L x s x d per token with backward.
Left out: norms, softmax and element-wise FLOPs (< 1 % at these sizes), QLoRA's dequantization
work (it is memory-bound: modelled by its lower default efficiency instead).

Time = FLOPs / (peak dense bf16 rate x efficiency). The efficiency (MFU) must come from measurement:
defaults below are marked uncalibrated until ``calibration_data/fitted.json`` supplies a value.
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.architecture import Architecture, adapter_params
from estimator.gpus import GPU
from estimator.spec import Checkpointing, Method, TrainingSpec

# Uncalibrated defaults (MEMORY_MODEL.md: published LoRA runs span ~20 % (HF stack, A100) to ~60 %
# (torchtune, RTX 4090); QLoRA typically runs 1.3-2x slower than LoRA).
DEFAULT_MFU = {Method.FULL: 0.40, Method.LORA: 0.35, Method.QLORA: 0.22}


@dataclass(frozen=True)
class Throughput:
    flops_per_token: float
    tokens_per_second: float
    mfu: float
    calibrated: bool


def flops_per_token(spec: TrainingSpec, arch: Architecture, adapters: int | None = None) -> float:
    """Training FLOPs per token of one step (forward + backward, + recompute).

    ``adapters`` (LoRA parameter count) may be passed when already known, to skip the target walk.
    """
    const, per_seq = flops_parts(spec, arch, adapters)
    return const + per_seq * spec.seq_len


def flops_parts(spec: TrainingSpec, arch: Architecture, adapters: int | None = None) -> tuple[float, float]:
    """FLOPs per token as ``const + per_seq * seq_len`` (the attention term grows with s)."""
    matmul = _flops(spec, arch, adapters, 0)
    return matmul, _flops(spec, arch, adapters, 1) - matmul


def _flops(spec: TrainingSpec, arch: Architecture, adapters: int | None, seq_len: int) -> float:
    p = arch.active_params - arch.embedding_numel  # embedding look-ups are not matmuls
    if arch.lm_head_numel == 0:
        p += arch.embedding_numel  # tied: the lm_head matmul uses the embedding matrix
    attn = 4 * arch.layers * seq_len * arch.q_dim  # forward QK^T and PV per token
    if spec.method is Method.FULL:
        fwd, bwd = 2 * p + attn, 4 * p + 2 * attn
    else:
        assert spec.lora is not None
        if adapters is None:
            adapters = adapter_params(arch, spec.lora.targets, spec.lora.r)
        fwd = 2 * (p + adapters) + attn
        bwd = 2 * p + 4 * adapters + 2 * attn
    recompute = fwd if spec.gradient_checkpointing is not Checkpointing.OFF else 0
    return float(fwd + bwd + recompute)


def throughput(
    spec: TrainingSpec,
    arch: Architecture,
    gpu: GPU | None,
    mfu: float | None = None,
    adapters: int | None = None,
    parts: tuple[float, float] | None = None,
) -> Throughput:
    """Tokens per second per GPU from the peak dense rate and an efficiency."""
    const, per_seq = parts if parts is not None else flops_parts(spec, arch, adapters)
    fpt = const + per_seq * spec.seq_len
    calibrated = mfu is not None
    eff = mfu if mfu is not None else DEFAULT_MFU[spec.method]
    if gpu is None:
        return Throughput(fpt, 0.0, eff, calibrated)
    peak = gpu.bf16_flops if gpu.bf16_supported and gpu.bf16_flops else (gpu.fp16_flops or gpu.fp32_flops or 0.0)
    tps = peak * eff / fpt if fpt > 0 else 0.0
    return Throughput(fpt, tps, eff, calibrated)

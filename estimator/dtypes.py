"""Storage sizes, counted in bits so sub-byte formats stay exact (llm-analysis's ``4 // 8 == 0`` trap)."""

from __future__ import annotations

from estimator.spec import DType, QuantType

BITS = {DType.FP32: 32, DType.BF16: 16, DType.FP16: 16}


def nbytes(dtype: DType) -> int:
    """Bytes per element of a floating-point dtype."""
    return BITS[dtype] // 8


def quantized_bits_per_weight(qtype: QuantType, double_quant: bool) -> tuple[float, float]:
    """(payload bits, constant bits) per quantized weight element.

    bitsandbytes 4-bit (nf4/fp4), blocksize 64 (bitsandbytes ``functional.quantize_4bit``; Dettmers et
    al. 2023 §2): 4 bits packed + one fp32 absmax per 64 weights = 0.5 bit. Double quant stores the
    absmax as uint8 with a second-level fp32 absmax per 256 blocks: 8/64 + 32/(64*256) bits.
    Checked on CPU: a (4096, 4096) NF4 weight with double quant holds 8,655,940 bytes
    (PROFILING_NOTES.md): 8,388,608 packed + 262,144 + 4,096 + small codebooks.
    LLM.int8 (``Int8Params``): int8 payload + one fp32 scale per output row (~0 per weight at
    d_in >= 1024; counted exactly by the caller from the row count).
    GPTQ / AWQ 4-bit, group 128: 4 bits + fp16 scale and packed 4-bit zero per 128 weights.
    """
    if qtype in (QuantType.NF4, QuantType.FP4):
        consts = (8 / 64 + 32 / (64 * 256)) if double_quant else 32 / 64
        return 4.0, consts
    if qtype is QuantType.INT8:
        return 8.0, 0.0
    return 4.0, (16 + 4) / 128  # gptq4 / awq4

"""Request and response schemas of the routes that are not the estimator's own models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from estimator.estimate import Estimate
from estimator.spec import TrainingSpec
from service.api.errors import ErrorDetail

LLAMA_QLORA_4090: dict[str, Any] = {
    "model": "meta-llama/Llama-3.1-8B",
    "method": "qlora",
    "gpu": "rtx-4090",
    "batch_size": 2,
    "seq_len": 2048,
}
QWEN_LORA_H100: dict[str, Any] = {
    "model": "Qwen/Qwen2.5-7B",
    "method": "lora",
    "lora": {"r": 32, "alpha": 64, "targets": ["q_proj", "v_proj"]},
    "gpu": "h100",
    "batch_size": 8,
    "seq_len": 4096,
    "attention": "flash_attention_2",
}
FULL_FSDP: dict[str, Any] = {
    "model": "Qwen/Qwen3-8B",
    "method": "full",
    "optimizer": "adamw",
    "num_gpus": 8,
    "sharding": "fsdp",
    "gpu": "a100-sxm-80gb",
}
SPEC_EXAMPLES = {
    "qlora-8b-on-4090": LLAMA_QLORA_4090,
    "lora-7b-on-h100": QWEN_LORA_H100,
    "full-fsdp-8xa100": FULL_FSDP,
}


class BatchRequest(BaseModel):
    """Several specs estimated in one call (at most TUNECAST_BATCH_LIMIT, default 64)."""

    specs: list[TrainingSpec] = Field(min_length=1, max_length=64)


class BatchItem(BaseModel):
    """One spec's answer: ``estimate`` or ``error`` (the same error detail as a single request)."""

    index: int
    estimate: Estimate | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    succeeded: int
    failed: int


class ModelInfo(BaseModel):
    """One catalog model (parameter counts are exact, from the config)."""

    id: str = Field(examples=["meta-llama/Llama-3.1-8B"])
    family: str
    params: int
    active_params: int
    layers: int
    hidden: int
    vocab: int
    source: str


class GPUOut(BaseModel):
    """One catalog GPU. Memory in bytes; prices in USD per GPU-hour."""

    id: str = Field(examples=["h100-sxm-80gb"])
    name: str
    vendor: str
    memory_bytes: int
    usable_bytes: int
    usable_source: str
    bf16_tflops: float | None
    bf16_supported: bool
    price_usd_per_hour: dict[str, float]
    price_as_of: str


class CalibrationOut(BaseModel):
    """What the fitted calibration file says (``present: false``: defaults are in use)."""

    present: bool
    records: int
    records_hash: str | None
    gpus: list[str]
    residuals: dict[str, Any]


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    version: str
    catalog_version: str = Field(description="sha256 (first 16 hex) of the embedded GPU, price and model files.")
    calibration_version: str = Field(description="The fitted file's records hash, its sha256, or 'default'.")
    models: int
    gpus: int

"""The training spec: what a user asks about (SPEC.md, "TrainingSpec").

Every field but ``model`` has a default, and every strategy choice is a ``str`` enum so JSON, YAML,
CLI flags and Python all spell it the same way. Field-level problems are collected by pydantic;
the cross-field rules (LoRA on a full fine-tune, r larger than a layer, an unknown GPU, ...) live
in :func:`check_spec`, which reports every problem of a raw input at once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from estimator.errors import Problem, SpecError


class Method(StrEnum):
    """How the model is trained."""

    FULL = "full"
    """Every weight is trainable: weights, gradients and optimizer states for all of P."""
    LORA = "lora"
    """Frozen base weights in ``param_dtype`` plus low-rank adapters (Hu et al. 2021)."""
    QLORA = "qlora"
    """Frozen base weights quantized (NF4 etc.) plus adapters (Dettmers et al. 2023)."""


class QuantType(StrEnum):
    """Storage format of the frozen base weights under QLoRA."""

    NF4 = "nf4"
    """bitsandbytes 4-bit NormalFloat, blocksize 64, fp32 absmax (or double-quantized)."""
    FP4 = "fp4"
    """bitsandbytes 4-bit float; same layout as NF4."""
    INT8 = "int8"
    """bitsandbytes LLM.int8(): 1 byte per weight + an fp32 scale per output row."""
    GPTQ4 = "gptq4"
    """GPTQ 4-bit, group size 128: packed int4 + fp16 scale and packed zero per group."""
    AWQ4 = "awq4"
    """AWQ 4-bit, group size 128: same storage as GPTQ."""


class DType(StrEnum):
    """A floating-point storage type."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Optimizer(StrEnum):
    """The optimizer, which decides the bytes of state kept per trainable parameter."""

    ADAMW = "adamw"
    """torch AdamW: two states (exp_avg, exp_avg_sq) in the parameter's dtype."""
    ADAMW_8BIT = "adamw_8bit"
    """bitsandbytes AdamW8bit: two uint8 states + blockwise fp32 absmax (tensors >= 4096 elements)."""
    PAGED_ADAMW = "paged_adamw"
    """bitsandbytes PagedAdamW (32-bit states in CUDA managed memory: NVML sees them, torch does not)."""
    PAGED_ADAMW_8BIT = "paged_adamw_8bit"
    """bitsandbytes PagedAdamW8bit: 8-bit states in CUDA managed memory."""
    SGD = "sgd"
    """SGD with momentum: one state per parameter."""
    ADAFACTOR = "adafactor"
    """Adafactor: factored second moment, (rows + cols) per matrix."""
    LION = "lion"
    """Lion: one momentum state per parameter."""


class Checkpointing(StrEnum):
    """Activation (gradient) checkpointing per decoder layer."""

    OFF = "false"
    ON = "true"
    OFFLOAD = "offload"


class Attention(StrEnum):
    """The attention kernel: decides whether the s² score matrix is materialised."""

    SDPA = "sdpa"
    FLASH = "flash_attention_2"
    EAGER = "eager"


class Loss(StrEnum):
    """How logits and cross-entropy are computed."""

    STANDARD = "standard"
    """Full logits, upcast to fp32 (transformers ``ForCausalLMLoss``)."""
    CHUNKED = "chunked"
    """Logits and CE per chunk of tokens (torchtune ``CEWithChunkedOutputLoss``, lit-gpt)."""
    FUSED = "fused"
    """Fused linear + CE (Liger, cut-cross-entropy): logits never materialised."""


class Sharding(StrEnum):
    """How state is split over ``num_gpus`` data-parallel ranks."""

    NONE = "none"
    DDP = "ddp"
    FSDP = "fsdp"
    ZERO1 = "zero1"
    ZERO2 = "zero2"
    ZERO3 = "zero3"


class Device(StrEnum):
    """What the prediction is for (SPEC.md): ``cpu`` drops CUDA context and allocator slack."""

    CUDA = "cuda"
    CPU = "cpu"


# Module names accepted in ``lora.targets``; family-specific aliases map onto them.
CANONICAL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraSpec(BaseModel):
    """Adapter settings (PEFT ``LoraConfig``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(16, ge=1, le=65536, description="Adapter rank.")
    alpha: float = Field(32, gt=0, description="Scaling numerator (no memory effect).")
    dropout: float = Field(0.05, ge=0, lt=1, description="> 0 keeps one dropout mask per adapted input.")
    targets: Literal["all-linear"] | list[str] = Field(
        "all-linear",
        description="'all-linear' or module names (q_proj, k_proj, ...; family aliases accepted).",
    )
    adapter_dtype: DType = Field(DType.FP32, description="fp32 is PEFT's default (autocast_adapter_dtype=True).")
    modules_to_save: list[Literal["embed_tokens", "lm_head"]] = Field(
        default_factory=list, description="Modules trained in full next to the adapters."
    )

    @field_validator("targets")
    @classmethod
    def _targets_not_empty(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one target module, or 'all-linear'")
            if len(v) > 64:
                raise ValueError("at most 64 target modules")
        return v


class QuantSpec(BaseModel):
    """Quantization of the frozen base weights (QLoRA only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: QuantType = QuantType.NF4
    double_quant: bool = Field(True, description="Quantize the absmax constants again (bitsandbytes 4-bit).")


ModelRef = Annotated[
    str | dict[str, Any],
    Field(description="A catalog id, a path to a config.json, or {'config': {...}}."),
]


class TrainingSpec(BaseModel):
    """One fine-tuning configuration (SPEC.md). Sizes are per GPU unless stated."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    model: ModelRef
    method: Method = Method.LORA
    lora: LoraSpec | None = None
    quantization: QuantSpec | None = None
    param_dtype: DType = DType.BF16
    autocast: DType | None = None
    optimizer: Optimizer = Optimizer.ADAMW
    optimizer_in_backward: bool = False
    gradient_checkpointing: Checkpointing = Checkpointing.ON
    attention: Attention = Attention.SDPA
    loss: Loss = Loss.STANDARD
    batch_size: int = Field(1, ge=1, le=1_000_000)
    seq_len: int = Field(2048, ge=1, le=100_000_000)
    gradient_accumulation: int = Field(1, ge=1, le=1_000_000)
    num_gpus: int = Field(1, ge=1, le=100_000)
    sharding: Sharding = Sharding.NONE
    cpu_offload: bool = False
    gpu: str | None = None
    device: Device = Device.CUDA
    stack: dict[str, str] = Field(default_factory=dict)

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _checkpointing_from_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return "true" if v else "false"
        return v

    @field_validator("model")
    @classmethod
    def _model_shape(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("model must not be empty")
            if len(v) > 4096:
                raise ValueError("model id or path is too long")
        elif not isinstance(v.get("config"), dict) or set(v) - {"config", "name"}:
            raise ValueError("an inline model must be {'config': {...}} (optionally with 'name')")
        return v

    @field_validator("stack")
    @classmethod
    def _stack_small(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 32:
            raise ValueError("at most 32 stack entries")
        return v

    @model_validator(mode="after")
    def _fill_method_defaults(self) -> TrainingSpec:
        problems = _cross_field_problems(self)
        if problems:
            raise PydanticCustomError(
                "cross_field",
                "{summary}",
                {
                    "summary": "; ".join(str(p) for p in problems),
                    "problems": [[p.field, p.message] for p in problems],
                },
            )
        # Fill the defaults that depend on the method, so the returned spec is explicit.
        if self.method is not Method.FULL and self.lora is None:
            object.__setattr__(self, "lora", LoraSpec())
        if self.method is Method.QLORA and self.quantization is None:
            object.__setattr__(self, "quantization", QuantSpec())
        return self

    def to_json(self) -> dict[str, Any]:
        """The spec with every default filled in, as JSON-ready data."""
        out: dict[str, Any] = self.model_dump(mode="json")
        out["gradient_checkpointing"] = _checkpointing_json(self.gradient_checkpointing)
        return out


def _checkpointing_json(c: Checkpointing) -> bool | str:
    return {Checkpointing.OFF: False, Checkpointing.ON: True}.get(c, c.value)


def _cross_field_problems(spec: TrainingSpec) -> list[Problem]:
    """Rules that involve several fields or a catalog; all of them, not only the first."""
    from estimator.architecture import lora_target_problems
    from estimator.gpus import find_gpu
    from estimator.models import model_problems

    problems: list[Problem] = []
    if spec.method is Method.FULL and spec.lora is not None:
        problems.append(Problem("lora", "LoRA settings given for method 'full'; use method 'lora' or 'qlora'"))
    if spec.method is not Method.QLORA and spec.quantization is not None:
        problems.append(Problem("quantization", "quantization applies to method 'qlora' only"))
    if spec.sharding is Sharding.NONE and spec.num_gpus > 1:
        problems.append(Problem("sharding", "num_gpus > 1 needs a sharding strategy (ddp, fsdp, zero1-3)"))
    if spec.cpu_offload and spec.sharding not in (Sharding.FSDP, Sharding.ZERO2, Sharding.ZERO3):
        problems.append(Problem("cpu_offload", "CPU offload needs sharding fsdp, zero2 or zero3"))
    if spec.optimizer_in_backward and spec.gradient_accumulation > 1:
        problems.append(
            Problem("optimizer_in_backward", "optimizer-in-backward cannot be combined with gradient accumulation")
        )
    if spec.gpu is not None and find_gpu(spec.gpu) is None:
        from estimator.gpus import gpu_ids

        problems.append(Problem("gpu", f"unknown GPU {spec.gpu!r}; known: {', '.join(gpu_ids())}"))
    model_errs = model_problems(spec.model)
    problems.extend(model_errs)
    if not model_errs and spec.lora is not None and spec.method is not Method.FULL:
        problems.extend(lora_target_problems(spec.model, spec.lora))
    return problems


def check_spec(data: Any) -> TrainingSpec:
    """Validate raw input (a dict from JSON/YAML) and return the spec, or raise :class:`SpecError`
    listing every problem: field errors from pydantic and cross-field errors together."""
    if isinstance(data, TrainingSpec):
        return data
    if not isinstance(data, dict):
        raise SpecError([Problem("", "a training spec must be a JSON/YAML object")])
    try:
        return TrainingSpec.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc)
    # Pydantic stops before cross-field rules when a field is invalid: run those that can still
    # be checked on the raw data, so the user sees everything in one go.
    problems.extend(_raw_cross_field_problems(data, {p.field.split(".")[0] for p in problems}))
    raise SpecError(_dedupe(problems))


def problems_from_validation(exc: ValidationError) -> list[Problem]:
    """Turn pydantic's errors into :class:`Problem` s with dotted field paths."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith("function-"))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        ctx = err.get("ctx") or {}
        if err["type"] == "cross_field" and isinstance(ctx.get("problems"), list):
            out.extend(Problem(str(f), str(m)) for f, m in ctx["problems"])
            continue
        out.append(Problem(loc, msg))
    return out


def _raw_cross_field_problems(data: dict[str, Any], bad_fields: set[str]) -> list[Problem]:
    from estimator.gpus import find_gpu, gpu_ids
    from estimator.models import model_problems

    problems: list[Problem] = []
    gpu = data.get("gpu")
    if "gpu" not in bad_fields and isinstance(gpu, str) and find_gpu(gpu) is None:
        problems.append(Problem("gpu", f"unknown GPU {gpu!r}; known: {', '.join(gpu_ids())}"))
    model = data.get("model")
    if "model" not in bad_fields and isinstance(model, str | dict):
        problems.extend(model_problems(model))
    method = data.get("method", "lora")
    if method == "full" and data.get("lora") is not None and "lora" not in bad_fields:
        problems.append(Problem("lora", "LoRA settings given for method 'full'; use method 'lora' or 'qlora'"))
    if method in ("full", "lora") and data.get("quantization") is not None and "quantization" not in bad_fields:
        problems.append(Problem("quantization", "quantization applies to method 'qlora' only"))
    return problems


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        key = (p.field, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out

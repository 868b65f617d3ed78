"""Run real training steps of a spec (SPEC.md ``TrainingSpec`` as a dict) and trace their memory.

What a step is (the same in real and fake runs)
-----------------------------------------------
``training_step`` does, with the tracer's phase named at each boundary:

``forward``         ``model(input_ids, labels)`` for ``loss: standard`` (transformers' own
                    ``ForCausalLMLoss``: full logits, ``.float()`` upcast, cross-entropy), or the
                    decoder + :func:`chunked_cross_entropy` for ``loss: chunked``; under
                    ``torch.autocast("cpu", bf16|fp16)`` when the spec asks for autocast. The model
                    output object is dropped before backward (as HF ``Trainer`` does), so the logits
                    are freed unless autograd saved them. The phase ends when the loss scalar exists.
``loss_backward``   ``loss.backward()`` from its start until autograd has the complete gradient of the
                    final norm's output (a tensor hook on that output switches the phase): the
                    cross-entropy and ``lm_head`` backward, including the fp32 logit gradients.
``layer_backward``  the rest of ``backward()``: final norm, every decoder layer (with recomputation
                    under gradient checkpointing), the embedding.
``optimizer_step``  ``optimizer.step()`` then ``optimizer.zero_grad(set_to_none=True)``.

Each run seeds Python's and torch's RNGs, does two steps with the same random token batch and
reports the second, when optimizer states exist (steady state). Real runs then time ``timed_steps``
more untraced steps and report the median as ``step_time_s``.

CPU kernels differ from CUDA ones in ways that change bytes (a ``device: cpu`` prediction must
model these; a CUDA calibration must not copy them):

* SDPA runs ``_scaled_dot_product_flash_attention_for_cpu`` (saves output + fp32 logsumexp).
* Dropout (``lora.dropout > 0``) is ``bernoulli_`` + ``mul``: the saved mask has the *input's*
  dtype (fp32 for PEFT's fp32 adapters: 4 bytes per element), not CUDA's 1-byte bool mask.
* CPU autocast has its own op lists (``torch.autocast("cpu")``).

What does not run on CPU (raises :class:`UnsupportedSpec`): ``attention: flash_attention_2``
(no CPU kernel), ``loss: fused`` (Liger / cut-cross-entropy are Triton/CUDA only), multi-GPU sharding,
CPU offload, ``optimizer_in_backward``, offloaded checkpointing, GPTQ/AWQ. Paged bitsandbytes
optimizers run, but bitsandbytes falls back to ordinary (non-paged) state buffers on CPU; the
record says so in ``notes``.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from profiler.tracer import LiveTensorTracer, TraceResult, grad_labeler

NUM_LOSS_CHUNKS = 8
"""Chunks of the sequence dimension in :func:`chunked_cross_entropy` (torchtune's default)."""

IGNORE_INDEX = -100

_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

DEFAULTS: dict[str, Any] = {
    "method": "lora",
    "param_dtype": "bf16",
    "autocast": None,
    "optimizer": "adamw",
    "optimizer_in_backward": False,
    "gradient_checkpointing": True,
    "attention": "sdpa",
    "loss": "standard",
    "batch_size": 1,
    "seq_len": 2048,
    "num_gpus": 1,
    "sharding": "none",
    "cpu_offload": False,
}
"""Defaults for absent spec fields: the same as ``estimator.TrainingSpec``'s."""

LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.05,
    "targets": "all-linear",
    "adapter_dtype": "fp32",
    "modules_to_save": [],
}
QUANT_DEFAULTS: dict[str, Any] = {"type": "nf4", "double_quant": True}

_CONFIG_KEYS_TO_DROP = (
    "architectures",
    "auto_map",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "quantization_config",
    "_name_or_path",
)


class UnsupportedSpec(Exception):
    """The spec asks for something this backend cannot run; the message says what and why."""


# ----------------------------------------------------------------------------- spec handling
def normalize_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill every default (same defaults as the estimator) and return a new, JSON-ready dict."""
    out: dict[str, Any] = {**DEFAULTS, **copy.deepcopy(spec)}
    gc_value = out["gradient_checkpointing"]
    if isinstance(gc_value, str) and gc_value in ("true", "false"):
        out["gradient_checkpointing"] = gc_value == "true"
    if out["method"] in ("lora", "qlora"):
        out["lora"] = {**LORA_DEFAULTS, **(out.get("lora") or {})}
    else:
        out.pop("lora", None)
    if out["method"] == "qlora":
        out["quantization"] = {**QUANT_DEFAULTS, **(out.get("quantization") or {})}
    else:
        out.pop("quantization", None)
    return out


def check_supported(spec: dict[str, Any], backend: str) -> None:
    """Raise :class:`UnsupportedSpec` listing everything in a normalized spec the backend cannot run."""
    problems: list[str] = []
    model = spec.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("config"), dict)):
        problems.append("model must be an inline {'config': {...}} (catalog ids are resolved upstream)")
    if spec["method"] not in ("full", "lora", "qlora"):
        problems.append(f"method {spec['method']!r} is unknown")
    if spec["attention"] == "flash_attention_2":
        problems.append("attention flash_attention_2 has no CPU kernel")
    elif spec["attention"] not in ("sdpa", "eager"):
        problems.append(f"attention {spec['attention']!r} is unknown")
    if spec["loss"] == "fused":
        problems.append("loss fused (Liger / cut-cross-entropy) needs Triton/CUDA kernels")
    elif spec["loss"] not in ("standard", "chunked"):
        problems.append(f"loss {spec['loss']!r} is unknown")
    if spec["gradient_checkpointing"] not in (True, False):
        problems.append(f"gradient_checkpointing {spec['gradient_checkpointing']!r} (offload) is not run")
    if spec["optimizer"] not in _OPTIMIZERS:
        problems.append(f"optimizer {spec['optimizer']!r} is unknown")
    if spec.get("optimizer_in_backward"):
        problems.append("optimizer_in_backward is not implemented in the profiler")
    if spec.get("num_gpus", 1) != 1 or spec.get("sharding", "none") not in ("none", "ddp"):
        problems.append("multi-GPU sharding needs several GPUs")
    if spec.get("cpu_offload"):
        problems.append("cpu_offload is not run by the profiler")
    if spec["param_dtype"] not in _DTYPES or (spec["autocast"] not in (None, "bf16", "fp16")):
        problems.append("param_dtype must be fp32|bf16|fp16 and autocast null|bf16|fp16")
    if spec["method"] == "qlora":
        qtype = spec["quantization"]["type"]
        if qtype not in ("nf4", "fp4", "int8"):
            problems.append(f"quantization {qtype!r} is not a bitsandbytes format")
        if backend == "cpu-fake":
            problems.append("qlora is not simulated under FakeTensorMode (run it on backend cpu)")
    if backend == "cpu-fake" and spec["optimizer"] in _BNB_OPTIMIZERS:
        problems.append(f"optimizer {spec['optimizer']} (bitsandbytes) reads tensor values in step(): not simulated")
    if problems:
        raise UnsupportedSpec(f"not runnable on {backend}: " + "; ".join(problems))


def hf_config(spec: dict[str, Any], num_layers: int | None = None) -> Any:
    """The transformers config of ``spec['model']['config']``, optionally with fewer layers."""
    from transformers import AutoConfig

    fields = {k: v for k, v in spec["model"]["config"].items() if k not in _CONFIG_KEYS_TO_DROP}
    model_type = fields.pop("model_type", None)
    if not model_type:
        raise UnsupportedSpec("model config has no model_type")
    if num_layers is not None:
        fields["num_hidden_layers"] = num_layers
        if isinstance(fields.get("layer_types"), list):
            fields["layer_types"] = fields["layer_types"][:num_layers]
    fields["use_cache"] = False
    return AutoConfig.for_model(model_type, **fields)


# ----------------------------------------------------------------------------- model building
@dataclass
class BuiltModel:
    """A model ready to train, plus the modules the harness hooks and what it had to note."""

    model: nn.Module
    causal_lm: Any  # the transformers *ForCausalLM inside any PEFT wrapper (untyped HF class)
    notes: list[str] = field(default_factory=list)


def _silence_bnb() -> None:
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _compact_storages(model: nn.Module) -> None:
    """Give each parameter/buffer its own storage (loaded tensors can view one big mmap'd file)."""
    for module in model.modules():
        for p in list(module._parameters.values()):
            if p is None or p.device.type == "meta":
                continue
            if p.untyped_storage().nbytes() != p.numel() * p.element_size() and type(p) is nn.Parameter:
                p.data = p.data.clone()
        for name, b in list(module._buffers.items()):
            if b is None or b.device.type == "meta":
                continue
            if b.untyped_storage().nbytes() != b.numel() * b.element_size():
                module._buffers[name] = b.clone()


def _build_base(spec: dict[str, Any], num_layers: int | None, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    config = hf_config(spec, num_layers)
    dtype = _DTYPES[spec["param_dtype"]]
    ctx = torch.device("meta") if device == "meta" else contextlib.nullcontext()
    with ctx:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=spec["attention"])
    return model


def bnb_quantization_config(spec: dict[str, Any]) -> Any:
    """transformers' ``BitsAndBytesConfig`` for a normalized QLoRA spec (int8, or 4-bit nf4/fp4)."""
    from transformers import BitsAndBytesConfig

    _silence_bnb()
    quant = spec["quantization"]
    if quant["type"] == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant["type"],
        bnb_4bit_use_double_quant=bool(quant["double_quant"]),
        bnb_4bit_compute_dtype=_DTYPES[spec["param_dtype"]],
    )


def empty_measurement(spec: dict[str, Any], backend: str, num_layers: int | None) -> Measurement:
    """A :class:`Measurement` with nothing measured yet (filled in by the runner)."""
    return Measurement(
        spec=spec,
        backend=backend,
        trace=None,
        step_time_s=None,
        tokens_per_second=None,
        loss=None,
        num_layers=num_layers,
    )


def _quantized_base(spec: dict[str, Any], num_layers: int | None) -> Any:
    """QLoRA base: random bf16 model -> save_pretrained -> from_pretrained with bitsandbytes."""
    from transformers import AutoModelForCausalLM

    bnb_config = bnb_quantization_config(spec)
    random_model = _build_base(spec, num_layers, "cpu")
    with tempfile.TemporaryDirectory(prefix="tunecast-qlora-") as tmp:
        random_model.save_pretrained(tmp)
        del random_model
        model = AutoModelForCausalLM.from_pretrained(
            tmp,
            quantization_config=bnb_config,
            dtype=_DTYPES[spec["param_dtype"]],
            device_map="cpu",
            attn_implementation=spec["attention"],
        )
    _compact_storages(model)
    return model


def _enable_checkpointing(model: Any, kwargs: dict[str, Any]) -> None:
    """Per-layer non-reentrant checkpointing (transformers 5 renamed the method; same effect)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _quiet_transformers() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message=".*Paged optimizers are not supported on CPU.*")


def _lora_config(spec: dict[str, Any]) -> Any:
    from peft import LoraConfig

    lora = spec["lora"]
    return LoraConfig(
        r=int(lora["r"]),
        lora_alpha=lora["alpha"],
        lora_dropout=float(lora["dropout"]),
        target_modules=lora["targets"],
        modules_to_save=list(lora["modules_to_save"]) or None,
        task_type="CAUSAL_LM",
    )


def _cast_adapters(model: nn.Module, dtype: torch.dtype) -> None:
    for name, p in model.named_parameters():
        if "lora_" in name and p.dtype != dtype:
            p.data = p.data.to(dtype)


def build_model(spec: dict[str, Any], *, num_layers: int | None = None, device: str = "cpu") -> BuiltModel:
    """Build the model of a normalized spec with random weights, seeded by the caller.

    ``device="meta"`` builds without storage (for :mod:`profiler.simulate`). Method handling:

    * ``full``: ``from_config`` in ``param_dtype``, everything trainable.
    * ``lora``: the same, frozen, then PEFT ``get_peft_model``; ``autocast_adapter_dtype`` is True for
      ``adapter_dtype: fp32`` (PEFT's default: adapters fp32 on a bf16/fp16 model) and False for bf16,
      and adapters are then cast explicitly to the requested dtype if they still differ.
    * ``qlora``: bitsandbytes-quantized base (see :func:`_quantized_base`), then PEFT
      ``prepare_model_for_kbit_training`` (casts every non-quantized parameter to fp32, as users get
      it) with ``use_gradient_checkpointing`` set from the spec and ``use_reentrant=False``, then LoRA.

    Gradient checkpointing uses ``gradient_checkpointing_enable(use_reentrant=False)``.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    _quiet_transformers()
    notes: list[str] = []
    method = spec["method"]
    use_gc = bool(spec["gradient_checkpointing"])
    gc_kwargs = {"use_reentrant": False}
    if method == "qlora":
        if device != "cpu":
            raise UnsupportedSpec("qlora is only built on a real cpu device")
        base = _quantized_base(spec, num_layers)
        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=use_gc, gradient_checkpointing_kwargs=gc_kwargs
        )
        notes.append("prepare_model_for_kbit_training cast non-quantized params to fp32")
    else:
        base = _build_base(spec, num_layers, device)
        if use_gc:
            _enable_checkpointing(base, gc_kwargs)
    base.config.use_cache = False
    model: nn.Module = base
    if method in ("lora", "qlora"):
        for p in base.parameters():
            p.requires_grad_(False)
        adapter_dtype = _DTYPES[spec["lora"]["adapter_dtype"]]
        model = get_peft_model(base, _lora_config(spec), autocast_adapter_dtype=adapter_dtype == torch.float32)
        _cast_adapters(model, adapter_dtype)
    model.train()
    return BuiltModel(model=model, causal_lm=base, notes=notes)


def final_norm(causal_lm: nn.Module) -> nn.Module:
    """The norm applied to the last hidden states before ``lm_head`` (phase boundary in backward)."""
    decoder = None
    for attr in ("model", "gpt_neox", "transformer"):
        decoder = getattr(causal_lm, attr, None)
        if isinstance(decoder, nn.Module):
            break
    for name in ("norm", "final_layernorm", "final_layer_norm", "ln_f"):
        module = getattr(decoder, name, None)
        if isinstance(module, nn.Module):
            return module
    raise UnsupportedSpec(f"cannot find the final norm of {type(causal_lm).__name__}")


# ----------------------------------------------------------------------------- optimizers
def _bnb_optimizer(name: str) -> Any:
    import bitsandbytes as bnb

    _silence_bnb()
    return getattr(bnb.optim, name)


_BNB_OPTIMIZERS = ("adamw_8bit", "paged_adamw", "paged_adamw_8bit", "lion")
_OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw", "paged_adamw_8bit", "sgd", "adafactor", "lion")


def make_optimizer(spec: dict[str, Any], params: list[nn.Parameter]) -> tuple[torch.optim.Optimizer, list[str]]:
    """The optimizer of the spec over ``params``, and notes about CPU differences.

    adamw: ``torch.optim.AdamW(foreach=True)`` (CUDA's default path: foreach temporaries);
    adamw_8bit / paged_*: bitsandbytes ``AdamW8bit`` / ``PagedAdamW`` / ``PagedAdamW8bit`` (paged ones
    fall back to ordinary buffers on CPU); sgd: ``torch.optim.SGD(momentum=0.9, foreach=True)``;
    adafactor: ``transformers.optimization.Adafactor(scale_parameter=False, relative_step=False)``
    (HF Trainer's setting); lion: bitsandbytes ``Lion`` (32-bit state).
    """
    name = spec["optimizer"]
    lr = 1e-4
    notes: list[str] = []
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, foreach=True), notes
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=True), notes
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False), notes
    if name.startswith("paged_"):
        notes.append(
            "paged bitsandbytes optimizer runs non-paged on CPU: its states count in peak_allocated here,"
            " while on CUDA they live in managed memory outside torch's allocator"
        )
    bnb_name = {
        "adamw_8bit": "AdamW8bit",
        "paged_adamw": "PagedAdamW",
        "paged_adamw_8bit": "PagedAdamW8bit",
        "lion": "Lion",
    }[name]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _bnb_optimizer(bnb_name)(params, lr=lr), notes


# ----------------------------------------------------------------------------- the step
def chunked_cross_entropy(
    hidden: torch.Tensor, lm_head: nn.Module, labels: torch.Tensor, num_chunks: int = NUM_LOSS_CHUNKS
) -> torch.Tensor:
    """Mean next-token cross-entropy computed in chunks (torchtune ``CEWithChunkedOutputLoss`` style).

    Exactly: targets are ``labels`` shifted left by one with ``-100`` appended (as transformers does);
    ``hidden`` (batch, seq, h: the final norm's output) and the targets are split into ``num_chunks``
    chunks along the *sequence* dimension (``Tensor.chunk(dim=1)``: views, non-contiguous when
    batch > 1); for each chunk in turn: ``lm_head(chunk)`` (bf16 under a bf16 model) -> ``.float()`` ->
    ``F.cross_entropy(reduction="sum", ignore_index=-100)``; the chunk sums are added and divided by
    the number of non-ignored targets.

    Memory consequences the estimator must model: only one chunk's logits (``param_dtype``) and their
    fp32 copy exist at a time in forward, but autograd keeps every chunk's fp32 log-softmax output
    (``4V`` bytes per token in total) for backward, so chunking cuts the *transient* logit bytes, not
    the saved ones. When ``lm_head`` is trainable (full fine-tune, ``modules_to_save``) and batch > 1,
    each chunk's matmul also saves a contiguous copy of its (non-contiguous) hidden chunk
    (``2h`` bytes per token in all). In backward, one chunk's fp32 logit gradient is alive at a time.
    """
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    num_valid = (targets != IGNORE_INDEX).sum()
    total: torch.Tensor | None = None
    for h_chunk, t_chunk in zip(hidden.chunk(num_chunks, dim=1), targets.chunk(num_chunks, dim=1), strict=True):
        logits = lm_head(h_chunk).float()
        part = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            t_chunk.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total = part if total is None else total + part
    assert total is not None
    return total / num_valid


def _autocast(spec: dict[str, Any], device_type: str) -> contextlib.AbstractContextManager[Any]:
    if spec["autocast"] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=_DTYPES[spec["autocast"]])


def compute_loss(
    built: BuiltModel, spec: dict[str, Any], input_ids: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Forward + loss as the spec says (module docstring); returns only the loss scalar."""
    with _autocast(spec, input_ids.device.type):
        if spec["loss"] == "chunked":
            decoder = built.causal_lm.model
            hidden = decoder(input_ids=input_ids).last_hidden_state
            return chunked_cross_entropy(hidden, built.causal_lm.lm_head, labels)
        outputs = built.model(input_ids=input_ids, labels=labels)
        loss: torch.Tensor = outputs.loss
        del outputs
        return loss


def make_batch(spec: dict[str, Any], vocab_size: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids of shape (batch_size, seq_len), int64, drawn from the global RNG; labels = ids."""
    ids = torch.randint(0, vocab_size, (int(spec["batch_size"]), int(spec["seq_len"])), device=device)
    return ids, ids.clone()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Distinct parameters with ``requires_grad``, in module order."""
    return [p for p in model.parameters() if p.requires_grad]


def _quant_tensors(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Tensors hanging off a bitsandbytes parameter (QuantState absmax/code/offset, nested state, SCB)."""
    if depth > 3 or obj is None:
        return
    items = vars(obj).items() if hasattr(obj, "__dict__") else ()
    for key, value in items:
        if key.startswith("_") and key != "_SCB":
            continue
        if isinstance(value, torch.Tensor):
            yield value
        elif type(value).__name__ == "QuantState":
            yield from _quant_tensors(value, depth + 1)


def register_existing(
    tracer: LiveTensorTracer,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, ...],
) -> None:
    """Register what exists before the step: params, buffers, quant constants, optimizer states, batch."""
    for p in model.parameters():
        tracer.track(p, "trainable_params" if p.requires_grad else "weights")
        for t in _quant_tensors(p):
            tracer.track(t, "weights")
    for b in model.buffers():
        tracer.track(b, "weights")
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                tracer.track(value, "optimizer_states")
    for t in batch:
        tracer.track(t, "activations")


def training_step(
    built: BuiltModel,
    optimizer: torch.optim.Optimizer,
    spec: dict[str, Any],
    batch: tuple[torch.Tensor, torch.Tensor],
    tracer: LiveTensorTracer | None = None,
) -> float | None:
    """One step: forward+loss, backward, optimizer step, zero_grad(set_to_none=True).

    With a tracer, the step runs inside it with the phases of the module docstring; the loss value
    is returned as a float (None under fake tensors).
    """
    input_ids, labels = batch
    if tracer is None:
        loss = compute_loss(built, spec, input_ids, labels)
        loss.backward()
        value = _loss_value(loss)
        del loss
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return value

    handles: list[Any] = []

    def switch_to_layer_backward(grad: torch.Tensor) -> None:
        if tracer.phase == "loss_backward":
            tracer.set_phase("layer_backward")

    def on_norm_output(module: nn.Module, inputs: Any, output: Any) -> None:
        tracer.enter_head()
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(switch_to_layer_backward)

    handles.append(final_norm(built.causal_lm).register_forward_hook(on_norm_output))
    hook = grad_labeler(tracer)
    handles.extend(p.register_post_accumulate_grad_hook(hook) for p in trainable_parameters(built.model))
    register_existing(tracer, built.model, optimizer, batch)
    tracer.mark_start()
    try:
        with tracer:
            tracer.set_phase("forward")
            loss = compute_loss(built, spec, input_ids, labels)
            tracer.set_phase("loss_backward")
            loss.backward()
            if tracer.phase == "loss_backward":  # the norm hook never fired
                tracer.set_phase("layer_backward")
            value = _loss_value(loss)
            del loss
            tracer.set_phase("optimizer_step")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tracer.end()
    finally:
        for h in handles:
            h.remove()
    return value


def _loss_value(loss: torch.Tensor) -> float | None:
    from torch._subclasses.fake_tensor import FakeTensor

    if isinstance(loss, FakeTensor):
        return None
    return float(loss.detach())


# ----------------------------------------------------------------------------- running a spec
@dataclass
class Measurement:
    """What :func:`run_spec` measured; ``trace`` is None when the run failed."""

    spec: dict[str, Any]
    backend: str
    trace: TraceResult | None
    step_time_s: float | None
    tokens_per_second: float | None
    loss: float | None
    oom: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    num_layers: int | None = None
    params: dict[str, int] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's RNGs (numpy is not used by the step)."""
    random.seed(seed)
    torch.manual_seed(seed)


def param_counts(model: nn.Module) -> dict[str, int]:
    """Distinct parameter elements, total and trainable (a Params4bit counts its packed uint8 elements)."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {"total": total, "trainable": trainable}


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def run_spec(
    spec: dict[str, Any],
    *,
    num_layers: int | None = None,
    seed: int = 0,
    timed_steps: int = 3,
) -> Measurement:
    """Build the spec's model on CPU, run two steps, trace the second, then time ``timed_steps`` more.

    ``step_time_s`` is the median wall time of the untraced timed steps (the tracer slows a step).

    Failures become a :class:`Measurement` with ``error`` set (and ``oom`` for allocation failures);
    specs the CPU cannot run carry the :class:`UnsupportedSpec` message.
    """
    spec = normalize_spec(spec)
    measurement = empty_measurement(spec, "cpu", num_layers)
    try:
        check_supported(spec, "cpu")
        torch.set_grad_enabled(True)
        seed_everything(seed)
        built = build_model(spec, num_layers=num_layers, device="cpu")
        measurement.notes.extend(built.notes)
        measurement.params = param_counts(built.model)
        optimizer, notes = make_optimizer(spec, trainable_parameters(built.model))
        measurement.notes.extend(notes)
        batch = make_batch(spec, int(built.causal_lm.config.vocab_size))
        training_step(built, optimizer, spec, batch)
        gc.collect()
        tracer = LiveTensorTracer()
        measurement.loss = training_step(built, optimizer, spec, batch, tracer)
        measurement.trace = tracer.result()
        del tracer
        if timed_steps > 0:
            times = []
            for _ in range(timed_steps):
                start = time.perf_counter()
                training_step(built, optimizer, spec, batch)
                times.append(time.perf_counter() - start)
            elapsed = statistics.median(times)
            measurement.step_time_s = elapsed
            measurement.tokens_per_second = spec["batch_size"] * spec["seq_len"] / elapsed
    except UnsupportedSpec as exc:
        measurement.error = f"unsupported: {exc}"
    except (RuntimeError, MemoryError, ValueError, TypeError, NotImplementedError, ImportError) as exc:
        measurement.oom = _is_oom(exc)
        measurement.error = f"{type(exc).__name__}: {exc}"
    return measurement

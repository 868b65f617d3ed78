"""The memory model: every term of a fine-tuning step's GPU memory, by name, per phase.

Sources, cited next to each formula: Korthikanti et al. 2022 (arXiv 2205.05198) for activation
accounting; Dettmers et al. 2023 (QLoRA) and bitsandbytes ``functional.py`` / ``optim/optimizer.py``
for quant-state and 8-bit optimizer layouts; PEFT ``tuners/lora/layer.py`` (adapter input cast,
dropout) and ``utils/other.py::prepare_model_for_kbit_training`` (fp32 upcast); transformers
``modeling_llama.py`` (RMSNorm upcast), ``integrations/sdpa_attention.py`` (native GQA) and
``loss/loss_utils.py::ForCausalLMLoss`` (fp32 logits); torch ``optim/adamw.py`` (foreach
temporaries); DeepSpeed ZeRO (Rajbhandari et al. 2020) and PyTorch FSDP (Zhao et al. 2023) for
sharding; ``../shared/design/MEMORY_MODEL.md`` for the CPU-measured per-layer accounting.

Shape of the answer (MEMORY_MODEL.md): every phase's live bytes are ``C + P*T + Q*T*s`` for
``T = batch * seq`` tokens (``Q`` is the s² score matrix of eager attention), so the peak, the
largest batch and the largest sequence that fit are closed forms, not searches.

Left out, by design: torch.compile fusions (they lower activations, see ``unmodelled:compile``
tags in the published measurements), padding waste in unpacked batches, KV caches (training only),
fragmentation beyond the allocator-slack coefficient, and NCCL internals beyond a fixed buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from estimator.architecture import Architecture, adapter_params, parse_architecture, select_lora_targets
from estimator.dtypes import nbytes, quantized_bits_per_weight
from estimator.gpus import find_gpu
from estimator.models import resolve_model
from estimator.spec import (
    Attention,
    Checkpointing,
    Device,
    DType,
    Loss,
    Method,
    Optimizer,
    QuantType,
    Sharding,
    TrainingSpec,
)

# Torchtune's CEWithChunkedOutputLoss and lit-gpt both use 8-ish chunks; the harness uses 8.
LOSS_CHUNKS = 8
# bitsandbytes 8-bit optimizers: blockwise quantization, block of 256, fp32 absmax; tensors
# smaller than ``min_8bit_size`` = 4096 elements keep 32-bit (fp32) states (optim/optimizer.py).
BNB_8BIT_BLOCK = 256
BNB_MIN_8BIT = 4096
BNB_MIN_PAGED = 100_000


class Phase(StrEnum):
    """The four phases of a step (SPEC.md ``peak_phase``)."""

    FORWARD = "forward"
    LOSS_BACKWARD = "loss_backward"
    LAYER_BACKWARD = "layer_backward"
    OPTIMIZER_STEP = "optimizer_step"


CATEGORIES = (
    "weights", "quant_constants", "trainable_params", "gradients", "optimizer_states", "activations",
    "transient",
)  # fmt: skip


@dataclass(frozen=True)
class Affine:
    """``c + p*T + q*T*s`` bytes for ``T = batch*seq`` tokens and sequence length ``s``."""

    c: float = 0.0
    p: float = 0.0
    q: float = 0.0

    def at(self, batch: int, seq: int) -> float:
        t = batch * seq
        return self.c + self.p * t + self.q * t * seq

    def __add__(self, other: Affine) -> Affine:
        return Affine(self.c + other.c, self.p + other.p, self.q + other.q)

    def __sub__(self, other: Affine) -> Affine:
        return Affine(self.c - other.c, self.p - other.p, self.q - other.q)


@dataclass(frozen=True)
class PhaseTerms:
    """What is alive at one phase's peak, by category."""

    parts: dict[str, Affine]
    sum_: Affine = field(default_factory=Affine)

    rows: tuple[tuple[str, float, float, float], ...] = ()

    def __post_init__(self) -> None:
        c = p = q = 0.0
        for a in self.parts.values():
            c, p, q = c + a.c, p + a.p, q + a.q
        object.__setattr__(self, "sum_", Affine(c, p, q))
        object.__setattr__(self, "rows", tuple((k, a.c, a.p, a.q) for k, a in self.parts.items()))

    def total(self) -> Affine:
        """The sum of every category (computed once)."""
        return self.sum_


@dataclass(frozen=True)
class StaticTerms:
    """Bytes that do not depend on the batch: per GPU, after sharding."""

    weights: int
    quant_constants: int
    trainable_params: int
    gradients: int
    optimizer_states: int
    paged_optimizer_states: int  # CUDA managed memory: seen by NVML, not by torch's allocator
    head_gradients: int  # gradients that exist by the loss-backward phase (lm_head, final norm)
    largest_param_grad: int  # optimizer-in-backward: one parameter's gradient at a time
    step_temporaries: int
    gathered_params: int  # FSDP/ZeRO-3: unsharded units alive as a transient
    ddp_buckets: int
    dequant_transient: int  # QLoRA: one dequantized weight during forward/backward
    embedding_grad_transient: int  # the embedding's gradient being formed (and summed when tied)
    trainable_count: int
    adapter_count: int
    quantized_count: int
    total_count: int


@dataclass(frozen=True)
class MemoryModel:
    """Everything about one spec except its batch and sequence length, ready to evaluate.

    ``candidates`` are (phase, terms) pairs; a phase may have several candidate peaks (the start
    and the end of the layer backward), and the larger one at a given (batch, seq) is its peak.
    """

    arch: Architecture
    static: StaticTerms
    candidates: tuple[tuple[Phase, PhaseTerms], ...]
    act_per_layer: Affine  # saved activations of one decoder layer (bytes per token, + s term)
    assumptions: tuple[str, ...] = field(default=())

    def phases(self, batch: int, seq: int) -> dict[Phase, dict[str, int]]:
        """Bytes by category at each phase's peak."""
        t = batch * seq
        ts = t * seq
        best: dict[Phase, tuple[float, PhaseTerms]] = {}
        for ph, terms in self.candidates:
            a = terms.sum_
            total = a.c + a.p * t + a.q * ts
            cur = best.get(ph)
            if cur is None or total > cur[0]:
                best[ph] = (total, terms)
        return {ph: {k: int(c + p * t + q * ts + 0.5) for k, c, p, q in terms.rows} for ph, (_, terms) in best.items()}

    @property
    def total_coefs(self) -> tuple[tuple[float, float, float], ...]:
        """(c, p, q) of every candidate's total, computed once."""
        cached: tuple[tuple[float, float, float], ...] | None = self.__dict__.get("_total_coefs")
        if cached is None:
            cached = tuple((t.sum_.c, t.sum_.p, t.sum_.q) for _, t in self.candidates)
            object.__setattr__(self, "_total_coefs", cached)
        return cached


# ---------------------------------------------------------------------------------------------
# Dtypes and framework conventions


@dataclass(frozen=True)
class _Dt:
    p: int  # parameter bytes (param_dtype)
    res: int  # residual-stream bytes between layers
    mm: int  # bytes of a linear's output inside a layer
    ac: int | None  # autocast bytes, or None
    ad: int  # adapter parameter bytes
    cb: int  # bytes of an adapter matmul's input (autocast dtype, else adapter dtype)
    logit: int  # bytes of the lm_head output
    upcast_kbit: bool  # PEFT prepare_model_for_kbit_training cast non-quantized params to fp32
    mask: int  # dropout mask bytes per element
    converts: bool  # PEFT casts adapter inputs to the adapter dtype


def framework(spec: TrainingSpec) -> str:
    """'hf' (transformers + PEFT conventions) or 'native' (torchtune / lit-gpt style pure-dtype loops).

    ``stack.framework`` says it; otherwise adapters left in fp32 (PEFT's default) or autocast mean
    the HF stack, and bf16 adapters without autocast mean a native pure-bf16 loop.
    """
    fw = spec.stack.get("framework", "").lower()
    if fw in ("hf", "transformers", "peft", "trl", "axolotl", "llama-factory", "unsloth"):
        return "hf"
    if fw in ("torchtune", "litgpt", "lit-gpt", "native"):
        return "native"
    if spec.autocast is not None:
        return "hf"
    if spec.lora is not None and spec.lora.adapter_dtype is DType.FP32:
        return "hf"
    return "native" if spec.method is not Method.FULL else "hf"


def _dtypes(spec: TrainingSpec) -> _Dt:
    p = nbytes(spec.param_dtype)
    ac = None if spec.autocast is None else nbytes(spec.autocast)
    upcast = spec.method is Method.QLORA and framework(spec) == "hf"
    res = 4 if (p == 4 or upcast) else p
    mm = ac if ac is not None else res if spec.method is Method.QLORA else p
    ad = nbytes(spec.lora.adapter_dtype) if spec.lora is not None else p
    cb = ac if ac is not None else ad
    # The lm_head is not quantized; under the kbit upcast it is fp32 (fp32 logits without autocast).
    logit = ac if ac is not None else (4 if upcast else p)
    # Dropout masks: bool (1 byte) from CUDA's fused dropout; the CPU kernel keeps the mask as a
    # tensor of the input's dtype (measured by the CPU tracer, tests/profiler).
    # PEFT casts an adapter's input to the adapter dtype unless autocast is on, and it asks
    # ``torch.is_autocast_enabled()``, which on CPU only reports CUDA autocast: so on CPU the cast
    # (and a dropout mask in the adapter dtype) happens under autocast too (CPU-traced).
    converts = spec.lora is not None and (ac is None or spec.device is Device.CPU)
    mask = 1 if spec.device is Device.CUDA else (ad if converts else res)
    return _Dt(p=p, res=res, mm=mm, ac=ac, ad=ad, cb=cb, logit=logit, upcast_kbit=upcast, mask=mask,
               converts=converts)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Activations


def _group_saved(width: int, in_bytes: int, trainable: int, adapters: int, dt: _Dt, dropout: bool,
                 already_saved: bool, cast_needed: bool, quant_saves: bool = False,
                 quant_copies: float = 0.0) -> float:  # fmt: skip
    """Bytes per token saved for backward at the input of a group of linears sharing one input.

    A trainable linear saves its input (for the weight gradient); a frozen one saves nothing.
    Under autocast a linear whose input is not in the autocast dtype saves its own cast copy
    (autocast caches casts of leaf weights only, not of activations). A PEFT adapter casts its
    input to the adapter dtype first (``_cast_input_dtype``), then applies dropout: with dropout
    or a cast each adapter keeps its own copy, plus the dropout mask. ``quant_saves``: bitsandbytes
    before 0.43.2 kept every 4-bit linear's input on its autograd context even for frozen weights
    (``MatMul4Bit.forward``: ``ctx.tensors = (A, B)``), so the group input is saved regardless.
    ``quant_copies``: bytes per element that frozen LLM.int8 linears keep of their input (each
    saves its own fp16 copy for the input gradient; CPU-traced with bitsandbytes 0.50).
    """
    shared = quant_saves
    own = quant_copies
    mismatched_ac = dt.ac is not None and in_bytes != dt.ac
    for _ in range(trainable):
        if mismatched_ac:
            own += dt.ac or 0
        else:
            shared = True
    for _ in range(adapters):
        if dropout:
            own += dt.mask + dt.cb
        elif cast_needed or (dt.ac is not None and in_bytes != dt.ac):
            own += dt.cb
        else:
            shared = True
    return width * (own + (in_bytes if shared and not already_saved else 0))


def _layer_activations(spec: TrainingSpec, arch: Architecture, dt: _Dt, adapted: dict[str, int],
                       moe: bool) -> Affine:  # fmt: skip
    """Saved activation bytes per token for one decoder layer, without checkpointing.

    The accounting follows Korthikanti et al. 2022 §4 applied to the HF implementations: count the
    tensors autograd saves, once per storage. Checked against live-tensor traces on CPU
    (MEMORY_MODEL.md: full bf16 ``20h+4kv+8i``; LoRA all-linear bf16 ``16h+4kv+8i``; fp32 adapters
    with autocast ``24h+4kv+8i``; without ``36h+4kv+10i``).
    """
    h, full = arch.hidden, spec.method is Method.FULL
    drop = spec.lora is not None and spec.lora.dropout > 0 and not full
    r = spec.lora.r if spec.lora is not None else 0
    res, mm = dt.res, dt.mm
    bytes_ = 0.0

    # Norms. RMSNorm (HF, torchtune) upcasts and saves the fp32 input; with a trainable weight the
    # normalised input is saved too. LayerNorm saves its input plus fp32 mean and rstd.
    n_norm = arch.norms_per_layer
    if arch.norm_is_layernorm:
        # GPT-NeoX's parallel residual feeds both norms the same input: one saved copy.
        n_inputs = 1 if arch.parallel_block else n_norm
        bytes_ += n_inputs * res * h + 8 * n_norm
    else:
        # Gemma, OLMo-2 and gpt-oss apply the weight in fp32: a trainable weight saves the fp32 x.
        bytes_ += n_norm * (4 * h + ((4 if arch.fp32_norm_weight else res) * h if full else 0))
    if arch.family in ("qwen3", "qwen3_moe", "gemma3_text", "olmo2"):  # q/k norms on projections
        qk_w = 4 if arch.fp32_norm_weight else mm
        bytes_ += 4 * (arch.q_dim + arch.kv_dim) + (qk_w * (arch.q_dim + arch.kv_dim) if full else 0)

    def ad(*names: str) -> int:
        return sum(adapted.get(n, 0) for n in names)

    cast_res = dt.converts and dt.ad != res and not full
    cast_mm = dt.converts and dt.ad != mm and not full
    qs = spec.method is Method.QLORA and _version(spec.stack.get("bitsandbytes")) < (0, 43, 2)
    int8 = 2.0 if spec.quantization is not None and spec.quantization.type is QuantType.INT8 else 0.0
    n_qkv = _n_qkv(arch)
    # torchtune and lit-gpt call fused activation kernels (F.gelu(approximate="tanh"), F.silu);
    # transformers' gelu_new is a Python expression that saves four tensors.
    act_saves = 1 if framework(spec) == "native" else arch.act_saves
    gated = 2 if arch.family != "phi3" else 1

    # Attention input (q, k, v share the norm output).
    bytes_ += _group_saved(h, res, n_qkv if full else 0, ad("q", "k", "v", "qkv"), dt, drop, False, cast_res, qs,
                           int8 * n_qkv)  # fmt: skip

    # Attention core. SDPA / flash save q, k, v, the output and an fp32 logsumexp per head; with
    # no padding mask transformers >= 4.48 runs GQA natively (no repeat_kv copies).
    heads = arch.heads
    o_width = arch.v_dim * (heads // arch.kv_heads) if not arch.mla else arch.v_dim
    if spec.attention is Attention.EAGER:
        # Eager: repeat_kv copies, fp32 softmax output and the probabilities cast to the compute
        # dtype: 4 + mm bytes per (head, key position) (MEMORY_MODEL.md: "6h + 6*a*s").
        kv_w = arch.q_dim
        bytes_ += mm * (arch.q_dim + 2 * kv_w)
        s2 = heads * (4 + (mm if mm < 4 else 0))  # in fp32 the probabilities are the softmax output
        if arch.attn_softcap:
            s2 += heads * mm  # tanh(scores / cap) is saved for its backward (Gemma 2)
        o_saved = False
    elif spec.device is Device.CPU and _masked_sdpa(spec, arch):
        # An explicit mask sends CPU SDPA to its math kernel, in fp32: the upcast query, the key and
        # value expanded to every head, and the fp32 probabilities (CPU-traced, Falcon / BigCode);
        # attention dropout adds its fp32 mask and the dropped probabilities.
        bytes_ += 4 * 3 * arch.q_dim
        s2 = 4 * heads * (3 if arch.attn_dropout > 0 else 1)
        o_saved = False
    else:
        # With a fused qkv projection the value is a view of the fused output: saving it keeps the
        # whole q+k+v storage alive (q and k get new storage from the rotary embedding).
        v_kept = arch.q_dim + arch.kv_dim + arch.v_dim if n_qkv == 1 else arch.v_dim
        bytes_ += mm * (arch.q_dim + arch.kv_dim + v_kept + o_width) + 4 * heads
        s2 = 0
        o_saved = True  # the output's storage is the o_proj input (a view after transpose)
    bytes_ += _group_saved(o_width, mm, 1 if full else 0, ad("o"), dt, drop, o_saved, cast_mm, qs, int8)

    # MLP. Gated (SwiGLU / GeGLU): gate output (saved by the activation), activation output and
    # up output (saved by the product), and the down projection's input when needed.
    def mlp(i: int, width_mult: int = 1, pre: str = "") -> float:
        out = 0.0
        if arch.gated_mlp:
            out += (2 + act_saves) * mm * i
            gu = ad(pre + "gate", pre + "up", pre + "gate_up")
            out += _group_saved(h, res, gated if full else 0, gu, dt, drop, False, cast_res, qs, int8 * gated)
        else:
            out += act_saves * mm * i  # fc1 output, saved by the activation
            # phi's MLP reads the attention's norm output: saved once, with the q/k/v group.
            shared_in = arch.parallel_block and arch.norms_per_layer == 1
            out += _group_saved(
                h, res, 1 if full else 0, ad("up"), dt, drop, False, cast_res, qs and not shared_in, int8
            )
        out += _group_saved(i, mm, 1 if full else 0, ad(pre + "down"), dt, drop, False, cast_mm, qs, int8)
        return out * width_mult

    constant = 0.0
    if moe:
        # transformers >= 5 runs the experts as grouped matmuls over token copies gathered per
        # expert (CPU-traced): per routed copy the fused gate_up output (2i) and the activation;
        # when the expert weights get gradients (full, or LoRA through PEFT's ParamWrapper), the
        # gathered input and the down projection's input too. ParamWrapper adds the adapter delta
        # to the expert weights in forward, and the grouped matmul keeps that merged copy: one
        # layer's expert weights per MoE layer, whatever the batch.
        k, mi = arch.experts_per_token, arch.moe_intermediate
        w_grad = full or ad("experts") > 0
        bytes_ += 4 * arch.experts + 8 * k  # router probabilities (fp32 softmax), indices, weights
        bytes_ += _group_saved(h, res, 1 if full else 0, ad("router"), dt, False, False, cast_res)
        bytes_ += k * ((2 + act_saves) * mm * mi + ((mm * mi + res * h) if w_grad else 0))
        if full or ad("router"):
            bytes_ += k * mm * h  # expert outputs, saved by the product with trainable routing weights
        if arch.shared_intermediate:
            bytes_ += mlp(arch.shared_intermediate, pre="shared_")
        if ad("experts") and not full:
            merged_bytes = 4 if dt.upcast_kbit else dt.p  # fp32 after PEFT's kbit upcast
            constant = sum(x.weight_numel for x in arch.linears if x.expert) / max(arch.moe_layers, 1) * merged_bytes
    else:
        bytes_ += mlp(arch.dense_intermediate)

    # Adapter bottlenecks: lora_A's output (r wide) is saved by lora_B.
    # Residual-branch dropouts enabled in the config keep one mask each (CUDA: bool; CPU: the
    # input's dtype).
    bytes_ += arch.resid_dropout_sites * h * (1 if spec.device is Device.CUDA else res)

    n_adapters = sum(v for k, v in adapted.items() if k not in ("experts", "router"))
    bytes_ += n_adapters * r * dt.cb
    return Affine(c=constant, p=bytes_, q=s2)


def _version(v: str | None) -> tuple[int, ...]:
    """A version string as a comparable tuple; absent means the current release (compares high)."""
    if not v:
        return (999,)
    parts: list[int] = []
    for piece in v.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _masked_sdpa(spec: TrainingSpec, arch: Architecture) -> bool:
    """Falcon and GPT-BigCode (transformers 5) hand SDPA a materialised 4-D mask, not is_causal."""
    return spec.attention is Attention.SDPA and arch.family in ("falcon", "gpt_bigcode")


def _n_qkv(arch: Architecture) -> int:
    """Linears reading the attention input: one fused qkv, MLA's two, or separate q, k, v."""
    if arch.family in ("phi3", "gpt_neox", "falcon", "gpt_bigcode"):
        return 1
    return 2 if arch.mla else 3


def _first_layer_discount(spec: TrainingSpec, arch: Architecture, dt: _Dt, adapted: dict[str, int]) -> float:
    """Bytes per token that the first decoder layer does not save when nothing before it trains.

    With a frozen embedding the first layer's input does not require grad, so autograd saves
    nothing for its first norm, and the dropout masks of the adapters on that input are not
    needed (only the adapter inputs are, for the adapter weights' gradients). CPU-traced.
    """
    if spec.method is Method.FULL or (spec.lora and "embed_tokens" in spec.lora.modules_to_save):
        return 0.0
    h = arch.hidden
    norm = float(dt.res * h + 8) if arch.norm_is_layernorm else 4.0 * h
    n_first = sum(adapted.get(k, 0) for k in ("q", "k", "v", "qkv"))
    if arch.parallel_block and arch.norms_per_layer == 1:
        n_first += adapted.get("up", 0)  # phi: the MLP reads the same norm output
    drop = spec.lora is not None and spec.lora.dropout > 0
    masks = n_first * dt.mask * h if drop else 0.0
    int8 = spec.quantization is not None and spec.quantization.type is QuantType.INT8
    copies = 2.0 * _n_qkv(arch) * h if int8 else 0.0
    return norm + masks + copies


def _adapted_per_layer(spec: TrainingSpec, arch: Architecture) -> dict[str, int]:
    """Adapters per decoder layer by role (q, k, v, qkv, o, gate, up, gate_up, down, other)."""
    if spec.lora is None or spec.method is Method.FULL:
        return {}
    roles = {
        "q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
        "down_proj": "down", "qkv_proj": "qkv", "query_key_value": "qkv", "c_attn": "qkv", "gate_up_proj": "gate_up",
        "dense": "o", "c_proj": "o", "fc1": "up", "fc2": "down", "dense_h_to_4h": "up", "dense_4h_to_h": "down",
        "c_fc": "up", "q_a_proj": "q", "q_b_proj": "q", "kv_a_proj_with_mqa": "k", "kv_b_proj": "v",
    }  # fmt: skip
    kinds = {x.name: ("router" if x.router else "experts" if x.expert else "") for x in arch.linears}
    out: dict[str, int] = {}
    for a in select_lora_targets(arch, spec.lora.targets):
        base = a.name.split("[")[-1].rstrip("]") if "[" in a.name else a.name
        leaf = base.rsplit(".", 1)[-1]
        kind = kinds.get(a.name.split("[")[0], "")
        if kind:
            role = kind  # MoE experts (PEFT ParamWrapper) and routers: no per-token adapter input
        else:
            role = "down" if a.name.endswith("mlp.c_proj") or base == "mlp.c_proj" else roles.get(leaf, "other")
            if a.name.startswith("shared_expert"):
                role = "shared_" + role
        per_layer = arch.moe_layers if kind or role.startswith("shared_") else arch.layers
        out[role] = out.get(role, 0) + max(1, round(a.count / max(per_layer, 1)))
    return out


# ---------------------------------------------------------------------------------------------
# Static terms


def _static(spec: TrainingSpec, arch: Architecture, dt: _Dt) -> tuple[StaticTerms, list[str]]:
    notes: list[str] = []
    n = spec.num_gpus
    full = spec.method is Method.FULL
    total = arch.total_params

    # Which linears are quantized (QLoRA): bitsandbytes replaces nn.Linear modules except the
    # output layer (transformers ``get_keys_to_not_convert``); routers stay in the load dtype.
    # MoE experts are nn.Linear modules before transformers 5 (quantized); from 5 on they are
    # fused 3-D parameters that bitsandbytes leaves alone, and PEFT's kbit preparation then
    # upcasts them to fp32 (CPU-traced with transformers 5.24: QLoRA on an MoE then holds more
    # than LoRA does).
    # transformers-5 module layouts matter only on the HF stack (torchtune / lit-gpt quantize their own).
    transformers5 = framework(spec) == "hf" and _version(spec.stack.get("transformers")) >= (5,)
    experts_quantized = not transformers5
    # Falcon's FalconLinear subclasses nn.Linear and transformers 5 leaves it unquantized (traced).
    linears_quantized = not (transformers5 and arch.family == "falcon")
    quantized = 0
    quant_bytes = 0.0
    const_bytes = 0.0
    if spec.method is Method.QLORA and spec.quantization is not None:
        payload_bits, const_bits = quantized_bits_per_weight(spec.quantization.type, spec.quantization.double_quant)
        for x in arch.linears:
            if x.router or (x.expert and not experts_quantized) or not linears_quantized:
                continue
            quantized += x.weight_numel
            quant_bytes += x.weight_numel * payload_bits / 8
            if spec.quantization.type is QuantType.INT8:
                const_bytes += x.count * x.d_out * 4  # fp32 scale per output row (SCB)
            else:
                const_bytes += x.weight_numel * const_bits / 8
        notes.append(
            f"quantized {spec.quantization.type.value} base linears"
            + (" with double quant" if spec.quantization.double_quant else "")
        )
    unquantized = total - quantized
    # Non-quantized base parameters: fp32 after PEFT's prepare_model_for_kbit_training (HF stack).
    base_bytes_per = 4 if dt.upcast_kbit else dt.p
    if dt.upcast_kbit:
        notes.append("QLoRA on the HF stack: prepare_model_for_kbit_training upcasts non-quantized params to fp32")

    # Trainable parameters.
    adapters = 0
    saved_modules = 0
    if full:
        trainable = total
        train_bytes_per = dt.p
        weights = 0.0
    else:
        assert spec.lora is not None
        r = spec.lora.r
        adapters = adapter_params(arch, spec.lora.targets, r)
        for m in spec.lora.modules_to_save:
            saved_modules += (
                arch.embedding_numel if m == "embed_tokens" else (arch.lm_head_numel or arch.embedding_numel)
            )
        trainable = adapters + saved_modules
        train_bytes_per = dt.ad
        weights = quant_bytes + unquantized * base_bytes_per
    # PEFT's modules_to_save keeps the original module and a trainable copy (ModulesToSaveWrapper).
    trainable_bytes: float = adapters * dt.ad + saved_modules * (4 if dt.upcast_kbit else dt.p)
    if full:
        trainable_bytes = total * train_bytes_per

    grad_bytes: float = trainable_bytes  # gradients take the dtype of their parameter
    if full and dt.ac is not None and dt.p == 4:
        notes.append("mixed precision: fp32 master weights and gradients, bf16 compute")

    # Optimizer states (torch optim/*.py, bitsandbytes optim/optimizer.py, Adafactor paper §3).
    opt, paged = _optimizer_bytes(spec, arch, trainable, trainable_bytes, full, adapters)
    if spec.optimizer in (Optimizer.PAGED_ADAMW, Optimizer.PAGED_ADAMW_8BIT) and spec.device is Device.CUDA:
        # bitsandbytes pages only state buffers of tensors with >= 1e5 elements
        # (``Optimizer8bit.get_state_buffer``); smaller ones are ordinary torch allocations.
        big, small = _split_by_size(arch, spec, BNB_MIN_PAGED)
        paged = opt * big / max(big + small, 1)
        opt -= paged
        notes.append(
            "paged optimizer states (tensors >= 1e5 elements) live in CUDA managed memory: in "
            "peak_device, not in peak_allocated"
        )

    # Step temporaries: torch's foreach AdamW/Lion hold about one copy of the states' dtype-sized
    # parameters (``_foreach_sqrt`` of exp_avg_sq) while stepping; bitsandbytes steps per tensor.
    if spec.optimizer is Optimizer.ADAMW:
        step_tmp = float(trainable_bytes)
    elif spec.optimizer is Optimizer.ADAFACTOR:
        # transformers' Adafactor steps one tensor at a time in fp32: the gradient, the parameter,
        # the squared gradient and the update of the largest tensor (CPU-measured: 4 copies).
        step_tmp = 4.0 * _largest_trainable(arch, spec) * 4
    else:
        step_tmp = 0.0

    largest_grad = _largest_trainable(arch, spec) * (train_bytes_per if full else dt.ad)
    head_grads = 0.0
    if full:
        head_grads = (arch.lm_head_numel or arch.embedding_numel) * dt.p + arch.hidden * dt.p * 2

    # Sharding (ZeRO stages 1-3, FSDP = ZeRO-3), per GPU.
    gathered = 0.0
    ddp = 0.0
    retained = 0.0
    frozen_weights = weights
    if n > 1:
        s = spec.sharding
        if s in (Sharding.ZERO1, Sharding.ZERO2, Sharding.ZERO3, Sharding.FSDP):
            opt /= n
            paged /= n
            step_tmp /= n
        if s in (Sharding.ZERO2, Sharding.ZERO3, Sharding.FSDP):
            grad_bytes /= n
            head_grads /= n
        if s in (Sharding.ZERO3, Sharding.FSDP):
            # Loading: lit-gpt (Fabric, 2023) and torchtune (early 2024) build the whole model on
            # every GPU before wrapping it, and that unsharded copy stays allocated next to the
            # shards: their published 2- and 4-GPU LoRA rows equal the full weights + the shard +
            # the step's activations. Meta-device init or rank-0 broadcast (current torchtune,
            # accelerate) avoid it; ``stack.fsdp_init`` says which (auto: native frameworks do,
            # unless the whole model could not fit one GPU, in which case they cannot have).
            mode = spec.stack.get("fsdp_init", "auto").lower()
            unsharded = frozen_weights + const_bytes + trainable_bytes
            gpu = find_gpu(spec.gpu) if spec.gpu else None
            auto = mode == "auto" and framework(spec) == "native" and (gpu is None or unsharded <= gpu.usable_bytes)
            if not spec.cpu_offload and (mode == "full" or auto):
                retained = unsharded
                notes.append(
                    "sharded init: the whole model built on each GPU before sharding stays allocated "
                    "(set stack.fsdp_init=sharded for meta-device or rank-0 loading)"
                )
            trainable_bytes /= n
            frozen_weights /= n
            const_bytes /= n
            quant_bytes /= n
            # Unsharded transients: two decoder layers (the current one and the prefetched next),
            # plus the root unit (embeddings, final norm, lm_head) that FSDP keeps gathered.
            layer_params = (total - arch.embedding_numel - arch.lm_head_numel) / arch.layers
            if spec.method is Method.QLORA:
                layer_bytes = layer_params * (quant_bytes + const_bytes) * n / max(quantized, 1)
            else:
                layer_bytes = layer_params * dt.p
            root = (arch.embedding_numel + arch.lm_head_numel) * (base_bytes_per if not full else dt.p)
            gathered = 2 * layer_bytes + root * (n - 1) / n
            notes.append(f"{s.value}: parameters, gradients and optimizer states sharded over {n} GPUs")
        if s is Sharding.DDP:
            ddp = float(grad_bytes)  # DDP's flat gradient buckets (gradient_as_bucket_view=False)
            notes.append("DDP: every GPU holds a full replica plus gradient buckets")
        if spec.cpu_offload:
            opt, grad_bytes, head_grads, step_tmp = 0.0, 0.0, 0.0, 0.0
            trainable_bytes, frozen_weights, const_bytes, quant_bytes = 0.0, 0.0, 0.0, 0.0
            notes.append("CPU offload: sharded parameters, gradients and optimizer states live in CPU memory")

    if spec.optimizer_in_backward:
        notes.append("optimizer in backward: each gradient is freed after its parameter's step")

    # The embedding gradient at the end of backward: a dense V x h tensor in the parameter's dtype,
    # plus the sum with the lm_head's gradient when the two are tied (measured on CPU).
    emb_grad = 0.0
    if full or "embed_tokens" in (spec.lora.modules_to_save if spec.lora else []):
        emb_grad = arch.embedding_numel * train_bytes_per * (2 if arch.tied else 1)
    # QLoRA: bitsandbytes dequantizes one weight to the compute dtype for each matmul.
    deq = 0.0
    if spec.method is Method.QLORA:
        deq = arch.largest_linear * (dt.ac or 2)

    st = StaticTerms(
        weights=round(frozen_weights + retained + arch.buffer_bytes),  # buffers are replicated, never sharded
        quant_constants=round(const_bytes),
        trainable_params=round(trainable_bytes),
        gradients=round(grad_bytes),
        optimizer_states=round(opt),
        paged_optimizer_states=round(paged),
        head_gradients=round(head_grads),
        largest_param_grad=round(largest_grad),
        step_temporaries=round(step_tmp),
        gathered_params=round(gathered),
        ddp_buckets=round(ddp),
        dequant_transient=round(deq),
        embedding_grad_transient=round(emb_grad),
        trainable_count=trainable,
        adapter_count=adapters,
        quantized_count=quantized,
        total_count=total,
    )
    return st, notes


def _largest_trainable(arch: Architecture, spec: TrainingSpec) -> int:
    if spec.method is Method.FULL:
        return max(arch.embedding_numel, arch.lm_head_numel, arch.largest_linear)
    assert spec.lora is not None
    r = spec.lora.r
    sizes = [r * max(a.d_in, a.d_out) for a in select_lora_targets(arch, spec.lora.targets)]
    if spec.lora.modules_to_save:
        sizes.append(arch.embedding_numel)
    return max(sizes, default=0)


def _optimizer_bytes(spec: TrainingSpec, arch: Architecture, trainable: int, trainable_bytes: float,
                     full: bool, adapters: int) -> tuple[float, float]:  # fmt: skip
    """(GPU-allocated optimizer state bytes, 0.0). Paged variants are moved by the caller."""
    o = spec.optimizer
    if o in (Optimizer.ADAMW, Optimizer.PAGED_ADAMW):
        if o is Optimizer.PAGED_ADAMW:
            return 8.0 * trainable, 0.0  # bitsandbytes 32-bit states are fp32
        return 2.0 * trainable_bytes, 0.0  # torch: exp_avg, exp_avg_sq like the parameter
    if o in (Optimizer.ADAMW_8BIT, Optimizer.PAGED_ADAMW_8BIT):
        big, small = _split_by_size(arch, spec, BNB_MIN_8BIT)
        per_big = 2 * (1 + 4 / BNB_8BIT_BLOCK)  # two uint8 states + fp32 absmax per 256-block
        return big * per_big + small * 8.0, 0.0
    if o is Optimizer.SGD:
        return float(trainable_bytes), 0.0  # one momentum buffer like the parameter
    if o is Optimizer.LION:
        return 4.0 * trainable, 0.0  # bitsandbytes Lion (32-bit): one fp32 momentum per parameter
    # Adafactor (Shazeer & Stern 2018): factored second moment, rows + cols per matrix, fp32.
    tensors = _trainable_tensors(arch, spec)
    return float(sum(4 * (r + c) if c > 1 else 4 * r for r, c, _ in tensors)), 0.0


def _trainable_tensors(arch: Architecture, spec: TrainingSpec) -> list[tuple[int, int, int]]:
    """(rows, cols, count) of every trainable tensor family."""
    out: list[tuple[int, int, int]] = []
    if spec.method is Method.FULL:
        for x in arch.linears:
            out.append((x.d_out, x.d_in, x.count))
            if x.bias:
                out.append((x.d_out, 1, x.count))
        out.append((arch.vocab, arch.hidden, 1))
        if arch.lm_head_numel:
            out.append((arch.vocab, arch.hidden, 1))
        out.append((arch.norm_numel, 1, 1))
        return out
    assert spec.lora is not None
    r = spec.lora.r
    for a in select_lora_targets(arch, spec.lora.targets):
        out.append((r, a.d_in, a.count))
        out.append((a.d_out, r, a.count))
    for _m in spec.lora.modules_to_save:
        out.append((arch.vocab, arch.hidden, 1))
    return out


def _split_by_size(arch: Architecture, spec: TrainingSpec, threshold: int) -> tuple[int, int]:
    big = small = 0
    for rows, cols, count in _trainable_tensors(arch, spec):
        n = rows * cols
        if n >= threshold:
            big += n * count
        else:
            small += n * count
    return big, small


# ---------------------------------------------------------------------------------------------
# Putting the phases together


def _loss_terms(
    spec: TrainingSpec, arch: Architecture, dt: _Dt, head_trainable: bool
) -> tuple[Affine, Affine, Affine, Affine]:
    """(saved at the forward peak, forward extra, saved at the loss-backward peak, its extra) per token.

    The saved part is alive from the loss forward until its backward (an activation); the extras
    are transient work on top of it.

    Standard (transformers ``ForCausalLMLoss``): logits in ``logit`` bytes, upcast to fp32, and
    ``log_softmax`` saves its fp32 output (4V). Backward: the fp32 gradient of the log-probs, the
    saved output and the input gradient coexist: 12V (MEMORY_MODEL.md, CPU-measured); the caller
    is assumed to drop the logits before backward (HF Trainer does). Chunked (torchtune
    CEWithChunkedOutputLoss, lit-gpt): every chunk's log-probs stay saved (4V total) but the
    fp32 work exists for one chunk at a time. Fused (Liger / cut-cross-entropy): logits are
    never materialised; about 10 bytes x hidden per token of chunk work.
    """
    v, h = arch.vocab, arch.hidden
    up = 4 if dt.logit < 4 else 0  # .float() copy, absent when logits are already fp32
    saved_bwd: Affine | None = None
    # Logit soft-capping (Gemma 2: cap * tanh(logits / cap)) saves the tanh output.
    cap = Affine(p=dt.logit * v) if arch.final_softcap and spec.loss is not Loss.FUSED else Affine()
    if spec.loss is Loss.STANDARD:
        saved = Affine(p=4 * v)
        fwd = Affine(p=(dt.logit + up) * v)
        bwd = Affine(p=8 * v)
    elif spec.loss is Loss.CHUNKED:
        c = LOSS_CHUNKS
        saved = Affine(p=4 * v)
        fwd = Affine(p=(dt.logit + up) * v / c)
        bwd = Affine(p=8 * v / c)
        if head_trainable:
            # The lm_head weight gets one gradient per chunk, summed by autograd as they come: the
            # running sum, the new chunk's gradient and their sum (3 x V x h). That peak comes in
            # the third chunk's backward, when two chunks' saved log-probs are already freed
            # (CPU-traced). Left out: with a batch > 1 each chunk's matmul also keeps a contiguous
            # copy of its hidden-state chunk (res x h per token, under 1 % of the loss term).
            bwd = Affine(c=3 * v * h * dt.p)
            saved_bwd = Affine(p=4 * v * (c - 2) / c)
    else:
        saved = Affine(p=dt.res * h)
        fwd = Affine(p=10 * h)
        bwd = Affine()
    return saved + cap, fwd, (saved if saved_bwd is None else saved_bwd) + cap, bwd


def build_memory_model(spec: TrainingSpec) -> MemoryModel:
    """The memory model of a spec (the caller caches it by the spec's settings)."""
    _, cfg = resolve_model(spec.model)
    arch = parse_architecture(cfg)
    return _build(spec, arch)


def _build(spec: TrainingSpec, arch: Architecture) -> MemoryModel:
    dt = _dtypes(spec)
    st, notes = _static(spec, arch, dt)
    adapted = _adapted_per_layer(spec, arch)
    full = spec.method is Method.FULL

    dense = _layer_activations(spec, arch, dt, adapted, moe=False)
    moe = _layer_activations(spec, arch, dt, adapted, moe=True) if arch.moe_layers else Affine()
    per_layer_total = Affine(
        c=moe.c * arch.moe_layers,
        p=dense.p * arch.dense_layers + moe.p * arch.moe_layers,
        q=dense.q * arch.dense_layers + moe.q * arch.moe_layers,
    )
    one_layer = moe if arch.moe_layers and moe.p > dense.p else dense
    h, res = arch.hidden, dt.res

    # Outside the decoder stack: the final norm (fp32 input for RMSNorm) and the lm_head input
    # when the lm_head is trainable; the embedding output is layer 0's input (counted there).
    final = Affine(p=(res * h + 8) if arch.norm_is_layernorm else 4 * h)
    if arch.embd_dropout:
        final = final + Affine(p=h * (1 if spec.device is Device.CUDA else res))  # embedding dropout mask
    if full:
        final = final + Affine(p=res * h * (1 if arch.norm_is_layernorm else 2))

    # Checkpointing: only each layer's input survives the forward (HF ``checkpoint`` saves the
    # hidden states; offload moves them to CPU memory).
    ckpt = spec.gradient_checkpointing
    # Eager attention gets a 4-D additive causal mask, batch x 1 x s x s in the residual dtype,
    # built once per forward and shared by every layer (transformers ``masking_utils``).
    eager_mask = Affine(q=res) if spec.attention is Attention.EAGER or _masked_sdpa(spec, arch) else Affine()
    if ckpt is Checkpointing.ON:
        kept = Affine(p=arch.layers * res * h) + eager_mask  # checkpoints keep the mask too
    elif ckpt is Checkpointing.OFFLOAD:
        kept = Affine(p=res * h)  # one layer's input in flight to/from the host
        notes.append("offloaded checkpoints: layer inputs kept in CPU memory")
    else:
        kept = per_layer_total - Affine(p=_first_layer_discount(spec, arch, dt, adapted))
    recompute = one_layer if ckpt is not Checkpointing.OFF else Affine()

    # Backward transients (CPU-traced, tests/profiler): the final norm's backward runs in fp32 on
    # the upcast input (about five h-wide fp32 temporaries: 20h); inside a layer the gradient of the
    # residual stream and of its branch (2 x res x h), plus for eager attention the fp32 gradients of
    # the scores and of the softmax input (8 bytes per head and key position).
    norm_bwd = Affine(p=20 * h)
    in_layer_bwd = Affine(p=2 * res * h, q=8 * arch.heads if spec.attention is Attention.EAGER else 0)
    # While a checkpointed layer is recomputed, the forward's locals at its end are alive too: the
    # down projection's input (and the adapter's cast copy of it), the layer's residual and its
    # normed input (CPU-traced).
    i_end = arch.moe_intermediate * arch.experts_per_token if arch.moe_layers else arch.dense_intermediate
    down_adapted = adapted.get("down", 0) > 0
    cast_down = down_adapted and dt.ad != dt.mm and not full
    in_flight = Affine(p=dt.mm * i_end + (dt.cb * i_end if cast_down else 0) + 2 * res * h)
    first_discount = Affine(p=_first_layer_discount(spec, arch, dt, adapted))

    head_trainable = full or "lm_head" in (spec.lora.modules_to_save if spec.lora else [])
    saved_loss, fwd_loss, saved_loss_bwd, bwd_loss = _loss_terms(spec, arch, dt, head_trainable)
    activations_all = kept + final

    grads_fwd = st.gradients if spec.gradient_accumulation > 1 and not spec.optimizer_in_backward else 0
    if spec.optimizer_in_backward:
        grads_bwd_end = st.largest_param_grad
        grads_head = min(st.head_gradients, st.largest_param_grad)
    else:
        grads_bwd_end = st.gradients
        grads_head = max(st.head_gradients, grads_fwd)

    static_parts = {
        "weights": Affine(c=st.weights),
        "quant_constants": Affine(c=st.quant_constants),
        "trainable_params": Affine(c=st.trainable_params),
        "optimizer_states": Affine(c=st.optimizer_states),
    }
    gathered = Affine(c=st.gathered_params + st.dequant_transient)
    # The loss backward touches only the (unquantized) lm_head: no dequantized weight is alive.
    gathered_head = Affine(c=st.gathered_params)

    cands: list[tuple[Phase, PhaseTerms]] = []
    cands.append((Phase.FORWARD, PhaseTerms({
        **static_parts,
        "gradients": Affine(c=grads_fwd),
        "activations": activations_all + saved_loss + (eager_mask if ckpt is Checkpointing.OFF else Affine()),
        "transient": fwd_loss + gathered,
    })))  # fmt: skip
    cands.append((Phase.LOSS_BACKWARD, PhaseTerms({
        **static_parts,
        "gradients": Affine(c=grads_fwd),  # the loss backward peaks before any weight gradient
        "activations": activations_all + saved_loss_bwd,
        "transient": bwd_loss + gathered_head + Affine(c=st.ddp_buckets),
    })))  # fmt: skip
    # Layer backward. It starts with the final norm's backward (every activation alive, the loss
    # work freed); then layer by layer, gradients grow while activations (or checkpoints) are
    # released. Live bytes are linear in the layer index, so the top and the bottom layer are the
    # candidates, plus the embedding's backward at the very end.
    emb_grad = st.embedding_grad_transient // 2 if arch.tied else st.embedding_grad_transient
    below_head = max(0, grads_bwd_end - grads_head - (0 if arch.tied else emb_grad))
    per_layer_grad = below_head // arch.layers
    grads_bottom = max(grads_head, grads_bwd_end - (0 if arch.tied else emb_grad) - per_layer_grad)
    extra = gathered + Affine(c=st.ddp_buckets)
    cands.append((Phase.LAYER_BACKWARD, PhaseTerms({
        **static_parts,
        "gradients": Affine(c=grads_head),
        "activations": activations_all,
        "transient": norm_bwd + extra,
    })))  # fmt: skip
    if ckpt is Checkpointing.OFF:
        bottom_act = one_layer - first_discount
        top = None
    else:
        # CPU traces show the end-of-forward locals alive at the bottom layer's recompute (with the
        # gradients of every layer above) but not at the top layer's, where the recompute stops
        # early once the last saved tensor is rebuilt (torch.utils.checkpoint's early stop).
        bottom_act = Affine(p=res * h) + eager_mask + recompute + in_flight
        top = kept + recompute
    # At a recomputed layer's peak (the end of its forward) no backward work is alive yet; without
    # checkpointing the bottom layer's peak is inside its backward.
    bottom_tr = in_layer_bwd + extra if top is None else extra
    if top is not None:
        cands.append((Phase.LAYER_BACKWARD, PhaseTerms({
            **static_parts,
            "gradients": Affine(c=grads_head),
            "activations": top,
            "transient": extra,
        })))  # fmt: skip
    if grads_bwd_end > grads_head or top is not None:
        cands.append((Phase.LAYER_BACKWARD, PhaseTerms({
            **static_parts,
            "gradients": Affine(c=grads_bottom),
            "activations": bottom_act,
            "transient": bottom_tr,
        })))  # fmt: skip
    if grads_bwd_end > grads_head:
        cands.append((Phase.LAYER_BACKWARD, PhaseTerms({
            **static_parts,
            "gradients": Affine(c=grads_bwd_end - (0 if arch.tied else emb_grad)),
            "activations": Affine(),
            "transient": extra + Affine(c=st.embedding_grad_transient),
        })))  # fmt: skip
    if not spec.optimizer_in_backward:
        cands.append((Phase.OPTIMIZER_STEP, PhaseTerms({
            **static_parts,
            "gradients": Affine(c=st.gradients),
            "activations": Affine(),
            "transient": Affine(c=st.step_temporaries),
        })))  # fmt: skip
    return MemoryModel(arch=arch, static=st, candidates=tuple(cands), act_per_layer=one_layer,
                       assumptions=tuple(notes))  # fmt: skip

"""Parse an HF config into a normalised architecture and an exact parameter inventory.

Per module (embeddings, attention projections, MLP or experts, norms, lm_head, tied or not), so
LoRA targets and quantization act on the right matrices. Shapes follow the transformers
implementations of each family (``modeling_<family>.py``); ``tests/test_inventory.py`` builds every
catalog architecture on the meta device and checks the totals exactly, and the LoRA counts against
peft. Leaves out: vision towers of multimodal checkpoints (text model only), MTP heads
(DeepSeek-V3 ``num_nextn_predict_layers``), non-persistent buffers (rotary tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

SUPPORTED_FAMILIES = (
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3",
    "gemma3_text", "phi3", "olmo2", "deepseek_v3", "gpt_oss", "llama4", "llama4_text",
    "gpt_neox", "phi", "falcon", "gpt_bigcode",
)  # fmt: skip

# Canonical LoRA target names (SPEC.md) and, per role, the family-native module names.
CANONICAL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Linear:
    """A family of identical linear maps: ``count`` instances of ``d_in -> d_out`` in the model.

    ``parts`` splits a fused module (qkv, gate_up) into canonical pieces so that a LoRA target
    such as ``q_proj`` on a fused qkv adapts only the query slice (lit-gpt's LoRAQKVLinear).
    ``expert`` marks MoE expert weights: in transformers >= 5 they are fused 3-D parameters, not
    ``nn.Linear``, so bitsandbytes does not quantize them and ``all-linear`` LoRA skips them.
    """

    name: str
    d_in: int
    d_out: int
    count: int
    bias: bool = False
    parts: tuple[tuple[str, int], ...] = ()
    expert: bool = False
    router: bool = False

    @property
    def weight_numel(self) -> int:
        return self.count * self.d_in * self.d_out

    @property
    def numel(self) -> int:
        return self.count * (self.d_in * self.d_out + (self.d_out if self.bias else 0))


@dataclass(frozen=True)
class Architecture:
    """A decoder-only transformer, normalised. Sizes are element counts, not bytes."""

    family: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    q_dim: int  # query width per token (heads * qk head dim)
    kv_dim: int  # key (= value unless MLA) width per token
    v_dim: int  # value width per token
    vocab: int
    tied: bool
    gated_mlp: bool
    dense_layers: int
    dense_intermediate: int
    moe_layers: int
    moe_intermediate: int
    experts: int
    experts_per_token: int
    shared_intermediate: int
    norm_is_layernorm: bool
    norms_per_layer: int  # hidden-sized norms inside each decoder layer
    parallel_block: bool
    act_saves: int  # i-wide tensors the MLP activation saves: 1 for fused kernels, 4 for gelu_new
    fp32_norm_weight: bool  # RMSNorm weight applied in fp32 (Gemma's 1 + weight, OLMo-2, gpt-oss)
    buffer_bytes: int  # persistent-or-not buffers that live on the device (GPT-BigCode's causal mask)
    attn_dropout: float  # dropout on attention probabilities while training (config)
    resid_dropout_sites: int  # residual-branch dropouts per layer with p > 0 (config)
    embd_dropout: bool  # dropout on the embedding output with p > 0 (config)
    attn_softcap: bool  # tanh soft-capping of attention scores (Gemma 2): eager only
    final_softcap: bool  # tanh soft-capping of the logits (Gemma 2)
    linears: tuple[Linear, ...]
    embedding_numel: int
    lm_head_numel: int
    norm_numel: int
    other_numel: int
    mla: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def linear_numel(self) -> int:
        return sum(x.numel for x in self.linears)

    @property
    def total_params(self) -> int:
        return self.embedding_numel + self.lm_head_numel + self.norm_numel + self.other_numel + self.linear_numel

    @property
    def active_params(self) -> int:
        """Parameters touched per token (MoE: top-k experts plus shared ones)."""
        if not self.experts:
            return self.total_params
        expert = sum(x.numel for x in self.linears if x.expert)
        return self.total_params - expert + expert * self.experts_per_token // self.experts

    @property
    def largest_linear(self) -> int:
        """Elements of the largest single weight matrix (a dequantized transient under QLoRA)."""
        return max((x.d_in * x.d_out for x in self.linears), default=0)


def text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The language-model part of a (possibly multimodal) config."""
    tc = cfg.get("text_config")
    if isinstance(tc, dict) and cfg.get("model_type") in ("gemma3", "llama4", "mistral3", "qwen2_5_vl"):
        return tc
    return cfg


def _get(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    return default


@lru_cache(maxsize=512)
def _parse_cached(key: str) -> Architecture:
    import json

    return _parse(json.loads(key))


def parse_architecture(cfg: dict[str, Any]) -> Architecture:
    """The normalised architecture of an HF config (cached on the config's JSON text).

    Raises ``ValueError`` for an unsupported ``model_type`` and ``KeyError`` for a missing field.
    """
    import json

    return _parse_cached(json.dumps(cfg, sort_keys=True))


def _parse(raw: dict[str, Any]) -> Architecture:
    top_type = raw.get("model_type")
    if top_type is None and any("RW" in a or "Falcon" in a for a in raw.get("architectures", [])):
        raw = {**raw, "model_type": "falcon"}
    cfg = text_config(raw)
    family = cfg.get("model_type")
    if family not in SUPPORTED_FAMILIES:
        raise ValueError(f"unsupported model_type {family!r}")
    if family == "gemma3":  # a gemma3 config without text_config: the text fields are top-level
        family = "gemma3_text"
    builder = _BUILDERS.get(family, _llama_like)
    return builder(family, cfg)


# Larger than any real model by orders of magnitude; bounds the work a hostile config can cause.
MAX_DIMENSION = 10_000_000


def _positive(name: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v > MAX_DIMENSION:
        raise ValueError(f"config field {name} must be a positive integer up to {MAX_DIMENSION:,}, got {v!r}")
    return v


def _common(cfg: dict[str, Any]) -> tuple[int, int, int, int, int, int]:
    h = _positive("hidden_size", _get(cfg, "hidden_size", "n_embd", "d_model"))
    layers = _positive("num_hidden_layers", _get(cfg, "num_hidden_layers", "n_layer", "num_layers"))
    a = _positive("num_attention_heads", _get(cfg, "num_attention_heads", "n_head"))
    kvh = _positive("num_key_value_heads", _get(cfg, "num_key_value_heads", default=a))
    hd = _positive("head_dim", _get(cfg, "head_dim", default=h // a))
    v = _positive("vocab_size", cfg["vocab_size"])
    return h, layers, a, kvh, hd, v


# Activations written as Python expressions (transformers ``activations.py``: NewGELUActivation,
# FastGELUActivation) save their input, its cube/tanh and products: 4 tensors instead of 1.
_PYTHON_GELUS = frozenset({"gelu_new", "gelu_fast", "gelu_python", "quick_gelu"})
_DEFAULT_ACT = {"phi": "gelu_new", "gpt_neox": "gelu", "falcon": "gelu", "gpt_bigcode": "gelu_pytorch_tanh"}


def _softcap(family: str, cfg: dict[str, Any], key: str, gemma2_default: float) -> bool:
    """Whether a soft-capping value is set (Gemma 2's config defaults set both)."""
    if key in cfg:
        return cfg[key] is not None
    return family == "gemma2" and gemma2_default is not None


# Dropout defaults of configs that train with dropout unless told otherwise (GPTBigCodeConfig: 0.1).
_DROPOUT_DEFAULTS = {"gpt_bigcode": 0.1}
# Residual-branch dropouts per layer (attention output, MLP output) where a config can enable them.
_RESID_SITES = {"gpt_bigcode": 2, "gpt_neox": 2, "falcon": 2, "phi": 1}


def _dropout(cfg: dict[str, Any], family: str, keys: tuple[str, ...]) -> float:
    for k in keys:
        if cfg.get(k) is not None:
            v = cfg[k]
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0
    return _DROPOUT_DEFAULTS.get(family, 0.0)


# Family defaults for tie_word_embeddings when the config does not say (transformers configs).
_TIED_DEFAULT = {"gemma": True, "gemma2": True, "gemma3_text": True, "falcon": True, "gpt_bigcode": True}


def _tied(family: str, cfg: dict[str, Any]) -> bool:
    v = cfg.get("tie_word_embeddings")
    return bool(_TIED_DEFAULT.get(family, False) if v is None else v)


def _attn_linears(family: str, cfg: dict[str, Any], h: int, n: int, a: int, kvh: int, hd: int) -> list[Linear]:
    q, kv = a * hd, kvh * hd
    if family == "phi3":
        return [
            Linear("qkv_proj", h, q + 2 * kv, n, parts=(("q_proj", q), ("k_proj", kv), ("v_proj", kv))),
            Linear("o_proj", q, h, n),
        ]
    bias_all = bool(cfg.get("attention_bias", family == "gpt_oss"))
    qkv_bias = bias_all or family == "qwen2"
    return [
        Linear("q_proj", h, q, n, qkv_bias),
        Linear("k_proj", h, kv, n, qkv_bias),
        Linear("v_proj", h, kv, n, qkv_bias),
        Linear("o_proj", q, h, n, bias_all),
    ]


def _gated(n: int, h: int, i: int, bias: bool = False, fused: bool = False) -> list[Linear]:
    if fused:
        return [
            Linear("gate_up_proj", h, 2 * i, n, bias, parts=(("gate_proj", i), ("up_proj", i))),
            Linear("down_proj", i, h, n, bias),
        ]
    return [
        Linear("gate_proj", h, i, n, bias),
        Linear("up_proj", h, i, n, bias),
        Linear("down_proj", i, h, n, bias),
    ]


def _experts(n_moe: int, e: int, h: int, i: int, bias: bool = False) -> list[Linear]:
    """MoE experts as fused 3-D parameters (transformers >= 5: ``gate_up_proj`` and ``down_proj``)."""
    c = n_moe * e
    return [
        Linear("experts.gate_up_proj", h, 2 * i, c, bias, parts=(("gate_proj", i), ("up_proj", i)), expert=True),
        Linear("experts.down_proj", i, h, c, bias, expert=True),
    ]


def _arch(
    family: str,
    cfg: dict[str, Any],
    linears: list[Linear],
    *,
    norms_per_layer: int,
    extra_norm_numel: int = 0,
    other_numel: int = 0,
    layernorm: bool = False,
    gated: bool = True,
    dense_layers: int | None = None,
    dense_i: int | None = None,
    moe_layers: int = 0,
    moe_i: int = 0,
    experts: int = 0,
    top_k: int = 0,
    shared_i: int = 0,
    parallel: bool = False,
    q_dim: int | None = None,
    kv_dim: int | None = None,
    v_dim: int | None = None,
    mla: bool = False,
    lm_head_bias: bool = False,
    extra_embedding: int = 0,
    extra_buffer: int = 0,
) -> Architecture:
    h, n, a, kvh, hd, v = _common(cfg)
    tied = _tied(family, cfg)
    norm_w = 2 * h if layernorm else h
    act = str(cfg.get("hidden_act") or cfg.get("hidden_activation") or _DEFAULT_ACT.get(family, "silu"))
    final_norm = norm_w
    return Architecture(
        family=family,
        hidden=h,
        layers=n,
        heads=a,
        kv_heads=kvh,
        head_dim=hd,
        q_dim=q_dim if q_dim is not None else a * hd,
        kv_dim=kv_dim if kv_dim is not None else kvh * hd,
        v_dim=v_dim if v_dim is not None else kvh * hd,
        vocab=v,
        tied=tied,
        gated_mlp=gated,
        dense_layers=n - moe_layers if dense_layers is None else dense_layers,
        dense_intermediate=dense_i if dense_i is not None else int(_get(cfg, "intermediate_size", default=4 * h)),
        moe_layers=moe_layers,
        moe_intermediate=moe_i,
        experts=experts,
        experts_per_token=top_k,
        shared_intermediate=shared_i,
        norm_is_layernorm=layernorm,
        norms_per_layer=norms_per_layer,
        parallel_block=parallel,
        act_saves=4 if act in _PYTHON_GELUS else 1,
        fp32_norm_weight=family.startswith("gemma") or family in ("olmo2", "gpt_oss"),
        buffer_bytes=extra_buffer,
        attn_dropout=_dropout(cfg, family, ("attn_pdrop", "attention_dropout")),
        resid_dropout_sites=_RESID_SITES.get(family, 0)
        if _dropout(cfg, family, ("resid_pdrop", "hidden_dropout")) > 0
        else 0,
        embd_dropout=_dropout(cfg, family, ("embd_pdrop",)) > 0,
        attn_softcap=_softcap(family, cfg, "attn_logit_softcapping", 50.0),
        final_softcap=_softcap(family, cfg, "final_logit_softcapping", 30.0),
        linears=tuple(x for x in linears if x.count > 0),
        embedding_numel=v * h + extra_embedding,
        lm_head_numel=0 if tied else v * h + (v if lm_head_bias else 0),
        norm_numel=n * norms_per_layer * norm_w + extra_norm_numel + final_norm,
        other_numel=other_numel,
        mla=mla,
    )


def _llama_like(family: str, cfg: dict[str, Any]) -> Architecture:
    """llama, mistral, qwen2, qwen3, olmo2, gemma, gemma2, gemma3_text, phi3."""
    h, n, a, kvh, hd, _ = _common(cfg)
    i = int(cfg["intermediate_size"])
    lin = _attn_linears(family, cfg, h, n, a, kvh, hd)
    lin += _gated(n, h, i, bias=bool(cfg.get("mlp_bias", False)), fused=family == "phi3")
    norms, extra = 2, 0
    if family in ("qwen3", "gemma3_text"):
        extra = n * 2 * hd  # q_norm, k_norm over head_dim
    if family == "olmo2":
        extra = n * (a * hd + kvh * hd)  # q_norm, k_norm over the full projection width
    if family in ("gemma2", "gemma3_text"):
        norms = 4  # input, post_attention, pre_feedforward, post_feedforward
    return _arch(family, cfg, lin, norms_per_layer=norms, extra_norm_numel=extra)


def _mixtral(family: str, cfg: dict[str, Any]) -> Architecture:
    h, n, a, kvh, hd, _ = _common(cfg)
    e, k, i = int(cfg["num_local_experts"]), int(cfg["num_experts_per_tok"]), int(cfg["intermediate_size"])
    lin = _attn_linears(family, cfg, h, n, a, kvh, hd)
    lin += [Linear("gate", h, e, n, router=True), *_experts(n, e, h, i)]
    return _arch(family, cfg, lin, norms_per_layer=2, moe_layers=n, moe_i=i, experts=e, top_k=k, dense_layers=0)


def _qwen3_moe(family: str, cfg: dict[str, Any]) -> Architecture:
    h, n, a, kvh, hd, _ = _common(cfg)
    e, k = int(cfg["num_experts"]), int(cfg["num_experts_per_tok"])
    mi, di = int(cfg["moe_intermediate_size"]), int(cfg["intermediate_size"])
    step = _positive("decoder_sparse_step", cfg.get("decoder_sparse_step", 1))
    only = set(cfg.get("mlp_only_layers") or [])
    n_moe = sum(1 for li in range(n) if li not in only and e > 0 and (li + 1) % step == 0)
    lin = _attn_linears(family, cfg, h, n, a, kvh, hd)
    lin += [Linear("gate", h, e, n_moe, router=True), *_experts(n_moe, e, h, mi), *_gated(n - n_moe, h, di)]
    return _arch(
        family, cfg, lin, norms_per_layer=2, extra_norm_numel=n * 2 * hd,
        moe_layers=n_moe, moe_i=mi, experts=e, top_k=k, dense_i=di,
    )  # fmt: skip


def _deepseek_v3(family: str, cfg: dict[str, Any]) -> Architecture:
    """Multi-head latent attention (MLA) + DeepSeekMoE (transformers ``modeling_deepseek_v3``)."""
    h, n, a, _, _, _ = _common(cfg)
    qlr, kvlr = cfg.get("q_lora_rank"), int(cfg["kv_lora_rank"])
    nope, rope, vhd = int(cfg["qk_nope_head_dim"]), int(cfg["qk_rope_head_dim"]), int(cfg["v_head_dim"])
    qk = nope + rope
    bias = bool(cfg.get("attention_bias", False))
    lin: list[Linear] = []
    extra_norm = n * kvlr
    if qlr:
        lin += [Linear("q_a_proj", h, int(qlr), n, bias), Linear("q_b_proj", int(qlr), a * qk, n)]
        extra_norm += n * int(qlr)
    else:
        lin += [Linear("q_proj", h, a * qk, n)]
    lin += [
        Linear("kv_a_proj_with_mqa", h, kvlr + rope, n, bias),
        Linear("kv_b_proj", kvlr, a * (nope + vhd), n),
        Linear("o_proj", a * vhd, h, n, bias),
    ]
    first_dense = int(cfg.get("first_k_dense_replace", 0))
    n_moe = n - first_dense
    e, k = int(cfg["n_routed_experts"]), int(cfg["num_experts_per_tok"])
    mi, di = int(cfg["moe_intermediate_size"]), int(cfg["intermediate_size"])
    si = mi * int(cfg.get("n_shared_experts", 0) or 0)
    lin += [
        *_gated(first_dense, h, di),
        Linear("gate", h, e, n_moe, router=True),
        *_experts(n_moe, e, h, mi),
        *[Linear(f"shared_experts.{x.name}", x.d_in, x.d_out, x.count, parts=x.parts) for x in _gated(n_moe, h, si)],
    ]
    return _arch(
        family, cfg, lin, norms_per_layer=2, extra_norm_numel=extra_norm,
        moe_layers=n_moe, moe_i=mi, experts=e, top_k=k, shared_i=si, dense_i=di,
        q_dim=a * qk, kv_dim=a * qk, v_dim=a * vhd, mla=True,
    )  # fmt: skip


def _gpt_oss(family: str, cfg: dict[str, Any]) -> Architecture:
    h, n, a, kvh, hd, _ = _common(cfg)
    e, k, i = int(cfg["num_local_experts"]), int(cfg["num_experts_per_tok"]), int(cfg["intermediate_size"])
    lin = _attn_linears(family, cfg, h, n, a, kvh, hd)
    lin += [Linear("router", h, e, n, bias=True, router=True), *_experts(n, e, h, i, bias=True)]
    return _arch(
        family, cfg, lin, norms_per_layer=2, other_numel=n * a,  # attention sinks: one per head
        moe_layers=n, moe_i=i, experts=e, top_k=k, dense_layers=0,
    )  # fmt: skip


def _llama4(family: str, cfg: dict[str, Any]) -> Architecture:
    h, n, a, kvh, hd, _ = _common(cfg)
    e, k = int(cfg["num_local_experts"]), int(cfg.get("num_experts_per_tok", 1))
    mi, di = int(cfg["intermediate_size"]), int(cfg["intermediate_size_mlp"])
    moe_list = cfg.get("moe_layers")
    if moe_list is None:
        step = int(cfg.get("interleave_moe_layer_step", 1))
        moe_list = [li for li in range(n) if (li + 1) % step == 0] if step > 0 else []
    n_moe = len(moe_list)
    lin = _attn_linears(family, cfg, h, n, a, kvh, hd)
    lin += [
        Linear("router", h, e, n_moe, router=True),
        *_experts(n_moe, e, h, mi),
        *[Linear(f"shared_expert.{x.name}", x.d_in, x.d_out, x.count) for x in _gated(n_moe, h, mi)],
        *_gated(n - n_moe, h, di),
    ]
    return _arch(
        "llama4_text", cfg, lin, norms_per_layer=2,
        moe_layers=n_moe, moe_i=mi, experts=e, top_k=k, shared_i=mi, dense_i=di,
    )  # fmt: skip


def _gpt_neox(family: str, cfg: dict[str, Any]) -> Architecture:
    h, n, _, _, _, _ = _common(cfg)
    i = int(cfg.get("intermediate_size", 4 * h))
    lin = [
        Linear("query_key_value", h, 3 * h, n, True, parts=(("q_proj", h), ("k_proj", h), ("v_proj", h))),
        Linear("dense", h, h, n, True, parts=(("o_proj", h),)),
        Linear("dense_h_to_4h", h, i, n, True, parts=(("up_proj", i),)),
        Linear("dense_4h_to_h", i, h, n, True, parts=(("down_proj", h),)),
    ]
    parallel = bool(cfg.get("use_parallel_residual", True))
    return _arch(family, cfg, lin, norms_per_layer=2, layernorm=True, gated=False, dense_i=i, parallel=parallel)


def _phi(family: str, cfg: dict[str, Any]) -> Architecture:
    h, n, a, kvh, hd, _ = _common(cfg)
    i = int(cfg.get("intermediate_size", 4 * h))
    q, kv = a * hd, kvh * hd
    lin = [
        Linear("q_proj", h, q, n, True),
        Linear("k_proj", h, kv, n, True),
        Linear("v_proj", h, kv, n, True),
        Linear("dense", q, h, n, True, parts=(("o_proj", h),)),
        Linear("fc1", h, i, n, True, parts=(("up_proj", i),)),
        Linear("fc2", i, h, n, True, parts=(("down_proj", h),)),
    ]
    extra = n * 2 * 2 * hd if cfg.get("qk_layernorm") else 0
    return _arch(
        family, cfg, lin, norms_per_layer=1, layernorm=True, gated=False, dense_i=i, parallel=True,
        lm_head_bias=True, extra_norm_numel=extra,
    )  # fmt: skip


def _falcon(family: str, cfg: dict[str, Any]) -> Architecture:
    h, n, a, _, _, _ = _common(cfg)
    hd = h // a
    new_arch = bool(cfg.get("new_decoder_architecture", False))
    if new_arch:
        kvh = int(_get(cfg, "num_kv_heads", "n_head_kv", default=a))
    elif cfg.get("multi_query", True):
        kvh = 1
    else:
        kvh = a
    i = int(_get(cfg, "ffn_hidden_size", default=4 * h))
    bias = bool(cfg.get("bias", False))
    kv = kvh * hd
    lin = [
        Linear("query_key_value", h, h + 2 * kv, n, bias, parts=(("q_proj", h), ("k_proj", kv), ("v_proj", kv))),
        Linear("dense", h, h, n, bias, parts=(("o_proj", h),)),
        Linear("dense_h_to_4h", h, i, n, bias, parts=(("up_proj", i),)),
        Linear("dense_4h_to_h", i, h, n, bias, parts=(("down_proj", h),)),
    ]
    parallel = bool(cfg.get("parallel_attn", True))
    norms = int(cfg.get("num_ln_in_parallel_attn") or 2) if new_arch else 1 if parallel else 2
    cfg2 = {**cfg, "num_key_value_heads": kvh, "head_dim": hd}
    return _arch(family, cfg2, lin, norms_per_layer=norms, layernorm=True, gated=False, dense_i=i, parallel=parallel)


def _gpt_bigcode(family: str, cfg: dict[str, Any]) -> Architecture:
    h, n, a, _, _, _ = _common(cfg)
    hd = h // a
    kvh = 1 if cfg.get("multi_query", True) else a
    i = int(_get(cfg, "n_inner", default=4 * h))
    kv = kvh * hd
    lin = [
        Linear("c_attn", h, h + 2 * kv, n, True, parts=(("q_proj", h), ("k_proj", kv), ("v_proj", kv))),
        Linear("c_proj", h, h, n, True, parts=(("o_proj", h),)),
        Linear("c_fc", h, i, n, True, parts=(("up_proj", i),)),
        Linear("mlp.c_proj", i, h, n, True, parts=(("down_proj", h),)),
    ]
    pos = int(_get(cfg, "n_positions", "max_position_embeddings", default=2048)) * h
    cfg2 = {**cfg, "num_key_value_heads": kvh, "head_dim": hd}
    n_pos = int(_get(cfg, "n_positions", "max_position_embeddings", default=2048))
    return _arch(
        family,
        cfg2,
        lin,
        norms_per_layer=2,
        layernorm=True,
        gated=False,
        dense_i=i,
        extra_embedding=pos,
        extra_buffer=n_pos * n_pos,  # the bool causal-mask buffer registered by GPTBigCodeModel
    )


_BUILDERS = {
    "mixtral": _mixtral,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v3": _deepseek_v3,
    "gpt_oss": _gpt_oss,
    "llama4": _llama4,
    "llama4_text": _llama4,
    "gpt_neox": _gpt_neox,
    "phi": _phi,
    "falcon": _falcon,
    "gpt_bigcode": _gpt_bigcode,
}


# ---------------------------------------------------------------------------------------------
# LoRA targets


@dataclass(frozen=True)
class AdaptedLinear:
    """A LoRA adapter family: ``count`` adapters of rank r on ``d_in -> d_out``."""

    name: str
    d_in: int
    d_out: int
    count: int
    rank_mult: int = 1  # peft's ParamWrapper on fused expert gate_up uses rank 2r

    def params(self, r: int) -> int:
        """LoRA parameters of this family at rank ``r``: ``r * (d_in + d_out)`` per instance."""
        return r * self.rank_mult * (self.d_in + self.d_out) * self.count


# Families whose transformers-5 checkpoint conversion fuses the experts: PEFT maps ``all-linear``
# onto their experts (ParamWrapper) and routers (peft ``_MOE_TARGET_MODULE_MAPPING``). Others with
# fused 3-D experts (gpt_oss, llama4) get adapters on their nn.Linear modules only.
_PEFT_MOE_CONVERSION = frozenset({"mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v3"})


def adapter_params(arch: Architecture, targets: str | list[str], r: int) -> int:
    """Total LoRA parameters for a target list at rank ``r``."""
    return sum(a.params(r) for a in select_lora_targets(arch, targets))


def _module_leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def select_lora_targets(arch: Architecture, targets: str | list[str]) -> list[AdaptedLinear]:
    """The adapted matrices for a target list, as PEFT (or lit-gpt for fused qkv) would build them.

    ``all-linear``: every ``nn.Linear`` but the output layer (PEFT's rule). MoE experts are fused
    3-D parameters in transformers >= 5; peft >= 0.18 adapts them through ``ParamWrapper`` with one
    rank-r adapter per expert (rank 2r on the fused gate_up), and routers like linears (checked
    against peft 0.21 in tests/test_inventory.py).
    A canonical name on a fused module (``q_proj`` on GPT-NeoX's ``query_key_value``) adapts the
    slice only: ``r * (d_in + d_slice)``, as lit-gpt's LoRAQKVLinear does.
    """
    out: list[AdaptedLinear] = []
    if targets == "all-linear":
        moe_mapped = arch.family in _PEFT_MOE_CONVERSION
        for x in arch.linears:
            if (x.expert or x.router) and not moe_mapped:
                continue  # fused 3-D experts / parameter routers are not nn.Linear
            mult = 2 if x.expert and len(x.parts) == 2 else 1
            out.append(AdaptedLinear(x.name, x.d_in, x.d_out, x.count, rank_mult=mult))
        return out
    wanted = set(targets)
    for x in arch.linears:
        leaf = _module_leaf(x.name)
        if x.name in wanted or leaf in wanted:
            out.append(AdaptedLinear(x.name, x.d_in, x.d_out, x.count))
            continue
        for part, d_out in x.parts:
            if part in wanted and not x.expert:
                out.append(AdaptedLinear(f"{x.name}[{part}]", x.d_in, d_out, x.count))
    return out


def _is_moe_part(arch: Architecture, name: str) -> bool:
    return any(x.name == name and (x.router or x.expert) for x in arch.linears)


def lora_target_names(arch: Architecture) -> set[str]:
    """Every name a user may list in ``lora.targets`` for this architecture."""
    names: set[str] = set()
    for x in arch.linears:
        if x.expert:
            continue
        names.add(x.name)
        names.add(_module_leaf(x.name))
        names.update(p for p, _ in x.parts)
    return names


def lora_target_problems(model: Any, lora: Any) -> list[Any]:
    """Unknown target names, and an r larger than the smallest adapted layer dimension."""
    from estimator.errors import Problem
    from estimator.models import resolve_model

    _, cfg = resolve_model(model)
    arch = parse_architecture(cfg)
    problems: list[Problem] = []
    if isinstance(lora.targets, list):
        known = lora_target_names(arch)
        unknown = [t for t in lora.targets if t not in known]
        if unknown:
            problems.append(
                Problem(
                    "lora.targets",
                    f"unknown module(s) {', '.join(unknown)} for {arch.family}; known: {', '.join(sorted(known))}",
                )
            )
            return problems
    adapted = select_lora_targets(arch, lora.targets)
    if not adapted:
        problems.append(Problem("lora.targets", "no module of this model matches the targets"))
        return problems
    # Routers and experts are left out: PEFT accepts a rank above a router's few outputs.
    dense = [a for a in adapted if not _is_moe_part(arch, a.name)]
    smallest = min((min(a.d_in, a.d_out) for a in dense), default=0)
    if not dense:
        return problems
    if lora.r > smallest:
        problems.append(
            Problem("lora.r", f"r={lora.r} is larger than the smallest adapted layer dimension ({smallest})")
        )
    return problems

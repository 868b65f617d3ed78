"""The analytic parameter inventory equals what transformers builds, and LoRA counts equal peft's."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from estimator.architecture import adapter_params, parse_architecture, text_config
from estimator.models import model_catalog

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CATALOG = sorted(model_catalog().values(), key=lambda m: m.id)


def _hf_config(cfg: dict[str, Any]) -> Any:
    cfg = copy.deepcopy(text_config(cfg))
    if cfg.get("model_type") is None:  # falcon's old RW config
        cfg = {
            "model_type": "falcon",
            "num_attention_heads": cfg["n_head"],
            "num_hidden_layers": cfg["n_layer"],
            "hidden_size": cfg["hidden_size"],
            "vocab_size": cfg["vocab_size"],
            "multi_query": True,
            "parallel_attn": True,
            "bias": False,
            "new_decoder_architecture": False,
        }
    cfg.pop("quantization_config", None)  # gpt-oss ships MXFP4 weights; count the bf16 model
    model_type = cfg.pop("model_type")
    if model_type == "gemma3":
        model_type = "gemma3_text"
    if model_type == "llama4":
        model_type = "llama4_text"
    if "attn_temperature_tuning" in cfg:  # older Llama-4 configs store 4 where transformers wants a bool
        cfg["attn_temperature_tuning"] = bool(cfg["attn_temperature_tuning"])
    return transformers.AutoConfig.for_model(model_type, **cfg)


def _meta_count(cfg: dict[str, Any]) -> int:
    hf = _hf_config(cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("entry", CATALOG, ids=[m.id for m in CATALOG])
def test_parameter_total_matches_transformers_meta_build(entry: Any) -> None:
    arch = parse_architecture(entry.config)
    built = _meta_count(entry.config)
    assert arch.total_params == built, f"{entry.id}: analytic {arch.total_params:,} vs transformers {built:,}"


@pytest.mark.parametrize("entry", CATALOG, ids=[m.id for m in CATALOG])
def test_parameter_total_matches_published_computed_count(entry: Any) -> None:
    expected = (entry.computed_params or {}).get("total")
    if expected is None:
        pytest.skip("no computed count in the reference index")
    arch = parse_architecture(entry.config)
    # DeepSeek-V3's index count includes e_score_correction_bias (58 x 256), a buffer in transformers.
    slack = 58 * 256 if arch.family == "deepseek_v3" else 0
    assert abs(arch.total_params - expected) <= slack


SMALL = {
    "llama": {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 300,
    },
    "qwen3": {
        "model_type": "qwen3",
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "vocab_size": 300,
    },
    "phi3": {
        "model_type": "phi3",
        "pad_token_id": 0,
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 300,
    },
    "gemma2": {
        "model_type": "gemma2",
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 300,
    },
    "mixtral": {
        "model_type": "mixtral",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 300,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
    },
    "gpt_neox": {
        "model_type": "gpt_neox",
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 300,
    },
}

TARGETS: list[tuple[str, Any]] = [
    ("llama", "all-linear"),
    ("llama", ["q_proj", "v_proj"]),
    ("qwen3", "all-linear"),
    ("phi3", "all-linear"),
    ("phi3", ["qkv_proj"]),
    ("gemma2", ["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("mixtral", "all-linear"),
    ("gpt_neox", ["query_key_value", "dense"]),
]


@pytest.mark.parametrize(("family", "targets"), TARGETS, ids=[f"{f}-{t}" for f, t in TARGETS])
def test_lora_trainable_count_matches_peft(family: str, targets: Any) -> None:
    peft = pytest.importorskip("peft")
    cfg = SMALL[family]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(_hf_config(cfg))
    lcfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0)
    pm = peft.get_peft_model(model, lcfg)
    peft_trainable = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    arch = parse_architecture(cfg)
    ours = adapter_params(arch, targets, 4)
    assert ours == peft_trainable
    assert arch.total_params == sum(p.numel() for n, p in pm.named_parameters() if "lora_" not in n)

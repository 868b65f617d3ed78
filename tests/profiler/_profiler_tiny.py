"""Tiny model configs shared by the profiler tests (seconds on 2 cores)."""

from __future__ import annotations

from typing import Any

LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
QWEN3: dict[str, Any] = {
    "model_type": "qwen3",
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 768,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


def spec(config: dict[str, Any] = LLAMA, **fields: Any) -> dict[str, Any]:
    """A spec dict around an inline tiny config; small batch and sequence unless overridden."""
    return {"model": {"config": dict(config)}, "batch_size": 2, "seq_len": 32, **fields}


def n_params(config: dict[str, Any]) -> int:
    """Closed-form parameter count of a Llama/Qwen3-style decoder (no biases)."""
    h, i, v, n_layers = (config[k] for k in ("hidden_size", "intermediate_size", "vocab_size", "num_hidden_layers"))
    d = config.get("head_dim", h // config["num_attention_heads"])
    q = config["num_attention_heads"] * d
    kv = config["num_key_value_heads"] * d
    attn = h * q + 2 * h * kv + q * h
    mlp = 3 * h * i
    norms = 2 * h + (2 * d if config["model_type"] == "qwen3" else 0)
    embed = v * h * (1 if config["tie_word_embeddings"] else 2)
    return n_layers * (attn + mlp + norms) + h + embed

"""The harness: specs it runs, specs it refuses, and the chunked loss it implements."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from _profiler_tiny import LLAMA, QWEN3, spec  # noqa: E402

from profiler.harness import (  # noqa: E402
    build_model,
    chunked_cross_entropy,
    normalize_spec,
    run_spec,
    seed_everything,
)


def test_chunked_loss_equals_transformers_standard_loss_value() -> None:
    s = normalize_spec(spec(method="full", gradient_checkpointing=False, batch_size=3, seq_len=40))
    seed_everything(0)
    built = build_model(s)
    ids = torch.randint(0, LLAMA["vocab_size"], (3, 40))
    with torch.no_grad():
        standard = built.model(input_ids=ids, labels=ids).loss
        hidden = built.causal_lm.model(input_ids=ids).last_hidden_state
        chunked = chunked_cross_entropy(hidden, built.causal_lm.lm_head, ids)
    assert torch.allclose(standard.float(), chunked.float(), rtol=1e-3)


def test_chunked_loss_lowers_the_loss_backward_peak() -> None:
    fields = {"method": "lora", "gradient_checkpointing": True, "batch_size": 1, "seq_len": 128}
    standard = run_spec(spec(QWEN3, **fields), timed_steps=0).trace
    chunked = run_spec(spec(QWEN3, loss="chunked", **fields), timed_steps=0).trace
    assert standard is not None and chunked is not None
    assert chunked.phases["loss_backward"].peak < standard.phases["loss_backward"].peak


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"loss": "fused"}, "loss fused"),
        ({"attention": "flash_attention_2"}, "flash_attention_2"),
        ({"num_gpus": 2, "sharding": "fsdp"}, "multi-GPU"),
        ({"gradient_checkpointing": "offload"}, "offload"),
    ],
)
def test_specs_the_cpu_cannot_run_are_refused_with_the_reason(fields: dict[str, object], message: str) -> None:
    m = run_spec(spec(**fields))
    assert m.trace is None
    assert m.error is not None and m.error.startswith("unsupported:")
    assert message in m.error
    assert m.oom is False


def test_spec_defaults_match_the_estimator_contract() -> None:
    s = normalize_spec({"model": {"config": LLAMA}})
    assert s["method"] == "lora" and s["param_dtype"] == "bf16" and s["optimizer"] == "adamw"
    assert s["gradient_checkpointing"] is True and s["loss"] == "standard" and s["attention"] == "sdpa"
    assert s["lora"] == {
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "targets": "all-linear",
        "adapter_dtype": "fp32",
        "modules_to_save": [],
    }
    assert "quantization" not in s


def test_lora_adapter_dtype_bf16_gives_bf16_adapters() -> None:
    s = normalize_spec(spec(method="lora", lora={"adapter_dtype": "bf16"}))
    built = build_model(s)
    dtypes = {p.dtype for n, p in built.model.named_parameters() if "lora_" in n}
    assert dtypes == {torch.bfloat16}


def test_eight_bit_adamw_runs_on_cpu_with_uint8_states() -> None:
    pytest.importorskip("bitsandbytes")
    fields = {"method": "full", "gradient_checkpointing": False}
    eight = run_spec(spec(optimizer="adamw_8bit", **fields), timed_steps=0)
    full = run_spec(spec(**fields), timed_steps=0)
    assert eight.error is None, eight.error
    assert eight.trace is not None and full.trace is not None
    assert eight.trace.start_by_category["optimizer_states"] < full.trace.start_by_category["optimizer_states"]


def test_real_run_reports_time_and_loss() -> None:
    m = run_spec(spec(method="lora"), timed_steps=1)
    assert m.error is None
    assert m.step_time_s is not None and m.step_time_s > 0
    assert m.tokens_per_second is not None and m.tokens_per_second > 0
    assert m.loss is not None and 5.0 < m.loss < 8.0  # ~ln(512) for random weights

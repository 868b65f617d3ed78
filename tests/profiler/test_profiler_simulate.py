"""FakeTensorMode simulation equals a real CPU step byte for byte."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from _profiler_tiny import LLAMA, QWEN3, spec  # noqa: E402

from profiler.harness import run_spec  # noqa: E402
from profiler.simulate import simulate_spec  # noqa: E402


@pytest.mark.parametrize(
    ("config", "fields"),
    [
        (LLAMA, {"method": "full", "gradient_checkpointing": False}),
        (LLAMA, {"method": "lora", "gradient_checkpointing": True, "attention": "eager"}),
        (QWEN3, {"method": "lora", "gradient_checkpointing": False, "loss": "chunked", "autocast": "bf16"}),
        (QWEN3, {"method": "full", "gradient_checkpointing": True, "optimizer": "sgd"}),
    ],
)
def test_simulated_step_equals_real_step_exactly(config: dict[str, object], fields: dict[str, object]) -> None:
    s = spec(config, **fields)
    real = run_spec(s, timed_steps=0)
    fake = simulate_spec(s)
    assert real.error is None and fake.error is None, (real.error, fake.error)
    assert real.trace is not None and fake.trace is not None
    assert fake.trace.to_dict() == real.trace.to_dict()
    assert fake.params == real.params


def test_simulation_builds_nothing_real_at_large_shapes() -> None:
    big = dict(
        LLAMA,
        hidden_size=2048,
        intermediate_size=5632,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=32000,
    )
    m = simulate_spec(spec(big, method="lora", batch_size=1, seq_len=1024), num_layers=2)
    assert m.error is None, m.error
    assert m.trace is not None
    assert m.trace.start_by_category["weights"] > 2 * 2 * 32000 * 2048  # bf16 embed + lm_head at least


def test_qlora_and_bitsandbytes_optimizers_are_refused_under_simulation() -> None:
    assert "qlora" in (simulate_spec(spec(method="qlora")).error or "")
    assert "bitsandbytes" in (simulate_spec(spec(method="full", optimizer="adamw_8bit")).error or "")

"""The estimator held to real CPU training steps: peak within 3 %, large categories within 5 %.

Each configuration is built from its config with random weights, trained for two real steps
(transformers + peft + bitsandbytes on CPU) and traced live; the analytic estimate with
``device: cpu`` must match the second step.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from profiler.matrix import compare, family_entries
from profiler.sweeps import ci_entries, real_size_entries, run_entry

CI = ci_entries()
FAMILIES = family_entries()
# Real sizes, simulated under FakeTensorMode: Llama-3.1-8B LoRA with and without checkpointing,
# Qwen3-8B LoRA with checkpointing (QLoRA cannot be simulated: bitsandbytes reads tensor values).
REAL = [e for e in real_size_entries() if "lora" in e.name and "chunked" not in e.name][:3]


def _check(entry: Any, peak_tol: float) -> None:
    record = run_entry(entry, "test", timed_steps=0)
    assert record["error"] is None, record["error"]
    result = compare(record)
    assert abs(result["error"]) <= peak_tol, (
        f"{entry.name}: predicted {result['predicted']:,} vs measured {result['measured']:,} "
        f"({result['error']:+.2%}) at {result['predicted_phase']} / {result['measured_phase']}"
    )
    for key, c in result["categories"].items():
        assert abs(c["error"]) <= 0.05, (
            f"{entry.name}: {key} {c['predicted']:,} vs {c['measured']:,} ({c['error']:+.1%})"
        )


def test_matrix_covers_the_required_axes() -> None:
    specs = [e.spec for e in CI]
    assert len(specs) >= 24
    assert {s["method"] for s in specs} == {"full", "lora", "qlora"}
    assert {bool(s["gradient_checkpointing"]) for s in specs} == {True, False}
    assert {s.get("attention", "sdpa") for s in specs} >= {"sdpa", "eager"}
    assert {s.get("loss", "standard") for s in specs} >= {"standard", "chunked"}
    assert {s.get("optimizer", "adamw") for s in specs} >= {"adamw", "adamw_8bit"}
    assert len({s["model"]["config"]["model_type"] for s in specs}) >= 2
    assert len({(s["batch_size"], s["seq_len"]) for s in specs}) >= 2


@pytest.mark.parametrize("entry", CI, ids=[e.name for e in CI])
def test_estimate_matches_cpu_trace_within_3_percent(entry: Any) -> None:
    _check(entry, 0.03)


@pytest.mark.parametrize("entry", FAMILIES, ids=[e.name for e in FAMILIES])
def test_estimate_matches_other_families_within_3_percent(entry: Any) -> None:
    _check(entry, 0.03)


@pytest.mark.parametrize("entry", REAL, ids=[e.name for e in REAL])
def test_estimate_matches_real_size_simulation_within_1_percent(entry: Any) -> None:
    _check(entry, 0.01)

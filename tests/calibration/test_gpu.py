"""Checks that need a CUDA GPU (skipped without one by tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from profiler.cuda_sweep import CudaStepRunner, Plan, PlannedRun, run_plan

TINY = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
}


@pytest.mark.gpu
def test_allocator_probe_sees_a_phase_peak_on_cuda() -> None:
    import torch

    from profiler.probes import TorchAllocatorProbe

    probe = TorchAllocatorProbe()
    assert probe.available
    probe.begin_step()
    probe.mark("forward")
    x = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    del x
    probe.mark("optimizer_step")
    result = probe.end_step()
    assert result["phases"]["forward"]["allocated_peak"] >= 64 << 20
    assert result["phases"]["optimizer_step"]["allocated_peak"] < 64 << 20


@pytest.mark.gpu
def test_tiny_cuda_run_records_allocator_and_nvml_peaks(tmp_path: Path) -> None:
    from profiler.nvml import Nvml

    nvml = Nvml()
    runner = CudaStepRunner("cuda", timed_steps=1, nvml=nvml, device_used_before_init=nvml.device_used())
    s = {
        "model": {"config": dict(TINY)},
        "method": "lora",
        "gradient_checkpointing": True,
        "batch_size": 2,
        "seq_len": 512,
        "device": "cuda",
    }
    run = PlannedRun(
        name="tiny",
        series="tiny",
        group="tiny",
        spec=s,
        tokens=1024,
        predicted_peak_device=0,
        predicted_fits=True,
        predicted_step_s=0.01,
        cost_s=1.0,
    )
    (record,) = run_plan(Plan("t", None, 600, [run]), runner, tmp_path).records
    assert record["error"] is None, record["error"]
    m = record["measured"]
    assert m["peak_allocated"] > 0 and m["peak_reserved"] >= m["peak_allocated"]
    assert set(m["phases"]) == {"forward", "loss_backward", "layer_backward", "optimizer_step"}
    if nvml.ok:
        assert m["peak_device"] is not None and m["peak_device"] >= m["peak_reserved"]
        assert m["idle"]["context_bytes"] > 0
    assert record["environment"]["gpu"]["name"]

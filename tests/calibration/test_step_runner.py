"""The CUDA step runner's code path, run on CPU with a tiny model (probes read nothing there)."""

from __future__ import annotations

from pathlib import Path

from profiler.cuda_sweep import CudaStepRunner, Plan, PlannedRun, run_plan

TINY = {
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


def _planned(method: str, gc: bool) -> PlannedRun:
    s = {
        "model": {"config": dict(TINY)},
        "method": method,
        "gradient_checkpointing": gc,
        "batch_size": 2,
        "seq_len": 32,
        "device": "cuda",
    }
    return PlannedRun(
        name=f"{method}-{gc}",
        series=method,
        group=method,
        spec=s,
        tokens=64,
        predicted_peak_device=0,
        predicted_fits=True,
        predicted_step_s=0.01,
        cost_s=1.0,
    )


def test_probed_step_marks_the_four_phases_in_order() -> None:
    from profiler import harness

    runner = CudaStepRunner("cpu", timed_steps=0)
    planned = _planned("lora", True)
    spec = harness.normalize_spec(planned.spec)
    group = runner._model_for(planned, spec)
    runner._set_checkpointing(group, spec)
    optimizer, _ = harness.make_optimizer(spec, harness.trainable_parameters(group.built.model))
    batch = harness.make_batch(spec, TINY["vocab_size"])
    marks: list[str] = []
    loss = runner.probed_step(group.built, optimizer, spec, batch, marks.append)
    assert marks == ["forward", "loss_backward", "layer_backward", "optimizer_step"]
    assert loss > 0


def test_one_model_serves_checkpointing_on_and_off(tmp_path: Path) -> None:
    runs = [_planned("lora", True), _planned("lora", False)]
    runner = CudaStepRunner("cpu", timed_steps=1)
    result = run_plan(Plan("t", None, 600, runs), runner, tmp_path)
    assert [r["error"] for r in result.records] == [None, None]
    assert all(r["measured"]["step_time_s"] > 0 for r in result.records)
    assert result.records[0]["id"] != result.records[1]["id"]

"""Running a plan: an OOM is a record (oom: true), memory is freed, the sweep continues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from profiler.cuda_sweep import Plan, PlannedRun, is_oom, run_plan
from tests.calibration._synth import GPU, spec


def _run(name: str, series: str, tokens: int, cost: float = 1.0) -> PlannedRun:
    s = spec("lora", seq_len=tokens, gc=series != "b")
    return PlannedRun(
        name=name,
        series=series,
        group="g",
        spec=s,
        tokens=tokens,
        predicted_peak_device=0,
        predicted_fits=True,
        predicted_step_s=0.1,
        cost_s=cost,
    )


class FakeRunner:
    """Raises torch.cuda.OutOfMemoryError for runs above a token limit; counts frees."""

    def __init__(self, oom_above: int) -> None:
        self.oom_above = oom_above
        self.ran: list[str] = []
        self.freed = 0

    def environment(self) -> dict[str, Any]:
        from profiler.cuda_sweep import environment_fingerprint

        return environment_fingerprint(GPU)

    def run(self, planned: PlannedRun) -> tuple[dict[str, Any], list[str]]:
        self.ran.append(planned.name)
        if planned.tokens > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return {"peak_allocated": planned.tokens, "phases": {}, "step_time_s": 0.1}, []

    def free(self) -> None:
        self.freed += 1


def test_oom_is_recorded_as_a_data_point_and_the_sweep_continues(tmp_path: Path) -> None:
    runs = [
        _run("a-256", "a", 256),
        _run("a-1024", "a", 1024),
        _run("a-2048", "a", 2048),
        _run("b-256", "b", 256),
    ]
    runner = FakeRunner(oom_above=512)
    result = run_plan(Plan("t", GPU["id"], 600, runs), runner, tmp_path)
    assert runner.ran == ["a-256", "a-1024", "b-256"]  # a-2048 skipped: a smaller shape already OOMed
    assert runner.freed == 1
    by_name = {r["sweep"]["entry"]: r for r in result.records}
    oom = by_name["a-1024"]
    assert oom["oom"] is True and oom["measured"] is None
    assert "OutOfMemoryError" in oom["error"]
    assert by_name["b-256"]["oom"] is False  # the sweep went on after the OOM
    assert [n for n, _ in result.skipped] == ["a-2048"]
    files = sorted((tmp_path / GPU["slug"]).glob("*.json"))
    assert len(files) == 3  # one file per run, in <out>/<gpu-slug>/
    on_disk = json.loads((tmp_path / GPU["slug"] / f"{oom['id']}.json").read_text())
    assert on_disk["oom"] is True
    assert on_disk["prediction"]["memory"]["peak_allocated"] > 0  # the estimator's prediction at run time
    assert on_disk["environment"]["gpu"]["name"] == GPU["name"]
    for key in ("torch", "transformers", "peft", "bitsandbytes", "cuda", "driver"):
        assert key in on_disk["environment"]


def test_runs_that_would_overrun_the_budget_are_skipped(tmp_path: Path) -> None:
    now = [0.0]

    class SlowRunner(FakeRunner):
        def run(self, planned: PlannedRun) -> tuple[dict[str, Any], list[str]]:
            now[0] += 40.0  # each run takes 40 s on the fake clock
            return super().run(planned)

    runs = [_run(f"r{i}", f"s{i}", 256, cost=30.0) for i in range(5)]
    runner = SlowRunner(oom_above=10**9)
    result = run_plan(Plan("t", GPU["id"], 100, runs), runner, tmp_path, clock=lambda: now[0])
    assert runner.ran == ["r0", "r1"]  # at t=80 another 30 s run would pass 100 s
    assert len(result.skipped) == 3


def test_oom_detection() -> None:
    assert is_oom(torch.cuda.OutOfMemoryError("x"))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert not is_oom(RuntimeError("shape mismatch"))


def test_a_failed_run_that_is_not_an_oom_is_an_error_record(tmp_path: Path) -> None:
    class Broken(FakeRunner):
        def run(self, planned: PlannedRun) -> tuple[dict[str, Any], list[str]]:
            raise ValueError("bad shapes")

    result = run_plan(Plan("t", GPU["id"], 600, [_run("x", "x", 64)]), Broken(0), tmp_path)
    (record,) = result.records
    assert record["oom"] is False and record["error"].startswith("ValueError")

"""The GPU sweep planner: time budget, priority, bracketing the memory limit."""

from __future__ import annotations

import pytest

from profiler.cuda_sweep import plan_sweep

H200 = "h200-sxm-141gb"


@pytest.mark.parametrize("minutes", [1, 3, 6, 8, 20])
def test_plan_respects_the_time_budget(minutes: float) -> None:
    plan = plan_sweep("quick", minutes * 60, gpu_id=H200, startup_s=30)
    assert plan.predicted_s + 30 <= minutes * 60
    assert all(r.cost_s > 0 for r in plan.runs)


def test_more_budget_plans_more_runs() -> None:
    counts = [len(plan_sweep("quick", m * 60, gpu_id=H200).runs) for m in (1, 3, 8)]
    assert counts[0] < counts[1] <= counts[2]


def test_qlora_runs_come_first_then_lora_then_full() -> None:
    plan = plan_sweep("quick", 30 * 60, gpu_id=H200)
    methods = [r.spec["method"] for r in plan.runs]
    assert methods[0] == "qlora"
    firsts = [methods.index(m) for m in ("qlora", "lora", "full")]
    assert firsts == sorted(firsts)


def test_a_budget_for_one_model_build_is_spent_on_qlora() -> None:
    plan = plan_sweep("quick", 40, gpu_id=H200)
    assert plan.runs and all(r.spec["method"] == "qlora" for r in plan.runs)


def test_each_series_goes_past_the_predicted_oom_exactly_once() -> None:
    plan = plan_sweep("quick", 60 * 60, gpu_id=H200)
    series: dict[str, list[bool]] = {}
    for r in plan.runs:
        series.setdefault(r.series, []).append(r.predicted_fits)
    assert len(series) == 6  # qlora, lora, full x checkpointing on/off
    for fits in series.values():
        assert fits[-1] is False and all(fits[:-1])  # up to the limit, then one past it


def test_checkpointing_is_planned_on_and_off_at_several_sequence_lengths() -> None:
    plan = plan_sweep("quick", 60 * 60, gpu_id=H200)
    for method in ("qlora", "lora", "full"):
        for gc in (True, False):
            seqs = {
                r.spec["seq_len"]
                for r in plan.runs
                if r.spec["method"] == method and r.spec["gradient_checkpointing"] is gc
            }
            assert len(seqs) >= 3


def test_the_build_cost_is_paid_once_per_model_group() -> None:
    plan = plan_sweep("quick", 60 * 60, gpu_id=H200)
    groups = {r.group for r in plan.runs}
    paying = [r for r in plan.runs if r.build_cost_s > 0]
    assert len(paying) == len(groups)


def test_unknown_sweep_is_rejected() -> None:
    with pytest.raises(ValueError):
        plan_sweep("huge", 60, gpu_id=H200)

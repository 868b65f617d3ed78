"""The figure builders only arrange estimator outputs: their numbers are the estimator's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go
import pytest

from estimator.errors import SpecError
from estimator.estimate import estimate
from estimator.plan import PlanRequest, plan
from estimator.spec import TrainingSpec, check_spec
from service.dashboard import data, figures
from service.dashboard.figures import GIB


@pytest.fixture(scope="module")
def spec_4090() -> TrainingSpec:
    """Llama-3.1-8B QLoRA on an RTX 4090: fits at 2k tokens, runs out of memory at long context."""
    return check_spec(
        {"model": "meta-llama/Llama-3.1-8B", "method": "qlora", "gpu": "rtx-4090", "batch_size": 1,
         "seq_len": 2048}
    )  # fmt: skip


def _stack_totals(fig: go.Figure) -> dict[str, int]:
    totals: dict[str, int] = {}
    for tr in fig.data:
        if tr.type != "bar":
            continue
        for x, b in zip(tr.x, tr.customdata, strict=True):
            totals[x] = totals.get(x, 0) + int(b)
    return totals


def test_breakdown_stacks_equal_the_phase_totals_and_peak_allocated(spec_4090: TrainingSpec) -> None:
    est = estimate(spec_4090)
    fig = figures.memory_breakdown_figure(est)
    bar_names = {tr.name for tr in fig.data if tr.type == "bar"}
    nonzero = {c for c in figures.CATEGORIES if getattr(est.memory, c) or any(
        getattr(p, c) for p in est.memory.phases.values())}  # fmt: skip
    assert bar_names == nonzero
    assert fig.layout.barmode == "stack"
    totals = _stack_totals(fig)
    peak = est.memory.peak_phase.value
    assert totals[f"{peak} (peak)"] == est.memory.peak_allocated
    for phase, pm in est.memory.phases.items():
        label = f"{phase} (peak)" if phase == peak else phase
        assert totals[label] == pm.total
    # The GiB heights are the bytes / 2**30.
    for tr in fig.data:
        if tr.type == "bar":
            assert list(tr.y) == [b / GIB for b in tr.customdata]


def test_breakdown_limit_line_is_the_gpus_usable_memory(spec_4090: TrainingSpec) -> None:
    est = estimate(spec_4090)
    assert est.gpu is not None
    fig = figures.memory_breakdown_figure(est)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1
    assert lines[0].y0 * GIB == est.gpu.usable_bytes == lines[0].y1 * GIB
    marks = {tr.name: tr.customdata[0] for tr in fig.data if tr.type == "scatter"}
    assert marks == {"peak_reserved": est.memory.peak_reserved, "peak_device": est.memory.peak_device}
    assert any("peak" in a.text for a in fig.layout.annotations)


def test_breakdown_without_a_gpu_has_no_limit_line(spec_4090: TrainingSpec) -> None:
    fig = figures.memory_breakdown_figure(estimate(spec_4090.model_copy(update={"gpu": None})))
    assert not fig.layout.shapes


@pytest.mark.parametrize("axis", ["seq_len", "batch_size"])
def test_sweep_oom_boundary_is_where_estimator_fits_flips(spec_4090: TrainingSpec, axis: str) -> None:
    sweeps = data.method_sweeps(spec_4090)
    usable = estimate(spec_4090).gpu.usable_bytes  # type: ignore[union-attr]
    fig = figures.sweep_figure(sweeps, axis, usable, "rtx-4090")
    method_traces = [tr for tr in fig.data if tr.meta and "method" in tr.meta]
    assert {tr.meta["method"] for tr in method_traces} == {"full", "lora", "qlora"}
    limit = [tr for tr in fig.data if tr.meta and tr.meta.get("limit")]
    assert len(limit) == 1 and set(limit[0].customdata) == {usable}
    flips = 0
    for tr in method_traces:
        variant = data.with_method(spec_4090, tr.meta["method"])
        fits = [estimate(variant.model_copy(update={axis: int(x)})).fits for x in tr.x]
        # Cross markers exactly where the estimator says "does not fit" ...
        assert [s == "x" for s in tr.marker.symbol] == [f is False for f in fits]
        # ... which is exactly where the curve is above the limit line.
        assert [y * GIB > usable for y in tr.y] == [f is False for f in fits]
        # Memory grows along the axis, so fits flips once: fitting points first, then OOM.
        assert fits == sorted((bool(f) for f in fits), reverse=True)
        if True in fits and False in fits:
            flips += 1
            last_fit = max(int(x) for x, f in zip(tr.x, fits, strict=True) if f)
            first_oom = min(int(x) for x, f in zip(tr.x, fits, strict=True) if not f)
            assert last_fit <= tr.meta["largest"] < first_oom  # the estimator's largest_fit
    assert flips >= 1, "the fixture should put an OOM boundary inside the sweep"


def test_sweep_includes_the_specs_own_point(spec_4090: TrainingSpec) -> None:
    sw = data.sweep(spec_4090.model_copy(update={"seq_len": 3000}), "seq_len", data.SEQ_SWEEP)
    assert 3000 in sw.values
    assert [e.spec["seq_len"] for e in sw.estimates] == list(sw.values)


def test_fit_matrix_cells_are_the_plans_rows(spec_4090: TrainingSpec) -> None:
    tokens = 10_000_000
    cells = data.fit_matrix(spec_4090, tokens, gpus=["rtx-4090", "a100-sxm-80gb", "t4"])
    fig = figures.fit_matrix_figure(cells, tokens)
    hm = fig.data[0]
    assert hm.type == "heatmap"
    assert list(hm.x) == ["rtx-4090", "a100-sxm-80gb", "t4"] and list(hm.y) == ["full", "lora", "qlora"]
    for i, method in enumerate(hm.y):
        variant = data.with_method(spec_4090, method).model_copy(update={"gpu": None})
        rows = plan(PlanRequest(spec=variant, gpus=list(hm.x), tokens_per_run=tokens)).rows
        for j, row in enumerate(rows):
            assert hm.z[i][j] * GIB == row.headroom_bytes
            assert hm.text[i][j] == ("✓" if row.fits else "✗")
            assert hm.customdata[i][j][0] == ("fits" if row.fits else "OOM")
            assert row.time_per_run_s is not None and row.cost_per_run_usd is not None
            assert hm.customdata[i][j][2] == f"{row.time_per_run_s / 3600:,.1f} h"
            assert hm.customdata[i][j][3] == f"${row.cost_per_run_usd:,.0f}"
    assert hm.zmid == 0


def test_tco_waterfall_ends_at_the_bills_totals(spec_4090: TrainingSpec) -> None:
    bill = data.tco_bill(spec_4090, 30_000_000)
    if bill is None:
        pytest.skip("estimator.tco is not installed")
    fig = figures.tco_figure(bill)
    wf = fig.data[0]
    assert wf.type == "waterfall"
    totals = [(x, y) for x, y, m in zip(wf.x, wf.y, wf.measure, strict=True) if m == "total"]
    assert totals[0] == ("one-time total", pytest.approx(bill["one_time_total"]))
    assert totals[-1][1] == pytest.approx(bill["total"])
    relative = [y for y, m in zip(wf.y, wf.measure, strict=True) if m == "relative"]
    assert sum(relative) == pytest.approx(bill["total"], abs=0.01)
    assert bill["compute"]["tokens_per_run"] == pytest.approx(30_000_000, rel=1e-3)


def test_calibration_points_pair_measured_and_predicted(tmp_path: Path, spec_4090: TrainingSpec) -> None:
    raw = spec_4090.to_json()
    good = {"schema": 1, "spec": raw, "measured": {"peak_allocated": 12 * 2**30}, "oom": False, "error": None}
    (tmp_path / "rtx-4090").mkdir()
    (tmp_path / "rtx-4090" / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps({**good, "oom": True}))
    (tmp_path / "c.json").write_text("not json")
    cal = data.calibration_points(tmp_path)
    assert cal.skipped == 2
    [pt] = cal.points
    assert pt.gpu == "rtx-4090"
    assert pt.measured_bytes == 12 * 2**30
    assert pt.predicted_bytes == estimate(spec_4090).memory.peak_allocated
    fig = figures.calibration_figure(cal.points)
    assert [tr.name for tr in fig.data] == ["rtx-4090", "predicted = measured"]


def test_parse_input_lists_every_problem_and_keeps_web_clients_to_the_catalog() -> None:
    with pytest.raises(SpecError) as exc:
        data.parse_input({"model": "/etc/hostname", "gpu": "nope", "seq_len": "-3", "tokens": "many"})
    fields = {p.field for p in exc.value.problems}
    assert {"model", "gpu", "seq_len", "tokens"} <= fields
    inp = data.parse_input({"gpu": "none", "method": "full", "seq_len": "1024"})
    assert inp.spec.gpu is None and inp.spec.lora is None and inp.spec.seq_len == 1024


def test_with_method_switches_adapters_and_quantization(spec_4090: TrainingSpec) -> None:
    full = data.with_method(spec_4090, "full")
    assert full.lora is None and full.quantization is None
    lora = data.with_method(full, "lora")
    assert lora.lora is not None and lora.quantization is None
    assert data.with_method(spec_4090, "qlora") == check_spec(spec_4090.to_json())

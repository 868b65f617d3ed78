"""The programme bill (estimator.tco): hand-checked lines, exact totals, traceable prices."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

from estimator.errors import SpecError
from estimator.tco import (
    GPU_HOUR,
    Bill,
    CostReport,
    Line,
    check_cost_request,
    size_tier_upper_bound,
    tco,
)

LLAMA_8B_LORA_H100 = {"model": "meta-llama/Llama-3.1-8B", "method": "lora", "gpu": "h100-sxm-80gb"}

# Every number below is set explicitly so the bill can be worked out by hand.
HAND_PROGRAMME: dict[str, Any] = {
    "dataset": {"examples": 10_000, "tokens_per_example": 1_000, "epochs": 3},  # 30M tokens per run
    "labelling": {
        "human_share": 0.1,
        "cost_per_labelled_example": 2.0,
        "review_overhead": 0.25,
        "synthetic_share": 0.5,
        "synthetic_cost_per_example": 0.02,
    },
    "iterations": {"training_runs": 2, "hyperparameter_trials": 4, "trial_data_fraction": 0.25},
    "evaluation": {
        "eval_set_size": 200,
        "eval_runs_per_iteration": 1,
        "cost_per_eval_run": 10.0,
        "regression_suite": True,
        "regression_gpu_hours": 1.5,
        "human_review_hours": 10,
        "reviewer_hourly_rate": 50.0,
    },
    "retraining": {
        "base_model_updates_per_year": 1,
        "data_refreshes_per_year": 2,
        "runs_per_retrain": 1,
        "refresh_share": 0.5,
        "engineering_hours_per_retrain": 4,
    },
    "engineering": {"hours": 40, "hourly_rate": 120.0},
    "horizon_months": 12,
}


def _report(training: dict[str, Any] | None = None, **programme: Any) -> CostReport:
    return tco({"training": training or LLAMA_8B_LORA_H100, "programme": programme})


def _lines(bill: Bill) -> dict[str, Line]:
    return {ln.name: ln for ln in bill.lines}


def _llama_8b_lora_flops_per_token() -> int:
    """Llama-3.1-8B, LoRA r=16 on all linear layers, seq 2048, checkpointing on (throughput.py)."""
    hidden, layers, inter, kv, vocab, seq = 4096, 32, 14336, 1024, 128_256, 2048
    total_params = 8_030_261_248  # the published count
    p = total_params - vocab * hidden  # embedding look-ups are not matmuls; lm_head is untied
    # r x (d_in + d_out) per adapted matrix: q, o (4096->4096), k, v (4096->1024), gate, up, down.
    adapters = 16 * layers * (2 * (hidden + hidden) + 2 * (hidden + kv) + 3 * (hidden + inter))
    attn = 4 * layers * seq * hidden  # QK^T and PV, forward
    fwd = 2 * (p + adapters) + attn
    bwd = 2 * p + 4 * adapters + 2 * attn  # frozen weights: input grads only
    return 2 * fwd + bwd  # + the recomputed forward


def test_hand_computed_bill_for_llama_8b_lora_on_h100() -> None:
    report = _report(**HAND_PROGRAMME)
    bill, c = report.bill, report.bill.compute

    fpt = _llama_8b_lora_flops_per_token()
    assert fpt == 49_660_059_648
    assert c.flops_per_token == fpt
    mfu = c.mfu
    if not c.calibrated:
        assert mfu == 0.35  # the uncalibrated LoRA default
    tokens_per_s = 989.5e12 * mfu / fpt  # H100 SXM dense bf16 peak x efficiency / FLOPs per token
    assert c.tokens_per_second_per_gpu == pytest.approx(tokens_per_s, rel=1e-12)
    h = 30_000_000 / tokens_per_s / 3600
    assert c.tokens_per_run == 30_000_000
    assert bill.gpu_hours_per_run == pytest.approx(h, rel=1e-12)
    if not c.calibrated:
        assert h == pytest.approx(1.19493, abs=1e-5)
    assert bill.wall_clock_hours_per_run == pytest.approx(h)
    assert bill.wall_clock_days_per_release == pytest.approx(h * (2 + 4 * 0.25) / 24)

    price = 2.99  # gpus.json H100 SXM 'typical' (on-demand)
    assert c.gpu_price_per_hour == price
    retrains = (1 + 2) * 12 / 12
    expected = {
        "training runs": 2 * h * price,
        "hyperparameter trials": 4 * 0.25 * h * price,
        "human labelling": (10_000 * 0.1 + 200) * 2.0,  # 2,400
        "label review and rework": 1_200 * 0.25 * 2.0,  # 600
        "synthetic data": 5_000 * 0.02,  # 100
        "evaluation runs": (2 + 4) * 1 * 10.0,  # 60
        "regression suite": 2 * 1.5 * price,  # 8.97
        "human review of outputs": 10 * 50.0,  # 500
        "engineering": 40 * 120.0,  # 4,800
        "retraining compute": retrains * h * price,
        "retraining evaluation": retrains * 10.0,  # 30
        "retraining regression suite": retrains * 1.5 * price,  # 13.455
        "retraining human review": retrains * 10 * 50.0,  # 1,500
        "refresh labelling": 2 * 0.5 * 1_000 * (1 + 0.25) * 2.0,  # 2,500
        "retraining engineering": retrains * 4 * 120.0,  # 1,440
    }
    lines = _lines(bill)
    assert set(lines) == set(expected)
    for name, amount in expected.items():
        assert abs(float(lines[name].amount) - amount) <= 0.005 + 1e-9, name
    assert bill.retrains_over_horizon == retrains
    assert bill.total == bill.one_time_total + bill.recurring_total
    assert abs(float(bill.total) - sum(expected.values())) <= 0.005 * len(expected)
    gpu = sum(float(ln.amount) for ln in bill.lines if ln.unit == GPU_HOUR)
    assert bill.gpu_compute_share == pytest.approx(gpu / float(bill.total))


@pytest.mark.parametrize(
    "programme",
    [
        {},
        HAND_PROGRAMME,
        {
            "dataset": {"examples": 777, "tokens_per_example": 333, "epochs": 1.7},
            "horizon_months": 7,
            "labelling": {"annotator_hourly_rate": 17.3, "minutes_per_example": 2.9, "synthetic_share": 0.31},
            "compute": {"price_tier": "spot"},
            "retraining": {"data_refreshes_per_year": 3.3},
        },
    ],
)
def test_total_is_exactly_the_sum_of_its_lines(programme: dict[str, Any]) -> None:
    bill = _report(**programme).bill
    assert bill.total == sum((ln.amount for ln in bill.lines), Decimal(0))
    assert bill.one_time_total == sum((ln.amount for ln in bill.lines if not ln.recurring), Decimal(0))
    assert bill.recurring_total == sum((ln.amount for ln in bill.lines if ln.recurring), Decimal(0))
    for ln in bill.lines:
        assert ln.amount == ln.amount.quantize(Decimal("0.01"))
        assert abs(float(ln.amount) - ln.quantity * ln.unit_price) <= 0.005 + 1e-9
    as_json = _report(**programme).model_dump(mode="json")["bill"]
    assert as_json["total"] == round(sum(ln["amount"] for ln in as_json["lines"]), 2)


def test_doubling_the_cadence_doubles_the_recurring_retraining_lines() -> None:
    base = {"base_model_updates_per_year": 1, "data_refreshes_per_year": 2}
    once = _lines(_report(retraining=base).bill)
    twice = _lines(_report(retraining={k: 2 * v for k, v in base.items()}).bill)
    for name, line in once.items():
        if line.recurring:
            assert twice[name].quantity == pytest.approx(2 * line.quantity), name
            assert abs(twice[name].amount - 2 * line.amount) <= Decimal("0.01"), name
        else:
            assert twice[name] == line, name
    assert twice["retraining compute"].amount > 0


def test_horizon_scales_recurring_lines_only() -> None:
    a, b = _report(horizon_months=12).bill, _report(horizon_months=24).bill
    assert a.one_time_total == b.one_time_total
    assert b.retrains_over_horizon == 2 * a.retrains_over_horizon


def test_on_demand_uses_the_catalog_typical_price_with_its_date() -> None:
    bill = _report().bill
    line = _lines(bill)["training runs"]
    assert line.unit_price == 2.99 and line.unit == GPU_HOUR
    assert "gpus.json h100-sxm-80gb 'typical'" in line.source
    assert line.as_of == "2025-01..2026-10"
    assert bill.compute.restart_overhead == 0


def test_spot_uses_the_catalog_low_price_and_adds_restart_overhead() -> None:
    on_demand = _report().bill
    spot = _report(compute={"price_tier": "spot"}).bill
    run = _lines(spot)["training runs"]
    assert run.unit_price == 1.85  # gpus.json H100 SXM 'low'
    assert spot.compute.restart_overhead == 0.1  # tco_defaults.json spot_restart_overhead
    assert run.quantity == pytest.approx(_lines(on_demand)["training runs"].quantity * 1.1)
    assert "restart overhead" in run.basis


def test_gpu_price_override_is_the_unit_price_and_cited_as_input() -> None:
    bill = _report(compute={"gpu_price_per_hour": 4.5}).bill
    for line in bill.lines:
        if line.unit == GPU_HOUR:
            assert line.unit_price == 4.5
            assert line.source == "input programme.compute.gpu_price_per_hour"


def test_gpu_hours_do_not_depend_on_gpu_count_but_wall_clock_does() -> None:
    one = _report().bill
    four = _report({**LLAMA_8B_LORA_H100, "num_gpus": 4, "sharding": "ddp"}).bill
    assert four.gpu_hours_per_run == pytest.approx(one.gpu_hours_per_run)
    assert four.wall_clock_hours_per_run == pytest.approx(one.wall_clock_hours_per_run / 4)
    assert any("scale ideally" in a for a in four.assumptions)


def test_uncalibrated_efficiency_is_said_in_the_bill() -> None:
    bill = _report().bill
    if bill.compute.calibrated:
        pytest.skip("a fitted efficiency exists for this GPU")
    assert any("uncalibrated" in a for a in bill.assumptions)
    assert "uncalibrated MFU" in _lines(bill)["training runs"].basis


def test_every_line_says_where_its_price_comes_from() -> None:
    report = _report()
    for line in [*report.bill.lines, *(ln for a in report.alternatives for ln in a.lines)]:
        assert line.source and line.basis, line.name
        if not line.source.startswith("input "):
            assert line.as_of, line.name


def test_default_labelling_rate_is_hourly_rate_times_minutes_from_the_data_file() -> None:
    line = _lines(_report().bill)["human labelling"]
    assert line.unit_price == pytest.approx(30.0 * 3.0 / 60)  # $30/h x 3 min (tco_defaults.json)
    assert "tco_defaults.json annotator_hourly_rate" in line.source


def test_hosted_alternatives_are_priced_per_million_tokens_by_size_tier() -> None:
    alts = {a.name: a for a in _report(**HAND_PROGRAMME).alternatives}
    together = alts["hosted fine-tuning (together_ai)"]
    runs = _lines_of(together)["hosted training runs"]
    assert runs.unit_price == 0.48  # pricing.json together_ai 'up to 16B' sft_lora
    assert runs.quantity == pytest.approx(2 * 30.0)  # 2 runs x 30M tokens
    assert runs.as_of and "together" in runs.source
    assert _lines_of(alts["hosted fine-tuning (fireworks_ai)"])["hosted training runs"].unit_price == 0.5
    assert "training runs" not in _lines_of(together)  # the GPU lines are replaced...
    assert "human labelling" in _lines_of(together)  # ...the rest of the programme is the same
    assert together.total == sum((ln.amount for ln in together.lines), Decimal(0))

    full = {a.name: a for a in _report({**LLAMA_8B_LORA_H100, "method": "full"}).alternatives}
    assert _lines_of(full["hosted fine-tuning (together_ai)"])["hosted training runs"].unit_price == 0.54


def _lines_of(alt: Any) -> dict[str, Line]:
    return {ln.name: ln for ln in alt.lines}


def test_hosted_alternative_is_unavailable_when_no_tier_covers_the_model() -> None:
    alts = _report({"model": "meta-llama/Llama-3.1-405B", "method": "qlora", "gpu": "h200"}).alternatives
    hosted = [a for a in alts if a.kind == "hosted_fine_tuning"]
    assert hosted and all(not a.available and "no size tier" in (a.reason or "") for a in hosted)


@pytest.mark.parametrize(
    ("size", "bound"),
    [("up to 16B", 16.0), ("17B-69B", 69.0), ("70-100B", 100.0), ("16.1B-80B", 80.0), ("Mixtral 8x7B", None)],
)
def test_size_tiers_parse_to_their_upper_bound(size: str, bound: float | None) -> None:
    assert size_tier_upper_bound(size) == bound


def test_rag_alternative_prices_embedding_store_and_extra_context() -> None:
    rag = next(a for a in _report(**HAND_PROGRAMME, rag={"queries_per_month": 50_000}).alternatives if a.kind == "rag")
    lines = _lines_of(rag)
    assert lines["corpus embedding"].quantity == pytest.approx(10.0)  # 10M tokens (one epoch)
    assert lines["corpus embedding"].unit_price == 0.02  # text-embedding-3-small
    ctx = lines["extra context tokens"]
    assert ctx.quantity == pytest.approx(50_000 * 12 * 5 * 512 / 1e6)
    assert ctx.unit_price == 0.2  # <=16B open model input price
    assert float(ctx.amount) == pytest.approx(ctx.quantity * 0.2, abs=0.005)
    assert lines["vector store"].unit_price == 50  # Pinecone Standard monthly minimum
    assert lines["vector store"].quantity == 12
    assert rag.total == sum((ln.amount for ln in rag.lines), Decimal(0))


def test_user_prices_override_the_embedded_ones_with_their_own_date() -> None:
    prices = {
        "hosted_fine_tuning": {
            "together_ai": {
                "per_1m_tokens": [{"size": "up to 16B", "sft_lora": 0.1, "sft_full": 0.2}],
                "source": "our contract",
                "as_of": "2026-12-01",
            }
        },
        "rag": {"extra_context_tokens": {"input_prices_per_1m (2025)": {"fireworks/together <=16B open model": 0.05}}},
    }
    report = tco({"training": LLAMA_8B_LORA_H100, "prices": prices})
    alts = {a.name: a for a in report.alternatives}
    run = _lines_of(alts["hosted fine-tuning (together_ai)"])["hosted training runs"]
    assert run.unit_price == 0.1 and run.as_of == "2026-12-01" and "our contract" in run.source
    assert _lines_of(alts["hosted fine-tuning (fireworks_ai)"])["hosted training runs"].unit_price == 0.5
    assert _lines_of(alts["retrieval (RAG)"])["extra context tokens"].unit_price == 0.05


def test_bad_input_is_refused_with_every_problem_listed() -> None:
    with pytest.raises(SpecError) as exc:
        tco(
            {
                "training": {"model": "meta-llama/Llama-3.1-8B", "gpu": "gtx-9000", "batch_size": 0},
                "programme": {
                    "dataset": {"examples": -5, "epochs": 0},
                    "horizon_months": 0,
                    "labelling": {
                        "human_share": 0.8,
                        "synthetic_share": 0.5,
                        "cost_per_labelled_example": 1,
                        "annotator_hourly_rate": 20,
                    },
                    "retraining": {"data_refreshes_per_year": -1},
                    "surprise": 1,
                },
                "prices": {"rag": {"embeddings_per_1m_tokens": [{"model": "x", "price": -1}]}},
            }
        )
    fields = {p.field for p in exc.value.problems}
    assert fields >= {
        "training.gpu",
        "training.batch_size",
        "programme.dataset.examples",
        "programme.dataset.epochs",
        "programme.horizon_months",
        "programme.labelling.human_share",
        "programme.labelling.cost_per_labelled_example",
        "programme.retraining.data_refreshes_per_year",
        "programme.surprise",
        "prices.rag.embeddings_per_1m_tokens[0].price",
    }


def test_a_gpu_is_required_to_price_compute() -> None:
    with pytest.raises(SpecError) as exc:
        check_cost_request({"training": {"model": "meta-llama/Llama-3.1-8B"}})
    assert [p.field for p in exc.value.problems] == ["training.gpu"]
    with pytest.raises(SpecError) as exc:
        check_cost_request({"programme": {}})
    assert [p.field for p in exc.value.problems] == ["training"]


def test_importing_the_cost_modules_stays_light() -> None:
    code = (
        "import sys, estimator.tco, estimator.decision; "
        "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'plotly') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

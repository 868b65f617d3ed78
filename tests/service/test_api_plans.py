"""POST /v1/plans: one spec across GPUs."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import assert_error_body
from fastapi.testclient import TestClient

from estimator import check_spec, estimate
from estimator.gpus import find_gpu, gpu_ids

PLAN: dict[str, Any] = {
    "spec": {"model": "meta-llama/Llama-3.1-8B", "method": "qlora", "batch_size": 2},
    "gpus": ["4090", "l4", "h100-sxm-80gb", "t4"],
    "tokens_per_run": 10_000_000,
}


def test_plan_rows_match_the_estimate_on_each_gpu(client: TestClient) -> None:
    r = client.post("/v1/plans", json=PLAN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [row["gpu"] for row in body["rows"]] == ["rtx-4090", "l4", "h100-sxm-80gb", "t4"]
    for row in body["rows"]:
        est = estimate(check_spec({**PLAN["spec"], "gpu": row["gpu"]}))
        assert est.largest_fit is not None
        assert row["fits"] == est.fits and row["headroom_bytes"] == est.headroom_bytes
        assert row["largest_batch"] == est.largest_fit.batch_size
        assert row["tokens_per_second"] == est.throughput.tokens_per_second
        assert row["time_per_run_s"] == pytest.approx(10_000_000 / est.throughput.tokens_per_second)
        gpu = find_gpu(row["gpu"])
        assert gpu is not None
        price = gpu.price_usd_per_hour["typical"]
        assert row["cost_per_run_usd"] == pytest.approx(row["time_per_run_s"] / 3600 * price)


def test_plan_picks_cheapest_and_fastest_among_fitting_gpus(client: TestClient) -> None:
    body = client.post("/v1/plans", json=PLAN).json()
    fitting = [row for row in body["rows"] if row["fits"]]
    assert body["cheapest_fit"] == min(fitting, key=lambda x: x["cost_per_run_usd"])["gpu"]
    assert body["fastest_fit"] == min(fitting, key=lambda x: x["time_per_run_s"])["gpu"]


def test_plan_without_gpus_covers_the_catalog(client: TestClient) -> None:
    body = client.post("/v1/plans", json={k: v for k, v in PLAN.items() if k != "gpus"}).json()
    assert [row["gpu"] for row in body["rows"]] == gpu_ids()


def test_plan_time_and_cost_scale_with_num_gpus(client: TestClient) -> None:
    spec = {**PLAN["spec"], "num_gpus": 4, "sharding": "ddp"}
    row = client.post("/v1/plans", json={**PLAN, "spec": spec, "gpus": ["h100"]}).json()["rows"][0]
    assert row["time_per_run_s"] == pytest.approx(10_000_000 / (row["tokens_per_second"] * 4))
    assert row["cost_per_run_usd"] == pytest.approx(row["time_per_run_s"] / 3600 * 2.99 * 4, rel=0.5)


def test_plan_unknown_gpu_is_404_with_its_index(client: TestClient) -> None:
    r = client.post("/v1/plans", json={**PLAN, "gpus": ["4090", "gtx-480"]})
    problems = assert_error_body(r.json(), 404, "unknown_gpu")
    assert problems[0]["field"] == "gpus.1"


def test_plan_lists_every_problem(client: TestClient) -> None:
    bad = {"spec": {"model": "nobody/x", "lora": {"r": 0}, "gpu": "h100"}, "gpus": [], "tokens_per_run": 0}
    problems = assert_error_body(client.post("/v1/plans", json=bad).json(), 422, "invalid_request")
    fields = {p["field"] for p in problems}
    assert {"spec.model", "spec.lora.r", "gpus", "tokens_per_run"} <= fields, problems


def test_plan_unknown_model_alone_is_404(client: TestClient) -> None:
    r = client.post("/v1/plans", json={**PLAN, "spec": {"model": "nobody/x"}})
    assert assert_error_body(r.json(), 404, "unknown_model")[0]["field"] == "spec.model"

"""POST /v1/costs and /v1/decisions: served when estimator.tco / estimator.decision are installed."""

from __future__ import annotations

import importlib.util

import pytest
from api_helpers import SPEC, assert_error_body
from fastapi.testclient import TestClient

HAS_TCO = importlib.util.find_spec("estimator.tco") is not None
HAS_DECISION = importlib.util.find_spec("estimator.decision") is not None

COST = {"training": SPEC, "programme": {"horizon_months": 12}}
DECISION = {
    "goal": "answer in our support tone",
    "gap": "behaviour",
    "prompting_tried": True,
    "has_eval_set": True,
}


@pytest.mark.skipif(not HAS_TCO, reason="estimator.tco is not installed")
def test_costs_equals_tco_of_the_same_request(client: TestClient) -> None:
    from estimator.tco import tco

    r = client.post("/v1/costs", json=COST)
    assert r.status_code == 200, r.text
    assert r.json() == tco(COST).model_dump(mode="json")
    assert client.get("/openapi.json").json()["paths"]["/v1/costs"]["post"]["operationId"] == "create_cost"


@pytest.mark.skipif(not HAS_TCO, reason="estimator.tco is not installed")
def test_costs_lists_every_problem(client: TestClient) -> None:
    bad = {"training": {**SPEC, "lora": {"r": 0}}, "programme": {"horizon_months": 0}, "nope": 1}
    fields = {p["field"] for p in assert_error_body(client.post("/v1/costs", json=bad).json(), 422)}
    assert {"training.lora.r", "programme.horizon_months", "nope"} <= fields


@pytest.mark.skipif(not HAS_TCO, reason="estimator.tco is not installed")
def test_costs_never_reads_server_paths_and_keeps_listing(client: TestClient) -> None:
    bad = {"training": {**SPEC, "model": "/etc/passwd"}, "programme": {"horizon_months": 0}}
    problems = assert_error_body(client.post("/v1/costs", json=bad).json(), 422)
    assert {"training.model", "programme.horizon_months"} <= {p["field"] for p in problems}
    r = client.post("/v1/costs", json={"training": {**SPEC, "gpu": "gtx-480"}})
    assert_error_body(r.json(), 404, "unknown_gpu")


@pytest.mark.skipif(not HAS_DECISION, reason="estimator.decision is not installed")
def test_decisions_equals_decide_of_the_same_request(client: TestClient) -> None:
    from estimator.decision import decide

    r = client.post("/v1/decisions", json=DECISION)
    assert r.status_code == 200, r.text
    assert r.json() == decide(DECISION).model_dump(mode="json")
    op = client.get("/openapi.json").json()["paths"]["/v1/decisions"]["post"]["operationId"]
    assert op == "create_decision"


@pytest.mark.skipif(not HAS_DECISION, reason="estimator.decision is not installed")
def test_decisions_lists_every_problem(client: TestClient) -> None:
    bad = {"route": "magic", "gap": "vibes", "extra": 1}
    problems = assert_error_body(client.post("/v1/decisions", json=bad).json(), 422)
    assert {"route", "gap", "extra"} <= {p["field"] for p in problems}

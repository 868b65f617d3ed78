"""POST /v1/estimates and /v1/estimates/batch: the contract with budget tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api_helpers import SPEC, assert_error_body, make_client
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from estimator import check_spec, estimate


def test_estimate_json_equals_estimator_model_dump(client: TestClient) -> None:
    r = client.post("/v1/estimates", json=SPEC)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == estimate(check_spec(SPEC)).model_dump(mode="json")


def test_estimate_json_equals_cli_memory_json(client: TestClient) -> None:
    from service.cli import app

    args = ["memory", "--model", SPEC["model"], "--method", "qlora", "--gpu", "rtx-4090",
            "--batch-size", "2", "--seq-len", "2048", "--json"]  # fmt: skip
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0, cli.output
    assert client.post("/v1/estimates", json=SPEC).json() == json.loads(cli.stdout)


def test_repeated_body_is_answered_identically_from_the_cache(client: TestClient) -> None:
    body = json.dumps({**SPEC, "batch_size": 3}).encode()
    first = client.post("/v1/estimates", content=body, headers={"content-type": "application/json"})
    second = client.post("/v1/estimates", content=body, headers={"content-type": "application/json"})
    assert first.status_code == second.status_code == 200
    assert first.content == second.content


def test_invalid_spec_lists_every_problem_with_its_field_path(client: TestClient) -> None:
    bad = {
        "model": "meta-llama/Llama-3.1-8B",
        "method": "full",
        "lora": {"r": 0},
        "batch_size": -1,
        "gpu": "zz",
    }
    r = client.post("/v1/estimates", json=bad)
    problems = assert_error_body(r.json(), 422, "invalid_spec")
    fields = {p["field"] for p in problems}
    assert {"lora.r", "batch_size", "gpu"} <= fields, problems


def test_cross_field_problems_are_listed_too(client: TestClient) -> None:
    bad = {"model": "meta-llama/Llama-3.1-8B", "method": "full", "lora": {"r": 8}, "num_gpus": 4}
    problems = assert_error_body(client.post("/v1/estimates", json=bad).json(), 422, "invalid_spec")
    assert {"lora", "sharding"} <= {p["field"] for p in problems}


def test_unknown_model_is_404(client: TestClient) -> None:
    r = client.post("/v1/estimates", json={**SPEC, "model": "nobody/no-such-model"})
    problems = assert_error_body(r.json(), 404, "unknown_model")
    assert problems[0]["field"] == "model"


def test_unknown_gpu_is_404(client: TestClient) -> None:
    r = client.post("/v1/estimates", json={**SPEC, "gpu": "gtx-480"})
    assert assert_error_body(r.json(), 404, "unknown_gpu")[0]["field"] == "gpu"


def test_unknown_model_with_other_problems_is_422_listing_all(client: TestClient) -> None:
    r = client.post("/v1/estimates", json={**SPEC, "model": "nobody/x", "seq_len": 0})
    fields = {p["field"] for p in assert_error_body(r.json(), 422, "invalid_spec")}
    assert {"model", "seq_len"} <= fields


def test_model_paths_on_the_server_are_never_read(client: TestClient, tmp_path: Path) -> None:
    from estimator.models import find_model

    found = find_model("HuggingFaceTB/SmolLM2-135M")
    assert found is not None
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(found.config))  # the CLI would accept this path; the API must not
    for ref in (str(cfg), str(tmp_path), "/etc/passwd", "../../etc/hostname.json"):
        r = client.post("/v1/estimates", json={"model": ref})
        assert_error_body(r.json(), 404, "unknown_model")
        assert "root:" not in r.text


def test_inline_config_is_accepted(client: TestClient) -> None:
    from estimator.models import find_model

    found = find_model("HuggingFaceTB/SmolLM2-135M")
    assert found is not None
    spec = {"model": {"config": found.config, "name": "smol"}, "gpu": "t4"}
    r = client.post("/v1/estimates", json=spec)
    assert r.status_code == 200, r.text
    assert r.json() == estimate(check_spec(spec)).model_dump(mode="json")


def test_malformed_json_is_422_invalid_json(client: TestClient) -> None:
    for raw in (b"{bad", b"", b"\xff\xfe", b'{"model": NaN}', b'{"model": "x", "seq_len": 1e999}'):
        r = client.post("/v1/estimates", content=raw, headers={"content-type": "application/json"})
        assert_error_body(r.json(), 422, "invalid_json")


def test_non_finite_lora_alpha_is_rejected_not_echoed(client: TestClient) -> None:
    raw = json.dumps({**SPEC, "lora": {"alpha": float("inf")}}).encode()  # Python writes Infinity
    r = client.post("/v1/estimates", content=raw, headers={"content-type": "application/json"})
    assert_error_body(r.json(), 422, "invalid_json")


def test_deeply_nested_body_is_422_not_500(client: TestClient) -> None:
    deep = b'{"model": {"config": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}}"
    r = client.post("/v1/estimates", content=deep, headers={"content-type": "application/json"})
    assert_error_body(r.json(), 422, "invalid_json")
    r = client.post("/v1/estimates", content=b"[" * 100_000, headers={"content-type": "application/json"})
    assert_error_body(r.json(), 422, "invalid_json")


def test_non_object_bodies_are_422(client: TestClient) -> None:
    for body in ([], [SPEC], "x", 1, True):
        r = client.post("/v1/estimates", json=body)
        assert_error_body(r.json(), 422, "invalid_spec")


def test_batch_returns_an_estimate_or_an_error_per_item(client: TestClient) -> None:
    specs: list[Any] = [SPEC, {**SPEC, "gpu": "gtx-480"}, {"model": "Qwen/Qwen3-8B", "lora": {"r": 0}}, 7]
    r = client.post("/v1/estimates/batch", json={"specs": specs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["succeeded"], body["failed"]) == (1, 3)
    items = body["results"]
    assert [i["index"] for i in items] == [0, 1, 2, 3]
    assert items[0]["estimate"] == estimate(check_spec(SPEC)).model_dump(mode="json")
    assert items[0]["error"] is None
    assert items[1]["error"]["status"] == 404 and items[1]["error"]["code"] == "unknown_gpu"
    assert items[2]["error"]["status"] == 422 and items[2]["error"]["problems"][0]["field"] == "lora.r"
    assert items[3]["error"]["status"] == 422


def test_batch_over_the_configured_limit_is_422() -> None:
    with make_client(batch_limit=2) as c:
        r = c.post("/v1/estimates/batch", json={"specs": [SPEC] * 3})
        problems = assert_error_body(r.json(), 422, "invalid_request")
        assert problems[0]["field"] == "specs" and "at most 2" in problems[0]["message"]
        assert c.post("/v1/estimates/batch", json={"specs": [SPEC] * 2}).status_code == 200
        assert (
            c.get("/openapi.json").json()["components"]["schemas"]["BatchRequest"]["properties"]["specs"]["maxItems"]
            == 2
        )


def test_batch_envelope_problems_are_422(client: TestClient) -> None:
    for body in ({}, {"specs": []}, {"specs": {}}, {"specs": [SPEC], "extra": 1}, [SPEC]):
        assert_error_body(client.post("/v1/estimates/batch", json=body).json(), 422, "invalid_request")

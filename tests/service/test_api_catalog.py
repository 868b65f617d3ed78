"""GET routes (catalogs, calibration, health) and the OpenAPI contract."""

from __future__ import annotations

from api_helpers import make_client
from fastapi.testclient import TestClient

from estimator.gpus import gpu_catalog
from estimator.models import model_catalog

OPERATION_IDS = {
    ("post", "/v1/estimates"): "create_estimate",
    ("post", "/v1/estimates/batch"): "create_estimates_batch",
    ("post", "/v1/plans"): "create_plan",
    ("get", "/v1/models"): "list_models",
    ("get", "/v1/gpus"): "list_gpus",
    ("get", "/v1/calibration"): "get_calibration",
    ("get", "/healthz"): "get_health",
}


def test_models_lists_the_whole_catalog(client: TestClient) -> None:
    rows = client.get("/v1/models").json()
    assert [r["id"] for r in rows] == [m.id for m in model_catalog().values()]
    llama = next(r for r in rows if r["id"] == "meta-llama/Llama-3.1-8B")
    assert llama["params"] == 8030261248 and llama["layers"] == 32


def test_gpus_lists_the_whole_catalog(client: TestClient) -> None:
    rows = client.get("/v1/gpus").json()
    assert rows == [g.to_json() for g in gpu_catalog().values()]


def test_calibration_reports_defaults_without_server_paths(client: TestClient) -> None:
    body = client.get("/v1/calibration").json()
    assert set(body) == {"present", "records", "records_hash", "gpus", "residuals"}
    assert "path" not in body


def test_healthz_reports_catalog_and_calibration_versions(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert len(body["catalog_version"]) == 16 and int(body["catalog_version"], 16) >= 0
    assert body["calibration_version"]
    assert body["models"] == len(model_catalog()) and body["gpus"] == len(gpu_catalog())
    assert client.get("/healthz").json()["catalog_version"] == body["catalog_version"]


def test_openapi_operation_ids_are_stable(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for (method, path), op_id in OPERATION_IDS.items():
        assert paths[path][method]["operationId"] == op_id


def test_every_route_documents_its_response_and_error_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            assert ok, (method, path)
            if path.startswith("/v1/"):
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"
                }


def test_post_bodies_have_schemas_and_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    comps = schema["components"]["schemas"]
    for path, ops in schema["paths"].items():
        if "post" not in ops:
            continue
        content = ops["post"]["requestBody"]["content"]["application/json"]
        ref = content["schema"]["$ref"].rsplit("/", 1)[-1]
        assert ref in comps, path
        assert content.get("examples") or content.get("example"), path
    estimate_examples = schema["paths"]["/v1/estimates"]["post"]["requestBody"]["content"]["application/json"]
    with make_client() as c:
        for ex in estimate_examples["examples"].values():
            assert c.post("/v1/estimates", json=ex["value"]).status_code == 200, ex

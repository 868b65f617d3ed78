"""One error body for every failure: routing, size limit, API key; never a 500 or a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from api_helpers import SPEC, assert_error_body, make_client
from fastapi.testclient import TestClient


def test_unknown_route_is_404_in_the_error_body(client: TestClient) -> None:
    assert_error_body(client.get("/v1/nope").json(), 404, "not_found")
    assert_error_body(client.post("/nope", json={}).json(), 404, "not_found")


def test_wrong_method_is_405_in_the_error_body_with_allow(client: TestClient) -> None:
    r = client.get("/v1/estimates")
    assert_error_body(r.json(), 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert_error_body(client.delete("/v1/gpus").json(), 405, "method_not_allowed")


def test_body_over_the_limit_is_413_before_parsing() -> None:
    with make_client(max_request_bytes=2048) as c:
        big = {**SPEC, "stack": {"pad": "x" * 4000}}
        r = c.post("/v1/estimates", json=big)
        assert_error_body(r.json(), 413, "request_too_large")
        r = c.post("/v1/estimates", content=b"{" * 5000, headers={"content-type": "application/json"})
        assert_error_body(r.json(), 413, "request_too_large")


def test_chunked_body_over_the_limit_is_413() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "meta-llama/Llama-3.1-8B", "stack": {"pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    with make_client(max_request_bytes=2048) as c:
        r = c.post("/v1/estimates", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers
        assert_error_body(r.json(), 413, "request_too_large")
        r = c.post("/v1/plans", content=chunks(), headers={"content-type": "application/json"})
        assert_error_body(r.json(), 413, "request_too_large")


def test_chunked_body_under_the_limit_is_served() -> None:
    def chunks() -> Iterator[bytes]:
        raw = json.dumps(SPEC).encode()
        yield raw[:10]
        yield raw[10:]

    with make_client(max_request_bytes=2048) as c:
        r = c.post("/v1/estimates", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text


def test_api_key_is_required_on_v1_when_configured() -> None:
    with make_client(api_key="s3cret") as c:
        for method, path in (("post", "/v1/estimates"), ("get", "/v1/gpus"), ("get", "/v1/nope")):
            r = c.request(method, path, json=SPEC)
            assert_error_body(r.json(), 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
        assert_error_body(c.get("/v1/gpus", headers={"x-api-key": "wrong"}).json(), 401, "unauthorized")
        assert_error_body(c.get("/v1/gpus", headers={"authorization": "Basic s3cret"}).json(), 401)
        assert c.post("/v1/estimates", json=SPEC, headers={"x-api-key": "s3cret"}).status_code == 200
        assert c.get("/v1/gpus", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/v1/gpus", headers={"authorization": "bearer s3cret"}).status_code == 200


def test_health_and_openapi_need_no_key() -> None:
    with make_client(api_key="s3cret") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/openapi.json").status_code == 200


def test_no_key_configured_means_open_access(client: TestClient) -> None:
    assert client.get("/v1/gpus").status_code == 200


def test_cors_allows_configured_origins_only() -> None:
    with make_client(cors_origins=["https://budget.example.com"]) as c:
        ok = c.options(
            "/v1/estimates",
            headers={"origin": "https://budget.example.com", "access-control-request-method": "POST"},
        )
        assert ok.headers.get("access-control-allow-origin") == "https://budget.example.com"
        other = c.get("/v1/gpus", headers={"origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers


def test_cors_preflight_passes_without_the_api_key() -> None:
    with make_client(api_key="k", cors_origins=["https://budget.example.com"]) as c:
        pre = c.options(
            "/v1/estimates",
            headers={"origin": "https://budget.example.com", "access-control-request-method": "POST",
                     "access-control-request-headers": "x-api-key"},
        )  # fmt: skip
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://budget.example.com"


def test_a_bug_becomes_a_500_error_body_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.api.routers.estimates as est

    def boom(_: object) -> bytes:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(est, "estimate_json", boom)
    with make_client() as c:
        r = c.post("/v1/estimates", json=SPEC)
        assert_error_body(r.json(), 500, "internal_error")
        assert "secret" not in r.text and "Traceback" not in r.text

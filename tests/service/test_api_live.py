"""Against a real uvicorn process (started by the ``live_server`` fixture on a free loopback port)."""

from __future__ import annotations

import contextlib
import json
import socket
from urllib.parse import urlsplit

import httpx
from api_helpers import SPEC, assert_error_body

from estimator import check_spec, estimate


def _raw(url: str, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes, return (status, body) of the response."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        with contextlib.suppress(OSError):  # the server may answer and close before reading everything
            s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_live_estimate_equals_the_estimator(live_server: str) -> None:
    r = httpx.post(f"{live_server}/v1/estimates", json=SPEC, timeout=10)
    assert r.status_code == 200
    assert r.json() == estimate(check_spec(SPEC)).model_dump(mode="json")


def test_live_keep_alive_connection_serves_many_requests(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as c:
        statuses = {c.post("/v1/estimates", json={**SPEC, "batch_size": b}).status_code for b in range(1, 30)}
    assert statuses == {200}


def test_live_content_length_over_the_limit_is_413(live_server: str) -> None:
    head = b"POST /v1/estimates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, body = _raw(live_server, head + b"Content-Length: 10000000\r\n\r\n{")
    assert status == 413
    assert_error_body(json.loads(body), 413, "request_too_large")


def test_live_chunked_body_over_the_limit_is_413(live_server: str) -> None:
    head = b"POST /v1/estimates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    chunk = b"x" * 16384
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    status, body = _raw(live_server, head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
    assert status == 413
    assert_error_body(json.loads(body), 413, "request_too_large")


def test_live_settings_come_from_the_environment(live_server: str) -> None:
    r = httpx.post(f"{live_server}/v1/estimates/batch", json={"specs": [SPEC] * 5}, timeout=10)
    assert "at most 4" in assert_error_body(r.json(), 422, "invalid_request")[0]["message"]


def test_live_unknown_route_and_method_use_the_error_body(live_server: str) -> None:
    assert_error_body(httpx.get(f"{live_server}/v2/x", timeout=10).json(), 404, "not_found")
    assert_error_body(httpx.put(f"{live_server}/v1/plans", timeout=10).json(), 405, "method_not_allowed")


def test_live_healthz(live_server: str) -> None:
    body = httpx.get(f"{live_server}/healthz", timeout=10).json()
    assert body["status"] == "ok" and body["catalog_version"]

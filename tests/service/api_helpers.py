"""Helpers shared by the API tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

SPEC: dict[str, Any] = {
    "model": "meta-llama/Llama-3.1-8B",
    "method": "qlora",
    "gpu": "rtx-4090",
    "batch_size": 2,
    "seq_len": 2048,
}


def make_settings(**kw: Any) -> Settings:
    """Settings from arguments only (no environment, no .env), so tests do not depend on the shell."""
    base: dict[str, Any] = {"api_key": None, "cors_origins": [], "allow_hub_lookup": False}
    base.update(kw)
    return Settings(_env_file=None, **base)


def make_client(**kw: Any) -> TestClient:
    return TestClient(create_app(make_settings(**kw)), raise_server_exceptions=False)


def assert_error_body(body: Any, status: int, code: str | None = None) -> list[dict[str, str]]:
    """The one error body; returns its problems."""
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"status", "code", "message", "problems"}, err
    assert err["status"] == status
    if code is not None:
        assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    for p in err["problems"]:
        assert set(p) == {"field", "message"}
    problems: list[dict[str, str]] = err["problems"]
    return problems

"""``estimate serve`` runs uvicorn on the app factory."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from service.cli import app


def test_serve_is_registered_in_the_cli() -> None:
    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    for flag in ("--host", "--port", "--workers"):
        assert flag in r.output


def test_serve_runs_uvicorn_on_the_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    monkeypatch.delenv("TUNECAST_HOST", raising=False)
    monkeypatch.setenv("TUNECAST_PORT", "9123")
    r = CliRunner().invoke(app, ["serve", "--workers", "2"])
    assert r.exit_code == 0, r.output
    ((args, kw),) = calls
    assert args == ("service.api.app:create_app",)
    assert kw["factory"] is True
    assert (kw["host"], kw["port"], kw["workers"]) == ("127.0.0.1", 9123, 2)
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "8080"])
    assert (calls[1][1]["host"], calls[1][1]["port"]) == ("0.0.0.0", 8080)


def test_app_factory_builds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.api.settings import get_settings

    monkeypatch.setenv("TUNECAST_API_KEY", "k")
    get_settings.cache_clear()
    try:
        with TestClient(create_app()) as c:
            assert c.get("/v1/gpus").status_code == 401
            assert c.get("/v1/gpus", headers={"x-api-key": "k"}).status_code == 200
    finally:
        get_settings.cache_clear()

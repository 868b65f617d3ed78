"""``create_app()``: the FastAPI application (``uvicorn --factory service.api.app:create_app``).

POST /v1/estimates         TrainingSpec -> Estimate (exactly ``estimate(spec).model_dump(mode="json")``)
POST /v1/estimates/batch   {"specs": [...]} -> per-item estimate or error
POST /v1/plans             one spec across GPUs: fit, headroom, largest batch, tokens/s, time, cost
POST /v1/costs             the TCO bill (``estimator.tco``), when that module is installed
POST /v1/decisions         the fine-tune-or-not gate (``estimator.decision``), when installed
GET  /v1/models | /v1/gpus | /v1/calibration
GET  /healthz              liveness, catalog and calibration versions
GET  /openapi.json         the contract, with examples and stable operation ids
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.api import errors, openapi
from service.api.middleware import GuardMiddleware
from service.api.routers import catalog, estimates, optional, plans, system
from service.api.settings import Settings, get_settings
from service.api.state import ApiState

DESCRIPTION = """\
Will this fine-tuning run fit, how fast will it go, what will it cost, and should we fine-tune at all?

All sizes are integer bytes. Every failure has the same body:
`{"error": {"status", "code", "message", "problems": [{"field", "message"}]}}`; a 422 lists every
problem of the input at once. When the server has an API key, send it as `X-API-Key` or
`Authorization: Bearer`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new application; settings default to the ``TUNECAST_*`` environment."""
    settings = settings or get_settings()
    app = FastAPI(title="tunecast", version=system.package_version(), description=DESCRIPTION)
    app.state.tunecast = ApiState(settings)
    errors.install(app)
    for module in (estimates, plans, catalog, system):
        app.include_router(module.router)
    for router in optional.routers():
        app.include_router(router)
    _include_dashboard(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
        )
    # Added last, so it runs first: nothing is parsed for an over-size or unauthenticated request.
    key = settings.api_key.get_secret_value() if settings.api_key else None
    app.add_middleware(GuardMiddleware, max_body=settings.max_request_bytes, api_key=key)
    openapi.install(app, DESCRIPTION)
    _limit_batch_schema(app, settings.batch_limit)
    return app


def _include_dashboard(app: FastAPI) -> None:
    """GET /dashboard (``service.dashboard``), when plotly (the ``plots`` extra) is installed."""
    try:
        from service import dashboard
    except ModuleNotFoundError as exc:
        if exc.name in ("plotly", "service.dashboard") or (exc.name or "").startswith("plotly."):
            return
        raise
    app.include_router(dashboard.router)


def _limit_batch_schema(app: FastAPI, limit: int) -> None:
    build = app.openapi

    def with_limit() -> dict[str, Any]:
        schema = build()
        batch = schema.get("components", {}).get("schemas", {}).get("BatchRequest", {})
        specs = batch.get("properties", {}).get("specs")
        if isinstance(specs, dict):
            specs["maxItems"] = limit
        return schema

    app.openapi = with_limit  # type: ignore[method-assign]

"""Apps the dashboard tests serve: the dashboard router alone, and (when it exists) the real API with it."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from service import dashboard


def standalone_app() -> FastAPI:
    app = FastAPI()
    app.include_router(dashboard.router)
    return app


def full_app() -> FastAPI | None:
    """``service.api.app:create_app()`` with the dashboard router included, or None without the API."""
    try:
        mod = importlib.import_module("service.api.app")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("service.api"):
            return None
        raise
    app: FastAPI = mod.create_app()
    app.include_router(dashboard.router)
    return app


def best_app() -> FastAPI:
    return full_app() or standalone_app()

"""``estimate serve``: run the HTTP API with uvicorn (needs the ``service`` extra).

    estimate serve [--host 127.0.0.1] [--port 8000] [--workers N]

Defaults come from TUNECAST_HOST / TUNECAST_PORT / TUNECAST_WORKERS; every other setting
(TUNECAST_API_KEY, TUNECAST_MAX_REQUEST_BYTES, ...) is read by the app itself, in each worker.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

APP_FACTORY = "service.api.app:create_app"


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default TUNECAST_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TUNECAST_PORT or 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default TUNECAST_WORKERS or 1).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    try:
        import uvicorn

        from service.api.settings import Settings
    except ImportError as exc:
        from estimator.errors import Problem
        from service.cli import fail

        fail([Problem("serve", f"needs the service extra (pip install 'tunecast[service]'): {exc}")])
    settings = Settings()
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host or settings.host,
        port=settings.port if port is None else port,
        workers=workers or settings.workers,
        log_level=log_level,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        server_header=False,
        timeout_keep_alive=5,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

"""The planning dashboard's routes: the page, plotly's JS from the installed package, the chart data.

    GET /dashboard               the page (query parameters preset the controls)
    GET /dashboard/plotly.min.js plotly.js as bundled in the installed ``plotly`` package (offline)
    GET /dashboard/data?...      every chart as plotly figure JSON, computed through the estimator
    GET /dashboard/options       models, GPUs and choices (fallback when /v1 is not mounted)

Routes only translate: the figures come from ``service.dashboard.data`` and ``figures``. They are left
out of the OpenAPI schema: the page is UI, the ``/v1`` API is the contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from estimator.errors import SpecError
from service.dashboard.data import build_figures, parse_input
from service.dashboard.figures import figure_json, plotly_js_path
from service.dashboard.page import options, render_page

router = APIRouter(tags=["dashboard"], include_in_schema=False)

MAX_PARAM = 256


def _has_route(request: Request, path: str, method: str) -> bool:
    """Whether the running app serves ``method path`` (read from its OpenAPI schema, which FastAPI
    builds once and caches; included routers are nested objects in recent FastAPI versions)."""
    schema: dict[str, Any] = request.app.openapi()
    ops = schema.get("paths", {}).get(path) or {}
    return method.lower() in ops


def _problems_response(exc: SpecError) -> JSONResponse:
    """The service's error body (``service.api.errors``): 422 with every problem listed."""
    problems = [{"field": p.field, "message": p.message} for p in exc.problems]
    return JSONResponse(
        {"error": {"status": 422, "code": "invalid_spec",
                   "message": f"the spec is invalid: {len(problems)} problem(s)", "problems": problems}},
        status_code=422,
    )  # fmt: skip


@router.get("/dashboard", response_class=HTMLResponse, operation_id="dashboard_page")
def dashboard_page() -> HTMLResponse:
    return HTMLResponse(render_page(), headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/plotly.min.js", operation_id="dashboard_plotly_js")
def dashboard_plotly_js() -> FileResponse:
    return FileResponse(
        plotly_js_path(), media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )  # fmt: skip


@router.get("/dashboard/options", operation_id="dashboard_options")
def dashboard_options() -> dict[str, Any]:
    return options()


@router.get("/dashboard/data", operation_id="dashboard_data", response_model=None)
def dashboard_data(
    request: Request,
    model: str | None = Query(None, max_length=MAX_PARAM),
    method: str | None = Query(None, max_length=MAX_PARAM),
    gpu: str | None = Query(None, max_length=MAX_PARAM),
    batch_size: str | None = Query(None, max_length=MAX_PARAM),
    seq_len: str | None = Query(None, max_length=MAX_PARAM),
    gradient_checkpointing: str | None = Query(None, max_length=MAX_PARAM),
    optimizer: str | None = Query(None, max_length=MAX_PARAM),
    lora_r: str | None = Query(None, max_length=MAX_PARAM),
    tokens: str | None = Query(None, max_length=MAX_PARAM),
) -> Response:
    params = {
        "model": model, "method": method, "gpu": gpu, "batch_size": batch_size, "seq_len": seq_len,
        "gradient_checkpointing": gradient_checkpointing, "optimizer": optimizer, "lora_r": lora_r,
        "tokens": tokens,
    }  # fmt: skip
    try:
        inp = parse_input(params)
        # (d) only where the service offers the TCO bill; (e) whenever calibration records exist.
        figs, summ = build_figures(inp, tco=_has_route(request, "/v1/costs", "POST"), calibration=True)
    except SpecError as exc:
        return _problems_response(exc)
    return JSONResponse({"figures": {k: figure_json(f) for k, f in figs.items()}, "summary": summ})

"""GET /v1/models and /v1/gpus: the embedded catalogs."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter

from estimator.architecture import parse_architecture
from estimator.gpus import gpu_catalog
from estimator.models import model_catalog
from service.api.errors import ERROR_RESPONSES
from service.api.schemas import GPUOut, ModelInfo

router = APIRouter(prefix="/v1", tags=["catalog"])
_AUTH: dict[int | str, dict[str, Any]] = {401: ERROR_RESPONSES[401]}


@cache
def _models() -> list[dict[str, Any]]:
    rows = []
    for m in model_catalog().values():
        a = parse_architecture(m.config)
        rows.append(
            {"id": m.id, "family": a.family, "params": a.total_params, "active_params": a.active_params,
             "layers": a.layers, "hidden": a.hidden, "vocab": a.vocab, "source": m.source}
        )  # fmt: skip
    return rows


@router.get(
    "/models", response_model=list[ModelInfo], operation_id="list_models", summary="The model catalog",
    responses=_AUTH,
)  # fmt: skip
async def list_models() -> list[dict[str, Any]]:
    return _models()


@router.get("/gpus", response_model=list[GPUOut], operation_id="list_gpus", summary="The GPU catalog", responses=_AUTH)
async def list_gpus() -> list[dict[str, Any]]:
    return [g.to_json() for g in gpu_catalog().values()]

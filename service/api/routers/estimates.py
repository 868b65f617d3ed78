"""POST /v1/estimates and /v1/estimates/batch: a TrainingSpec in, ``estimate(spec)`` out.

The body is read raw so that ``check_spec`` reports every problem (field and cross-field) at once,
and so a repeated body is answered from the cache without parsing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from estimator.errors import Problem, SpecError
from estimator.estimate import Estimate, estimate
from estimator.spec import TrainingSpec, check_spec
from service.api.body import parse_json
from service.api.errors import ERROR_RESPONSES, NOT_FOUND, ApiError, error_json, spec_error
from service.api.hub import prepare_spec
from service.api.openapi import json_body
from service.api.schemas import SPEC_EXAMPLES, BatchRequest, BatchResponse
from service.api.state import get_state

router = APIRouter(prefix="/v1", tags=["estimates"])
JSON = "application/json"


def estimate_json(data: Any) -> bytes:
    """The Estimate of a raw spec as JSON bytes (raises SpecError)."""
    return estimate(check_spec(data)).model_dump_json().encode()


@router.post(
    "/estimates",
    response_model=Estimate,
    operation_id="create_estimate",
    summary="Estimate memory, fit and throughput of one training spec",
    responses={**ERROR_RESPONSES, **NOT_FOUND},
    openapi_extra=json_body(TrainingSpec, SPEC_EXAMPLES),
)
async def create_estimate(request: Request) -> Response:
    state = get_state(request)
    raw = await request.body()
    cached = state.cache.get(raw)
    if cached is not None:
        return Response(cached, media_type=JSON)
    data = await prepare_spec(parse_json(raw), state.hub)
    body = estimate_json(data)
    state.cache.put(raw, body)
    return Response(body, media_type=JSON)


@router.post(
    "/estimates/batch",
    response_model=BatchResponse,
    operation_id="create_estimates_batch",
    summary="Estimate several specs; each item gets its estimate or its error",
    responses=ERROR_RESPONSES,
    openapi_extra=json_body(BatchRequest, {"two-specs": {"specs": list(SPEC_EXAMPLES.values())[:2]}}),
)
async def create_estimates_batch(request: Request) -> Response:
    state = get_state(request)
    data = parse_json(await request.body())
    limit = state.settings.batch_limit
    specs = data.get("specs") if isinstance(data, dict) else None
    problems: list[Problem] = []
    if not isinstance(data, dict):
        problems.append(Problem("", 'the body must be an object {"specs": [...]}'))
    elif not isinstance(specs, list) or not specs:
        problems.append(Problem("specs", "give a non-empty list of training specs"))
    elif len(specs) > limit:
        problems.append(Problem("specs", f"at most {limit} specs per batch, got {len(specs)}"))
    if isinstance(data, dict):
        problems += [Problem(k, "unknown field") for k in data if k != "specs"]
    if problems:
        raise ApiError(422, "invalid_request", f"the batch request is invalid: {len(problems)} problem(s)", problems)
    assert isinstance(specs, list)
    prepared: list[Any] = []
    for item in specs:
        try:
            prepared.append(await prepare_spec(item, state.hub))
        except SpecError as exc:
            prepared.append(exc)
    parts = await run_in_threadpool(_batch_parts, prepared)
    ok = sum(1 for good, _ in parts if good)
    items = b",".join(part for _, part in parts)
    body = b'{"results":[' + items + b'],"succeeded":%d,"failed":%d}' % (ok, len(parts) - ok)
    return Response(body, media_type=JSON)


def _batch_parts(items: list[Any]) -> list[tuple[bool, bytes]]:
    """(succeeded, JSON of one BatchItem) per spec."""
    out: list[tuple[bool, bytes]] = []
    for i, item in enumerate(items):
        try:
            if isinstance(item, SpecError):
                raise item
            out.append((True, b'{"index":%d,"estimate":%s,"error":null}' % (i, estimate_json(item))))
        except SpecError as exc:
            e = spec_error(exc)
            detail = error_json(e.status, e.code, e.message, e.problems)[len(b'{"error":') : -1]
            out.append((False, b'{"index":%d,"estimate":null,"error":%s}' % (i, detail)))
    return out

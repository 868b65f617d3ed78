"""POST /v1/plans: one model and method across a list of GPUs (``estimator.plan``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from estimator.errors import Problem, SpecError
from estimator.plan import Plan, PlanRequest, check_plan, plan
from service.api.body import parse_json
from service.api.errors import ERROR_RESPONSES, NOT_FOUND, spec_error
from service.api.hub import prepare_spec
from service.api.openapi import json_body
from service.api.state import get_state

router = APIRouter(prefix="/v1", tags=["plans"])

_EXAMPLE = {
    "spec": {"model": "meta-llama/Llama-3.1-8B", "method": "qlora", "batch_size": 2, "seq_len": 2048},
    "gpus": ["rtx-4090", "l40s", "a100-sxm-80gb", "h100-sxm-80gb"],
    "tokens_per_run": 50_000_000,
    "price": "typical",
}


@router.post(
    "/plans",
    response_model=Plan,
    operation_id="create_plan",
    summary="Compare GPUs for one spec: fit, headroom, largest batch, tokens/s, time and cost per run",
    responses={**ERROR_RESPONSES, **NOT_FOUND},
    openapi_extra=json_body(PlanRequest, {"8b-qlora-four-gpus": _EXAMPLE}),
)
async def create_plan(request: Request) -> Response:
    state = get_state(request)
    data = parse_json(await request.body())
    if isinstance(data, dict) and isinstance(data.get("spec"), dict):
        try:
            data = {**data, "spec": await prepare_spec(data["spec"], state.hub)}
        except SpecError as exc:
            prefixed = [Problem(f"spec.{p.field}" if p.field else "spec", p.message) for p in exc.problems]
            try:
                check_plan({**data, "spec": {"model": "meta-llama/Llama-3.1-8B"}})
            except SpecError as rest:
                prefixed += [p for p in rest.problems if not p.field.startswith("spec")]
            raise spec_error(SpecError(prefixed), "plan request") from None
    try:
        req = check_plan(data)
    except SpecError as exc:
        raise spec_error(exc, "plan request") from None
    result = await run_in_threadpool(plan, req)
    return Response(result.model_dump_json(), media_type="application/json")

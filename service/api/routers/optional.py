"""POST /v1/costs (``estimator.tco.tco``) and POST /v1/decisions (``estimator.decision.decide``).

Those modules are optional to this package: a route exists when its module does. The request and
response models are read from the function's signature (first parameter, return annotation), so the
route stays a translation whatever the models are called.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from estimator.errors import Problem, SpecError
from service.api.body import parse_json
from service.api.errors import ERROR_RESPONSES, NOT_FOUND, ApiError, spec_error, validation_error
from service.api.hub import prepare_spec
from service.api.openapi import json_body
from service.api.state import get_state

log = logging.getLogger("tunecast.api")

# Keys of a request body that hold a TrainingSpec (its model reference is checked like /v1/estimates).
SPEC_KEYS = ("spec", "training")
# A catalog model standing in for an unknown one while the rest of a body is checked.
PROBE_MODEL = "meta-llama/Llama-3.1-8B"


class Loaded(NamedTuple):
    fn: Callable[..., Any]
    request_model: type[BaseModel]
    response_model: Any
    takes_raw: bool


_COST_EXAMPLE: dict[str, Any] = {
    "training": {"model": "meta-llama/Llama-3.1-8B", "method": "qlora", "gpu": "rtx-4090", "batch_size": 2},
    "programme": {"horizon_months": 12},
}

_DECISION_EXAMPLE: dict[str, Any] = {
    "goal": "answer support tickets in our house tone and format",
    "gap": "behaviour",
    "prompting_tried": True,
    "has_eval_set": True,
}


class Optional(NamedTuple):
    module: str
    function: str
    path: str
    operation_id: str
    tag: str
    summary: str
    example: dict[str, Any] | None


OPTIONAL = (
    Optional("estimator.tco", "tco", "/costs", "create_cost", "costs",
             "Total cost of a fine-tuning programme: compute, labelling, iterations, eval, retraining",
             _COST_EXAMPLE),
    Optional("estimator.decision", "decide", "/decisions", "create_decision", "decisions",
             "Should we fine-tune at all? The decision gate with its reasons", _DECISION_EXAMPLE),
)  # fmt: skip


def load(module: str, function: str) -> Loaded | None:
    """The function and its models, or None when the module is not installed."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    fn = getattr(mod, function, None)
    if not callable(fn):
        log.warning("%s has no function %s: route not served", module, function)
        return None
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters)
    first = hints.get(params[0]) if params else None
    options = typing.get_args(first) if typing.get_args(first) else (first,)
    models = [t for t in options if isinstance(t, type) and issubclass(t, BaseModel)]
    if not models:
        log.warning("%s.%s does not take a pydantic model first: route not served", module, function)
        return None
    # A function that also takes a Mapping validates raw input itself (listing every problem).
    raw = any(typing.get_origin(t) in (Mapping, dict) or t in (Mapping, dict) for t in options)
    return Loaded(fn, models[0], hints.get("return", Any), raw)


def _examples(model: type[BaseModel], ours: dict[str, Any] | None) -> dict[str, Any]:
    """Our example, else the first of the model's own ``json_schema_extra`` examples."""
    if ours is not None:
        return {"example": ours}
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if isinstance(examples, list) and examples and isinstance(examples[0], dict):
        return {"example": examples[0]}
    return {}


def _route(found: Loaded, what: str) -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        state = get_state(request)
        data = parse_json(await request.body())
        for key in SPEC_KEYS:
            if isinstance(data, dict) and isinstance(data.get(key), dict):
                try:
                    data = {**data, key: await prepare_spec(data[key], state.hub)}
                except SpecError as exc:
                    problems = [Problem(f"{key}.{p.field}" if p.field else key, p.message) for p in exc.problems]
                    # The rest of the body is still checked, with a stand-in spec, to list everything.
                    problems += await _other_problems(found, {**data, key: {"model": PROBE_MODEL}}, key)
                    raise spec_error(SpecError(problems), what) from None
        try:
            result = await run_in_threadpool(_call, found, data)
        except SpecError as exc:
            raise spec_error(exc, what) from None
        if isinstance(result, BaseModel):
            return Response(result.model_dump_json(), media_type="application/json")
        return JSONResponse(jsonable_encoder(result))

    return handler


async def _other_problems(found: Loaded, probe: Any, key: str) -> list[Problem]:
    try:
        await run_in_threadpool(_call, found, probe)
    except (SpecError, ApiError) as exc:
        return [p for p in exc.problems if p.field.split(".")[0] != key]
    return []


def _call(found: Loaded, data: Any) -> Any:
    """The function on the body (validated into its model first unless it takes raw input)."""
    arg: Any = data
    if not found.takes_raw:
        try:
            arg = found.request_model.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc) from None
    return found.fn(arg)


def routers() -> list[APIRouter]:
    """A router per optional module that is installed."""
    out: list[APIRouter] = []
    for opt in OPTIONAL:
        found = load(opt.module, opt.function)
        if found is None:
            continue
        router = APIRouter(prefix="/v1", tags=[opt.tag])
        router.add_api_route(
            opt.path,
            _route(found, f"{opt.tag} request"),
            methods=["POST"],
            response_model=found.response_model,
            operation_id=opt.operation_id,
            summary=opt.summary,
            responses={**ERROR_RESPONSES, **NOT_FOUND},
            openapi_extra=json_body(found.request_model, _examples(found.request_model, opt.example)),
        )
        out.append(router)
    return out

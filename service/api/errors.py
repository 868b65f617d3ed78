"""One error body for every failure the service returns.

    {"error": {"status": 422, "code": "invalid_spec", "message": "...",
               "problems": [{"field": "lora.r", "message": "..."}, ...]}}

    status  code                  when
    401     unauthorized          TUNECAST_API_KEY is set and the request lacks the key
    404     unknown_model         the only problems are an unknown model id
    404     unknown_gpu           the only problems are unknown GPU ids (or model and GPU: unknown_reference)
    404     not_found             no such route
    405     method_not_allowed    the route exists, the method does not
    413     request_too_large     the body is over TUNECAST_MAX_REQUEST_BYTES (checked before parsing)
    422     invalid_json          the body is not JSON
    422     invalid_spec          a training spec is wrong: every problem with its field path
    422     invalid_request       any other body is wrong: every problem with its field path
    500     internal_error        a bug in tunecast (logged with its traceback; never shown)

A 404 for an unknown model or GPU is only given when nothing else is wrong; otherwise the 422
lists the unknown id among the other problems.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from estimator.errors import Problem, SpecError, UnknownGPUError, UnknownModelError

log = logging.getLogger("tunecast.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
}


class ProblemOut(BaseModel):
    """One thing wrong: where (a dotted field path, "" for the whole body) and what."""

    field: str = Field(examples=["lora.r"])
    message: str = Field(examples=["Input should be greater than or equal to 1"])


class ErrorDetail(BaseModel):
    status: int = Field(examples=[422])
    code: str = Field(examples=["invalid_spec"])
    message: str
    problems: list[ProblemOut] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """The body of every non-2xx response."""

    error: ErrorDetail


class ApiError(Exception):
    """Raised by routes and middleware; rendered as :class:`ErrorBody`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: Iterable[Problem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems = list(problems)
        self.headers = dict(headers or {})


def error_json(status: int, code: str, message: str, problems: Iterable[Problem] = ()) -> bytes:
    body = {
        "error": {
            "status": status,
            "code": code,
            "message": message,
            "problems": [{"field": p.field, "message": p.message} for p in problems],
        }
    }
    return json.dumps(body, separators=(",", ":")).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    problems: Iterable[Problem] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_json(status, code, message, problems),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _is_unknown(p: Problem) -> str | None:
    """'model' / 'gpu' when the problem says an id is unknown (field may be prefixed: 'spec.gpu')."""
    leaf = p.field.rsplit(".", 1)[-1]
    head = p.field.split(".", 1)[0]
    if not p.message.startswith("unknown "):
        return None
    if leaf == "model":
        return "model"
    if leaf == "gpu" or head == "gpus":
        return "gpu"
    return None


def spec_error(exc: SpecError, what: str = "spec") -> ApiError:
    """A SpecError as an ApiError: 404 when only unknown ids are wrong, else 422 with every problem."""
    problems = exc.problems
    kinds: set[str | None] = {_is_unknown(p) for p in problems}
    if isinstance(exc, UnknownModelError):
        kinds = {"model"}
    elif isinstance(exc, UnknownGPUError):
        kinds = {"gpu"}
    if problems and None not in kinds:
        code = f"unknown_{next(iter(kinds))}" if len(kinds) == 1 else "unknown_reference"
        return ApiError(404, code, "; ".join(p.message for p in problems), problems)
    code = "invalid_spec" if what == "spec" else "invalid_request"
    return ApiError(422, code, f"the {what} is invalid: {len(problems)} problem(s)", problems)


def problems_from_errors(errors: Sequence[Mapping[str, Any]], drop_prefix: str = "") -> list[Problem]:
    """pydantic/FastAPI error dicts as Problems with dotted paths (``body.`` removed)."""
    out: list[Problem] = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if not str(x).startswith("function-")]
        if loc and loc[0] == drop_prefix:
            loc = loc[1:]
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        out.append(Problem(".".join(loc), msg))
    return out


def validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    problems = problems_from_errors(exc.errors(include_url=False))
    if prefix:
        problems = [Problem(f"{prefix}.{p.field}" if p.field else prefix, p.message) for p in problems]
    return ApiError(422, "invalid_request", f"the request is invalid: {len(problems)} problem(s)", problems)


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.problems, exc.headers)


async def _spec_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, SpecError)
    e = spec_error(exc)
    return error_response(e.status, e.code, e.message, e.problems)


async def _request_validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = problems_from_errors(exc.errors(), drop_prefix="body")
    return error_response(422, "invalid_request", f"the request is invalid: {len(problems)} problem(s)", problems)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else _CODES.get(status, "error")
    return error_response(status, _CODES.get(status, "error"), message, (), exc.headers)


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error: this is a bug in tunecast")


def install(app: FastAPI) -> None:
    """Register the handlers that give every failure the one error body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(SpecError, _spec_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong API key (when one is configured)."},
    413: {"model": ErrorBody, "description": "The body is larger than the configured limit."},
    422: {"model": ErrorBody, "description": "The body is invalid; every problem is listed with its field."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown model or GPU id (and nothing else wrong)."}
}

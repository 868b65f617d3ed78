"""Reading request bodies: strict JSON (no NaN/Infinity, no overflowing floats), bounded nesting."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request

from estimator.errors import Problem
from service.api.errors import ApiError

MAX_DEPTH = 32


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:40]} is out of range")
    return v


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body, or ApiError 422 ``invalid_json``."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        msg = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise ApiError(422, "invalid_json", "the body is not valid JSON", [Problem("", msg[:300])]) from None
    if _too_deep(value):
        raise ApiError(
            422,
            "invalid_json",
            "the body is nested too deeply",
            [Problem("", f"more than {MAX_DEPTH} levels")],
        )
    return value


async def read_json(request: Request) -> tuple[bytes, Any]:
    raw = await request.body()
    return raw, parse_json(raw)

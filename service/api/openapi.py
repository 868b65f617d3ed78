"""OpenAPI for routes that read their body raw (so every problem of a spec, cross-field ones
included, is listed by ``check_spec``): the body schema is the estimator's pydantic model, added to
``components`` here, with examples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], examples: dict[str, Any], description: str = "") -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON body of ``model`` with named examples."""
    _BODY_MODELS[model.__name__] = model
    content = {
        "schema": {"$ref": _REF.format(model=model.__name__)},
        "examples": {name: {"summary": name, "value": value} for name, value in examples.items()},
    }
    body: dict[str, Any] = {"required": True, "content": {"application/json": content}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def schema_of(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema, $defs) of a model with refs pointing into components."""
    schema = model.model_json_schema(ref_template=_REF, mode="validation")
    defs = schema.pop("$defs", {})
    return schema, defs


def install(app: FastAPI, description: str) -> None:
    """Replace ``app.openapi`` with one that also holds the raw-body models (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=description, routes=app.routes)
        comps: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _BODY_MODELS.items():
            body, defs = schema_of(model)
            for k, v in defs.items():
                comps.setdefault(k, v)
            comps.setdefault(name, body)
        app.openapi_schema = schema
        return schema

    replace: Callable[[], dict[str, Any]] = openapi
    app.openapi = replace  # type: ignore[method-assign]

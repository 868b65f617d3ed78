"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request on the hot path).

``GuardMiddleware`` runs before anything is parsed:
- 413 when ``Content-Length`` is over the limit, and, for chunked or lying bodies, as soon as the
  bytes received pass it (the app never sees more than the limit);
- 401 on ``/v1`` when an API key is configured and neither ``X-API-Key`` nor
  ``Authorization: Bearer`` carries it (compared in constant time).
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_json


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (FastAPI re-raises HTTPExceptions
    met while reading a body, so this renders as 413 rather than a parse error)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class GuardMiddleware:
    def __init__(self, app: ASGIApp, max_body: int, api_key: str | None) -> None:
        self.app = app
        self.max_body = max_body
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        # CORS preflights carry no credentials by design; they reach no route (CORS or 405 answers).
        auth_ok = self.api_key is None or scope["method"] == "OPTIONS" or not scope["path"].startswith("/v1")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _reply(send, 400, "bad_request", "invalid Content-Length header")
                    return
            elif not auth_ok and self.api_key is not None:
                if name == b"x-api-key":
                    auth_ok = hmac.compare_digest(value.strip(), self.api_key)
                elif name == b"authorization" and value[:7].lower() == b"bearer ":
                    auth_ok = hmac.compare_digest(value[7:].strip(), self.api_key)
        if not auth_ok:
            message = "missing or wrong API key: send X-API-Key or Authorization: Bearer"
            await _reply(send, 401, "unauthorized", message, {"www-authenticate": "Bearer"})
            return
        if length is not None and length > self.max_body:
            await _reply(send, 413, "request_too_large", f"the request body is larger than {self.max_body} bytes")
            return
        await self.app(scope, _limited(receive, self.max_body), send)


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


async def _reply(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = error_json(status, code, message)
    raw: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

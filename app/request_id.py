"""A request id on every request, every log line it causes, its answer, and one access line.

`X-Request-ID` from the client is kept when it is short and plain (a provider's, a proxy's, the
storefront's), so one id follows the request across systems; otherwise one is made. It is bound in
structlog's context for the request (`request_id` on every line logged while it runs, the standard
library's included), set on the answer (errors too: this wraps the unhandled-error middleware), and
the request ends with one `request` line: method, path with query keys only, route, status, duration.

A pure ASGI middleware, no BaseHTTPMiddleware: a few microseconds a request. It only reads the
request's headers (a provider may sign a webhook's X-Request-ID as part of its content).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logging_setup import get_logger, without_query_values

HEADER = b"x-request-id"
MAX_LENGTH = 128  # the inbox's delivery id column, where a provider's request id ends up
_VALID = re.compile(rb"[A-Za-z0-9._:\-]{1,%d}" % MAX_LENGTH)

_current: ContextVar[str | None] = ContextVar("request_id", default=None)
# What `bind` bound during the request, undone when it ends.
_bindings: ContextVar[list[Mapping[str, Token[Any]]] | None] = ContextVar("request_bindings", default=None)

log = get_logger("app.access")


def current() -> str | None:
    """The id of the request being served; None outside one."""
    return _current.get()


def bind(**fields: Any) -> None:
    """Put `fields` (an order id, a session id, once known) on every line the request logs from
    here on, its access line included; undone when the request ends."""
    tokens = structlog.contextvars.bind_contextvars(**fields)
    bindings = _bindings.get()
    if bindings is not None:
        bindings.append(tokens)


def new_id() -> str:
    return uuid.uuid4().hex


def accepted(value: bytes) -> str | None:
    """The client's id when it is acceptable, else None."""
    return value.decode("ascii") if _VALID.fullmatch(value) else None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == HEADER:
                request_id = accepted(value)
                break
        if request_id is None:
            request_id = new_id()
        header = (HEADER, request_id.encode("ascii"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = _current.set(request_id)
        bindings = [structlog.contextvars.bind_contextvars(request_id=request_id)]
        bindings_token = _bindings.set(bindings)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            query = scope.get("query_string", b"")
            path = scope["path"]
            log.info(
                "request",
                method=scope["method"],
                path=without_query_values(f"{path}?{query.decode('latin-1')}") if query else path,
                route=getattr(route, "path", None),
                status=status,  # 0: no answer started (the connection was dropped)
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            for tokens in reversed(bindings):
                structlog.contextvars.reset_contextvars(**tokens)
            _bindings.reset(bindings_token)
            _current.reset(token)

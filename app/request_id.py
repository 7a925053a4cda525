"""A request id on every request, every log line it causes, its answer, and one access line.

`X-Request-ID` from the client is kept when it is short and plain (a provider's, a proxy's, the
storefront's), so one id follows the request across systems; otherwise one is made. It is bound in
structlog's context for the request (`request_id` on every line logged while it runs, the standard
library's included), set on the answer (errors too: the edge layer answers them), and
the request ends with one `request` line: method, path with query keys only, route, status, duration.

The edge middleware (`app/edge.py`) calls `start`, `log_request` and `end` around every request. It
only reads the request's headers (a provider may sign a webhook's X-Request-ID as part of its
content).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any

import structlog
from starlette.types import Scope

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
    return os.urandom(16).hex()  # 128 random bits, as 32 hex digits


def accepted(value: bytes) -> str | None:
    """The client's id when it is acceptable, else None."""
    return value.decode("ascii") if _VALID.fullmatch(value) else None


def start(request_id: str) -> tuple[Token[str | None], Token[list[Mapping[str, Token[Any]]] | None]]:
    """Make `request_id` the current request's, on every line it logs; `end` undoes it."""
    token = _current.set(request_id)
    bindings = [structlog.contextvars.bind_contextvars(request_id=request_id)]
    return token, _bindings.set(bindings)


def end(tokens: tuple[Token[str | None], Token[list[Mapping[str, Token[Any]]] | None]]) -> None:
    """Undo `start` and every `bind` since."""
    token, bindings_token = tokens
    for bound in reversed(_bindings.get() or ()):
        structlog.contextvars.reset_contextvars(**bound)
    _bindings.reset(bindings_token)
    _current.reset(token)


def log_request(scope: Scope, status: int, started: float) -> None:
    """The request's access line; `status` 0 when no answer started (the connection was dropped)."""
    if not log.is_enabled_for(logging.INFO):
        return  # LOG_LEVEL above INFO: don't build a line nobody keeps
    route = scope.get("route")
    query = scope.get("query_string", b"")
    path = scope["path"]
    log.info(
        "request",
        method=scope["method"],
        path=without_query_values(f"{path}?{query.decode('latin-1')}") if query else path,
        route=getattr(route, "path", None),
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )

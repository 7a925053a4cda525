"""One JSON error shape across the API: {"error": {"code", "message", "details"?}}.

Every answer has it, failures included: a database out of reach is a 503 `database_unavailable`
and a pool with no free connection a 503 `database_busy`, both with Retry-After; any other
exception is a 500 `internal_error` carrying a `request_id` that its one log line carries too.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from app.db import DatabaseUnavailable, database_error_summary, is_database_unavailable, is_pool_exhausted
from app.logging_setup import get_logger
from app.request_id import current as current_request_id

log = get_logger(__name__)

# Seconds a client is asked to wait: a database restart takes a few, a busy pool frees up sooner.
DATABASE_RETRY_AFTER_SECONDS = 5
POOL_RETRY_AFTER_SECONDS = 1

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    502: "provider_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error a client should see, with a stable machine-readable code."""

    def __init__(
        self, status_code: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details


class NotFound(ApiError):
    def __init__(self, what: str = "resource") -> None:
        super().__init__(404, "not_found", f"{what} not found")


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status_code, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        details.append(
            {"field": ".".join(loc), "message": err.get("msg", "invalid"), "type": err.get("type")}
        )
    return details


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return refusal_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    if any(d["type"] == "json_invalid" for d in details):
        return error_response(400, "malformed_json", "request body is not valid JSON", details)
    return error_response(422, "validation_error", "request is invalid", details)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """An HTTPException in the error shape, its code named after its status."""
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


def refusal_response(exc: StarletteHTTPException | ApiError) -> JSONResponse:
    """The answer to a refusal caught by a layer before the routes, as the app's handlers give it."""
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.message, exc.details)
    return http_error_response(exc)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return http_error_response(exc)


class _ThrottledWarning:
    """At most one log line per `interval` seconds for a condition that can hit every request at
    once (an outage fails thousands), saying how many occurrences it stands for."""

    def __init__(self, event: str, interval: float = 10.0) -> None:
        self.event = event
        self.interval = interval
        self._last = -math.inf
        self._occurrences = 0

    def __call__(self, **fields: Any) -> None:
        self._occurrences += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            log.warning(self.event, occurrences=self._occurrences, **fields)
            self._last = now
            self._occurrences = 0


_database_unavailable_log = _ThrottledWarning("database_unavailable")
_pool_exhausted_log = _ThrottledWarning("database_pool_exhausted")


def database_error_response(exc: BaseException) -> JSONResponse | None:
    """The 503 for a database out of reach or a pool without a free connection; None otherwise."""
    if is_pool_exhausted(exc):
        _pool_exhausted_log()
        return error_response(
            503,
            "database_busy",
            "every database connection is in use; try again shortly",
            headers={"Retry-After": str(POOL_RETRY_AFTER_SECONDS)},
        )
    if is_database_unavailable(exc):
        _database_unavailable_log(error=database_error_summary(exc))
        return error_response(
            503,
            "database_unavailable",
            "the database cannot be reached; try again shortly",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    return None


def _internal_error(scope: Scope, exc: BaseException) -> JSONResponse:
    """Log the exception once, with a request id the client gets too (the path, never the query)."""
    request_id = current_request_id() or uuid.uuid4().hex
    log.error(
        "unhandled_error",
        request_id=request_id,
        method=scope.get("method"),
        path=scope.get("path"),
        exc_info=exc,
    )
    body = error_body("internal_error", "the service failed to answer; quote the request id to report it")
    body["error"]["request_id"] = request_id
    return JSONResponse(body, status_code=500)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return database_error_response(exc) or _internal_error(request.scope, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for database_error in (DatabaseUnavailable, sa_exc.TimeoutError, sa_exc.DBAPIError):
        app.add_exception_handler(database_error, _unexpected_error)
    # Starlette's last resort (its ServerErrorMiddleware) answers with this, then re-raises to the
    # server; the edge middleware (app/edge.py) catches everything first, so this only covers a
    # failure in a middleware added outside it.
    app.add_exception_handler(Exception, _unexpected_error)


def unhandled_error_response(scope: Scope, exc: Exception) -> JSONResponse:
    """The answer to an exception the app let through (the edge middleware sends it): 503 for a
    database outage, otherwise 500 with the request id, logged once."""
    return database_error_response(exc) or _internal_error(scope, exc)


def payload_too_large_response(max_bytes: int) -> JSONResponse:
    return error_response(413, "payload_too_large", f"request body exceeds {max_bytes} bytes")


class BodyTooLarge(HTTPException):
    """Raised by the edge middleware's receive once a body outgrows the limit. An HTTPException, so
    FastAPI's body parsing re-raises it as is and the handler shapes it."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes")

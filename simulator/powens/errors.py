"""Errors in Powens's shape: `{"code", "description", "message", "request_id"}`.

`{"code": "<camelCase>", "description": "…", "message": null, "request_id": "…"}`:

The official SDK's `ServiceError` has `code`, `description` and a nullable `message` (an end-user
text from the connector, null here); `request_id` is the simulator's id for the call (one public
connector reads `requestId` instead; the simulator sends `request_id` only). Powens does not
document its HTTP statuses: the simulator answers 400 for a bad request, 401 for missing or bad
credentials or token, 403 for a token without the needed scope, 404 for an unknown payment.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

HTTP_CODES = {
    400: "invalidValue",
    401: "unauthorized",
    403: "forbidden",
    404: "notFound",
    405: "methodNotAllowed",
    429: "tooManyRequests",
    500: "internalServerError",
    503: "serviceUnavailable",
}


class PowensError(Exception):
    def __init__(
        self, status: int, code: str, description: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.headers = dict(headers or {})


def error_body(error: PowensError) -> dict[str, Any]:
    return {
        "code": error.code,
        "description": error.description,
        "message": None,
        "request_id": uuid.uuid4().hex,
    }


def error_response(error: PowensError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers)


def validation_error(errors: Sequence[Any]) -> PowensError:
    """Request validation problems as one 400: `missingParameter` when the first is a missing
    field, `invalidValue` otherwise; the description lists every problem."""
    problems = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in {"body", "query", "header"}]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{'.'.join(location) or 'body'}: {message}")
    first = errors[0] if errors else {}
    code = "missingParameter" if first.get("type") == "missing" else "invalidValue"
    return PowensError(400, code, "Bad request, " + ("; ".join(problems) or "invalid request"))


def from_framework(exc: Exception) -> PowensError:
    if isinstance(exc, RequestValidationError):
        return validation_error(exc.errors())
    assert isinstance(exc, StarletteHTTPException)
    return PowensError(
        exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(exc.detail), headers=exc.headers
    )

"""Errors in Fintecture's shape (contract §11): `{status, code, log_id, errors:[{code,status,title,detail}]}`.

Fintecture's API answers with them, and so does the `/_sim` control API (the shape it has always
had). Powens has its own (`simulator/powens/errors.py`). `status` values are strings ("400"), as
Fintecture's official PHP SDK compares them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

TOP_LEVEL_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    429: "too_many_requests",
    500: "internal_server_error",
    503: "service_unavailable",
}


@dataclass(frozen=True)
class ErrorItem:
    code: str
    detail: str

    @property
    def title(self) -> str:
        return self.code.replace("_", " ").capitalize()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        more: Sequence[ErrorItem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.items = [ErrorItem(code, detail), *more]
        self.headers = dict(headers or {})

    @classmethod
    def many(cls, status: int, items: Sequence[ErrorItem]) -> ApiError:
        first, *rest = items
        return cls(status, first.code, first.detail, more=rest)

    @property
    def sub_code(self) -> str:
        return self.items[0].code


def error_body(status: int, items: Sequence[ErrorItem]) -> dict[str, object]:
    return {
        "status": str(status),
        "code": TOP_LEVEL_CODES.get(status, "error"),
        "log_id": uuid.uuid4().hex,
        "errors": [
            {"code": item.code, "status": str(status), "title": item.title, "detail": item.detail}
            for item in items
        ],
    }


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(error.status, error.items), status_code=error.status, headers=error.headers
    )


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def unauthorized(code: str, detail: str) -> ApiError:
    return ApiError(401, code, detail)


def validation_error(errors: Sequence[Any]) -> ApiError:
    """Pydantic/FastAPI validation errors as one §11 400 error listing every problem."""
    items = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in {"body", "query", "header"}]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        code = "mandatory_field_missing" if error.get("type") == "missing" else "invalid_field"
        items.append(ErrorItem(code, f"{'.'.join(location) or 'body'}: {message}"))
    return ApiError.many(400, items or [ErrorItem("invalid_field", "invalid request")])

"""The OpenAPI document states every answer an operation gives, errors in their one shape.

Routes declare the statuses they answer (`responses=`), most with a description only; this module
completes the document FastAPI generates:
- every error status declared without a body gets the error shape (`ErrorResponse`), and FastAPI's
  own 422 model, which the service never sends, is replaced by it;
- the answers the service gives outside the routes are declared where they can happen: 400
  (malformed JSON) and 413 (body too large) on operations with a JSON body, 422 on operations with
  parameters or a body, 401 on operations that take the operator key.

The schemathesis run in the tests (`tests/e2e/test_fuzz_openapi.py`) holds the service to
this document: any status or body it does not declare fails it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

ERROR_REF = "#/components/schemas/ErrorResponse"
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": ERROR_REF}}}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
_FASTAPI_VALIDATION_MODELS = ("HTTPValidationError", "ValidationError")


class ErrorDetail(BaseModel):
    field: str | None = Field(default=None, description="Where: `body.customer.name`, `query.cursor`...")
    message: str
    type: str | None = Field(default=None, description="A machine-readable kind, e.g. `string_too_long`")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable, machine-readable: `validation_error`, `not_found`...")
    message: str = Field(description="For a person; may change")
    details: list[ErrorDetail] | None = Field(default=None, description="One entry per problem, when useful")
    request_id: str | None = Field(default=None, description="On unexpected errors: quote it to report them")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorInfo


# What each added status means when a route did not describe it itself.
_ADDED = {
    "400": "Malformed JSON (`malformed_json`)",
    "401": "Missing or wrong operator key",
    "413": "Body too large (`payload_too_large`)",
    "422": "Invalid request (`validation_error`, one detail per problem)",
}


def _is_error(status: str) -> bool:
    return status[:1] in {"4", "5"}


def _uses_fastapi_validation_model(content: dict[str, Any]) -> bool:
    schema = content.get("application/json", {}).get("schema", {})
    return any(schema.get("$ref", "").endswith(f"/{name}") for name in _FASTAPI_VALIDATION_MODELS)


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Complete a generated document in place (see the module docstring); returns it."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema

    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            body = operation.get("requestBody", {}).get("content", {})
            added: list[str] = []
            if "application/json" in body:
                added += ["400", "413"]
            if operation.get("parameters") or body:
                added.append("422")
            if any("OperatorKey" in requirement for requirement in operation.get("security", [])):
                added.append("401")
            for status in added:
                responses.setdefault(status, {"description": _ADDED[status]})
            for status, response in responses.items():
                if not _is_error(status):
                    continue
                content = response.get("content")
                if not content or _uses_fastapi_validation_model(content):
                    response["content"] = dict(_ERROR_CONTENT)
    for name in _FASTAPI_VALIDATION_MODELS:
        components.pop(name, None)
    return document


def install(app: FastAPI) -> None:
    """Serve the completed document at the app's `openapi_url`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                    servers=app.servers,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

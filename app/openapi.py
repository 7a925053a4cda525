"""The OpenAPI document states every answer an operation gives, errors in their one shape.

Routes declare what is theirs: a description, examples (on their schemas), and the errors their
handler answers, each with the codes it carries (`error(description, *codes)`). This module
completes the document FastAPI generates with what every operation shares, read from the route
itself (its dependencies and its body), so that it cannot drift from the code:

- 400 `malformed_json` where the route parses a JSON body, 413 `payload_too_large` where a body is
  read (the edge middleware, app/edge.py), 422 `validation_error` where there are parameters or a body;
- 401 `unauthorized` where the operator key is required, 429 `too_many_requests` (with
  Retry-After) where a rate limit applies;
- 503 `database_unavailable` / `database_busy` (with Retry-After) wherever the database is used
  (every operation but NO_DATABASE's), and 500 `internal_error` (with a request id) everywhere;
- every error answer gets the error shape (`ErrorResponse`) and an example per code, and FastAPI's
  own 422 model, which the service never sends, is replaced by it;
- security as the service checks it: an operator endpoint takes the operator key only, an order
  endpoint the order's token or the operator key, a webhook its provider's signature scheme;
- the examples of a request's or answer's schema are shown on the operation itself too.

The schemathesis run in the tests (`tests/e2e/test_fuzz_openapi.py`) holds the service to this
document: any status or body it does not declare fails it; `tests/integration/
test_openapi_completeness.py` fails on any operation, schema or property left undocumented.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute

from app.providers import registry

ERROR_REF = "#/components/schemas/ErrorResponse"
OPERATOR_SCHEME = "OperatorKey"
ORDER_SCHEME = "OrderAccessToken"
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
_FASTAPI_VALIDATION_MODELS = ("HTTPValidationError", "ValidationError")


class ErrorDetail(BaseModel):
    """One problem with the request."""

    field: str | None = Field(default=None, description="Where: `body.customer.name`, `query.cursor`...")
    message: str = Field(description="What is wrong with it, for a person")
    type: str | None = Field(default=None, description="A machine-readable kind, e.g. `string_too_long`")


class ErrorInfo(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable, machine-readable: `validation_error`, `not_found`...")
    message: str = Field(description="For a person; may change")
    details: list[ErrorDetail] | None = Field(default=None, description="One entry per problem, when useful")
    request_id: str | None = Field(default=None, description="On unexpected errors: quote it to report them")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "validation_error",
                        "message": "request is invalid",
                        "details": [
                            {
                                "field": "body.items.0.quantity",
                                "message": "Input should be greater than or equal to 1",
                                "type": "greater_than_equal",
                            }
                        ],
                    }
                }
            ]
        }
    )

    error: ErrorInfo = Field(description="The error")


# An example message for each error code the service answers with (the real one may say more).
MESSAGES: dict[str, str] = {
    "malformed_json": "request body is not valid JSON",
    "payload_too_large": "request body exceeds 1048576 bytes",
    "validation_error": "request is invalid",
    "unauthorized": "a valid operator API key is required (Authorization: Bearer <ADMIN_API_KEY>)",
    "too_many_requests": "too many requests from this client; retry in 12 s",
    "database_unavailable": "the database cannot be reached; try again shortly",
    "database_busy": "every database connection is in use; try again shortly",
    "internal_error": "the service failed to answer; quote the request id to report it",
    "not_found": "order not found",
    "invalid_idempotency_key": "Idempotency-Key must be 1 to 255 printable ASCII characters",
    "idempotency_key_in_progress": "a request with this Idempotency-Key is still being processed",
    "idempotency_key_reused": "this Idempotency-Key was already used with a different request",
    "invalid_items": "order items are invalid: body.items.0.sku: unknown or inactive product",
    "invalid_cursor": "cursor is not a cursor this list returned",
    "invalid_range": "created_from must be before created_to",
    "unavailable": "could not allocate an order reference; retry",
    "order_not_payable": "order is paid; no new payment session can be opened",
    "payment_session_in_progress": "a payment session is being opened for this order; retry shortly",
    "provider_not_enabled": "payment provider 'acme' is not enabled here; GET /providers lists them",
    "provider_not_configured": "the order's payment provider is not configured on this service",
    "provider_unavailable": "the payment provider could not open a session; try again shortly",
    "provider_error": "the provider could not answer",
    "invalid_webhook": "webhook refused: body is not valid JSON",
    "invalid_signature": "webhook rejected: Digest header does not match the body",
    "order_not_refundable": "order is pending; only paid or partially refunded orders can be refunded",
    "refund_exceeds_payment": "the refund exceeds what is left to refund (1800 EUR minor units)",
    "nothing_to_refund": "everything paid for this order is refunded or being refunded",
    "not_supported": "this payment provider cannot refund",
    "refund_refused": "the payment provider refused the refund",
    "refund_in_progress": "this refund is being created; retry shortly",
    "currency_mismatch": "the refund's currency is not the order's",
    "payout_refused": "the payment provider refused the payout",
    "payout_in_progress": "this payout is being created; retry shortly",
    "payout_not_at_provider": "this payout is failed and never reached the provider",
    "invalid_payout_link": "this payout link does not match a payout we started",
    "event_not_routed": "this event has not been sent yet; it will be shortly",
    "review_not_open": "order is paid, not needs_review; there is no review to resolve",
}

# Parameters that mean the same on every operation, described once where a route did not.
PARAMETERS: dict[tuple[str, str], str] = {
    ("path", "order_id"): "The order's id (a UUID), as POST /orders returned it",
    ("path", "payout_id"): "The payout's id (a UUID), as POST /payouts returned it",
    ("path", "provider"): "A provider's `name`, as GET /providers lists it",
    ("header", "Idempotency-Key"): (
        "1-255 printable ASCII characters; a UUID is ideal. The same key with the same body replays "
        "the first answer (`Idempotent-Replayed: true`)"
    ),
}

_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


def _example(code: str) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"code": code, "message": MESSAGES.get(code, code.replace("_", " "))}}
    if code == "validation_error":
        body["error"]["details"] = [
            {
                "field": "body.items.0.quantity",
                "message": "Input should be greater than or equal to 1",
                "type": "greater_than_equal",
            }
        ]
    if code == "internal_error":
        body["error"]["request_id"] = "9b1f0c3e5d7a4e2f8c6b1a0d3e5f7a9c"
    return {"summary": code, "value": body}


def error(description: str, *codes: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A documented error answer for a route's `responses`: when it happens, and the codes it carries
    (each shown as an example)."""
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": ERROR_REF},
                "examples": {code: _example(code) for code in codes},
            }
        },
    }
    if headers:
        response["headers"] = headers
    return response


# --- what a route's dependencies and body say about it --------------------------------------------

# Operations that never touch the database (readiness answers its own 503); every other one may
# meet an outage, whether through a session dependency or the engine itself (the webhook).
NO_DATABASE = {("get", "/healthz"), ("get", "/readyz"), ("get", "/providers")}


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _is_rate_limited(call: Callable[..., Any]) -> bool:
    return getattr(call, "__qualname__", "").startswith("rate_limited.")


def _route_facts(route: Any) -> dict[str, bool]:
    calls = list(_calls(route.dependant))
    dependant = route.dependant
    return {
        "json_body": route.body_field is not None,
        "parameters": bool(
            dependant.path_params or dependant.query_params or dependant.header_params or route.body_field
        ),
        "rate_limited": any(_is_rate_limited(call) for call in calls),
    }


# The answers every route may give outside its handler: (status, description, codes, headers).
def _shared_errors(
    facts: dict[str, bool], *, has_body: bool, operator: bool, database: bool
) -> list[tuple[str, str, list[str]]]:
    shared: list[tuple[str, str, list[str]]] = []
    if facts["json_body"]:
        shared.append(("400", "The body is not valid JSON (`malformed_json`)", ["malformed_json"]))
    if operator:
        shared.append(("401", "The operator key is missing or wrong (`unauthorized`)", ["unauthorized"]))
    if has_body:
        shared.append(
            (
                "413",
                "The body is over MAX_BODY_BYTES (`payload_too_large`); nothing read",
                ["payload_too_large"],
            )
        )
    if facts["parameters"]:
        shared.append(
            (
                "422",
                "A parameter or the body is invalid (`validation_error`, one detail per problem)",
                ["validation_error"],
            )
        )
    if facts["rate_limited"]:
        shared.append(
            (
                "429",
                "This client is over its rate limit (`too_many_requests`; Retry-After says when to "
                "retry). Never for the operator key; off when RATE_LIMIT_ENABLED is false",
                ["too_many_requests"],
            )
        )
    shared.append(
        (
            "500",
            "An unexpected failure (`internal_error`): the answer's `request_id` is in the service's log",
            ["internal_error"],
        )
    )
    if database:
        shared.append(
            (
                "503",
                "The database is out of reach (`database_unavailable`, Retry-After: 5) or every "
                "connection is in use (`database_busy`, Retry-After: 1); nothing was written",
                ["database_unavailable", "database_busy"],
            )
        )
    return shared


def _is_error(status: str) -> bool:
    return status[:1] in {"4", "5"}


def _uses_fastapi_validation_model(content: dict[str, Any]) -> bool:
    schema = content.get("application/json", {}).get("schema", {})
    return any(schema.get("$ref", "").endswith(f"/{name}") for name in _FASTAPI_VALIDATION_MODELS)


def _add_error(responses: dict[str, Any], status: str, description: str, codes: Sequence[str]) -> None:
    """Declare `status` with these codes, or add them to what the route declared for it."""
    response = responses.get(status)
    if response is None:
        responses[status] = error(description, *codes)
    else:
        content = response.get("content", {}).get("application/json")
        if content is None or _uses_fastapi_validation_model(response.get("content", {})):
            response["content"] = error(description, *codes)["content"]
            content = response["content"]["application/json"]
        elif description not in response["description"]:
            response["description"] = f"{response['description']}; or: {description}"
        examples = content.setdefault("examples", {})
        for code in codes:
            examples.setdefault(code, _example(code))
    if status in {"429", "503"}:
        responses[status].setdefault("headers", {}).update(copy.deepcopy(_RETRY_AFTER))


def _security(operation: dict[str, Any]) -> None:
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    if OPERATOR_SCHEME in schemes:
        # The operator key is checked before anything else: an order's token opens nothing here.
        operation["security"] = [{OPERATOR_SCHEME: []}]
    elif ORDER_SCHEME in schemes:
        operation["security"] = [{ORDER_SCHEME: []}, {OPERATOR_SCHEME: []}]


def _schema_examples(document: dict[str, Any], media: dict[str, Any]) -> None:
    """Show a schema's first example on the request or answer itself (as the viewers expect)."""
    if "example" in media or "examples" in media:
        return
    schema_of_media = media.get("schema", {})
    # An optional body is `anyOf: [{$ref}, {type: null}]`.
    refs = [schema_of_media, *schema_of_media.get("anyOf", [])]
    ref = next((item["$ref"] for item in refs if "$ref" in item), "")
    schema = document["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {}) if ref else {}
    if schema.get("examples"):
        media["example"] = schema["examples"][0]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    resolved: dict[str, Any] = (
        document["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {}) if ref else schema
    )
    return resolved


def _restore_nulls(document: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """Put back the nulls FastAPI drops from the whole document (it serialises it without None),
    examples included: a required, nullable property missing from an example is null."""
    schema = _resolve(document, schema)
    variants = [_resolve(document, item) for item in schema.get("anyOf", [])] or [schema]
    for variant in variants:
        if isinstance(value, dict) and variant.get("type") == "object":
            for name, definition in variant.get("properties", {}).items():
                nullable = any(item.get("type") == "null" for item in definition.get("anyOf", []))
                if name not in value and nullable and name in variant.get("required", []):
                    value[name] = None
                elif name in value:
                    _restore_nulls(document, definition, value[name])
        elif isinstance(value, list) and variant.get("type") == "array":
            for item in value:
                _restore_nulls(document, variant.get("items", {}), item)


def webhook_security_schemes() -> dict[str, Any]:
    return {
        docs.scheme: {
            "type": "apiKey",
            "in": "header",
            "name": docs.header,
            "description": f"{plugin.display_name} webhooks. {docs.description}",
        }
        for plugin, docs in registry.webhook_docs()
    }


def webhook_openapi(provider: str | None = None) -> dict[str, Any]:
    """The `openapi_extra` of a webhook route (`provider`'s, or any provider's): the body each
    provider sends, with an example, and its signature scheme as the operation's security."""
    documented = registry.webhook_docs(provider)
    content: dict[str, Any] = {}
    for plugin, docs in documented:
        media = content.setdefault(
            docs.media_type,
            {
                "schema": {
                    "type": "object",
                    "description": "The provider's notification, verified against the raw bytes",
                    "additionalProperties": True,
                },
                "examples": {},
            },
        )
        media["examples"][plugin.name] = {"summary": plugin.display_name, "value": docs.example}
    return {
        "requestBody": {
            "required": True,
            "description": "The notification exactly as the provider signed it: its raw bytes are verified",
            "content": content,
        },
        "security": [{docs.scheme: []} for _, docs in documented],
    }


def return_parameters() -> list[dict[str, Any]]:
    """The query parameters the providers add to a payer's or payee's return, for `openapi_extra`."""
    return [
        {
            "name": parameter.name,
            "in": "query",
            "required": False,
            "description": parameter.description,
            "schema": {"type": "string"},
            "example": parameter.example,
        }
        for parameter in registry.return_parameters()
        if parameter.name != "state"
    ]


def complete(document: dict[str, Any], routes: Sequence[BaseRoute] = ()) -> dict[str, Any]:
    """Complete a generated document in place (see the module docstring); returns it."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    components.setdefault("securitySchemes", {}).update(webhook_security_schemes())
    # Each route as included (with its router's dependencies), as FastAPI documents it.
    facts_of = {
        (context.path_format, method.lower()): _route_facts(context)
        for context in iter_route_contexts(routes)
        if isinstance(context.original_route, APIRoute)
        for method in context.methods or ()
    }

    for path, path_item in document.get("paths", {}).items():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            _security(operation)
            for parameter in operation.get("parameters", []):
                if not parameter.get("description"):
                    described = PARAMETERS.get((parameter["in"], parameter["name"]))
                    if described:
                        parameter["description"] = described
            responses: dict[str, Any] = operation.setdefault("responses", {})
            body = operation.get("requestBody", {}).get("content", {})
            facts = facts_of.get(
                (path, method),
                {"json_body": False, "parameters": bool(operation.get("parameters")), "rate_limited": False},
            )
            shared = _shared_errors(
                facts,
                has_body=bool(body),
                operator=operation.get("security") == [{OPERATOR_SCHEME: []}],
                database=(method, path) not in NO_DATABASE,
            )
            for status, description, codes in shared:
                _add_error(responses, status, description, codes)
            for status, response in responses.items():
                if _is_error(status):
                    content = response.get("content")
                    if not content or _uses_fastapi_validation_model(content):
                        response["content"] = error(response["description"])["content"]
                    json_content = response["content"].get("application/json")
                    if json_content is not None:
                        json_content.setdefault("schema", {"$ref": ERROR_REF})
                for media in response.get("content", {}).values():
                    _schema_examples(document, media)
            for media in body.values():
                _schema_examples(document, media)
    for name in _FASTAPI_VALIDATION_MODELS:
        schemas.pop(name, None)
    for name, schema in schemas.items():
        for example in schema.get("examples", []):
            _restore_nulls(document, {"$ref": f"#/components/schemas/{name}"}, example)
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
                ),
                app.routes,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""The OpenAPI document is complete: walks /openapi.json and names every operation, schema or
property that lacks what a client needs.

Each operation has a summary and a description; an example of its request body and of its main 2xx
answer; every error it can answer (the ones the middleware and dependencies produce included)
declared in the one error shape, with a description and an example per code; and its security,
unless it is public on purpose. Every schema and every property has a description. Every example
is valid against its schema.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema_rs import Draft202012Validator

ERROR_REF = "#/components/schemas/ErrorResponse"
METHODS = {"get", "put", "post", "delete", "patch"}

# Public on purpose: liveness, the catalog, the provider list, orders placed by shoppers, and the
# payer's and payee's return. Webhooks are not here: they declare their signature scheme.
PUBLIC = {
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/products"),
    ("get", "/providers"),
    ("post", "/orders"),
    ("get", "/callback"),
    ("get", "/payouts/callback"),
}
WEBHOOKS = {("post", "/webhook"), ("post", "/webhooks/{provider}")}
# Statuses every operation, or every operation of a kind, must declare.
# Its query is read by each provider's return parser, which answers 400 (declared), never 422.
UNVALIDATED = {("get", "/payouts/callback")}
DATABASE_FREE = {("get", "/healthz"), ("get", "/readyz"), ("get", "/providers")}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    # An optional body is `anyOf: [{$ref}, {type: null}]`.
    ref = next((item["$ref"] for item in [schema, *schema.get("anyOf", [])] if "$ref" in item), None)
    if ref is None:
        return schema
    resolved: dict[str, Any] = document
    for part in ref.removeprefix("#/").split("/"):
        resolved = resolved[part]
    return resolved


def _examples(document: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    found = []
    if "example" in media:
        found.append(media["example"])
    found += [example["value"] for example in media.get("examples", {}).values() if "value" in example]
    schema = _resolve(document, media.get("schema", {}))
    found += schema.get("examples", [])
    return found


def operation_problems(
    document: dict[str, Any], method: str, path: str, operation: dict[str, Any]
) -> list[str]:
    problems: list[str] = []
    where = f"{method.upper()} {path}"
    if not operation.get("summary"):
        problems.append(f"{where}: no summary")
    if len(operation.get("description", "")) < 20:
        problems.append(f"{where}: no description")
    body = operation.get("requestBody")
    if body is not None:
        for media_type, media in body.get("content", {}).items():
            if not _examples(document, media):
                problems.append(f"{where}: request body {media_type} has no example")
    responses: dict[str, Any] = operation.get("responses", {})
    successes = sorted(status for status in responses if status.startswith("2"))
    if successes:
        main = responses[successes[0]]
        for media_type, media in main.get("content", {}).items():
            if not _examples(document, media):
                problems.append(f"{where}: answer {successes[0]} ({media_type}) has no example")
    elif not any(status.startswith("3") for status in responses):
        problems.append(f"{where}: no 2xx or 3xx answer")
    for status, response in responses.items():
        if not response.get("description"):
            problems.append(f"{where}: answer {status} has no description")
        if status[0] not in "45":
            continue
        content = response.get("content", {})
        json_content = content.get("application/json")
        if json_content is None:
            if not content:
                problems.append(f"{where}: error {status} has no body")
            continue
        if json_content.get("schema", {}).get("$ref") != ERROR_REF and (method, path) != ("get", "/readyz"):
            problems.append(f"{where}: error {status} is not in the error shape")
        if not _examples(document, json_content):
            problems.append(f"{where}: error {status} has no example")
    required = {"500"}
    if (method, path) not in DATABASE_FREE:
        required.add("503")
    if body is not None:
        required.add("413")
    if (operation.get("parameters") and (method, path) not in UNVALIDATED) or (
        body is not None and (method, path) not in WEBHOOKS
    ):
        required.add("422")
    security = operation.get("security")
    if security == [{"OperatorKey": []}]:
        required.add("401")
    for status in sorted(required - set(responses)):
        problems.append(f"{where}: does not declare {status}")
    if (method, path) in WEBHOOKS:
        schemes = {name for requirement in security or [] for name in requirement}
        signature_schemes = {
            name
            for name, scheme in document["components"]["securitySchemes"].items()
            if scheme["type"] == "apiKey" and scheme["in"] == "header"
        }
        if not schemes or not schemes <= signature_schemes:
            problems.append(f"{where}: does not declare its signature scheme ({security})")
    elif (method, path) not in PUBLIC and not security:
        problems.append(f"{where}: declares no security and is not public")
    for parameter in operation.get("parameters", []):
        if not parameter.get("description"):
            problems.append(f"{where}: parameter {parameter['in']}.{parameter['name']} has no description")
    return problems


def schema_problems(document: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for name, schema in document["components"]["schemas"].items():
        if not schema.get("description"):
            problems.append(f"schema {name}: no description")
        for prop, definition in schema.get("properties", {}).items():
            if not definition.get("description"):
                problems.append(f"schema {name}.{prop}: no description")
    return problems


def example_problems(document: dict[str, Any]) -> list[str]:
    """Every example is valid against the schema it illustrates."""

    def check(where: str, schema: dict[str, Any], example: Any) -> list[str]:
        # The document's components beside the schema, so that its $refs resolve.
        validator = Draft202012Validator({**schema, "components": document["components"]})
        return [
            f"{where}: example invalid at {e.instance_path}: {e.message}"
            for e in validator.iter_errors(example)
        ]

    problems: list[str] = []
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            problems += check(f"schema {name}", {"$ref": f"#/components/schemas/{name}"}, example)
    for method, path, operation in operations(document):
        medias = [("request", operation.get("requestBody", {}).get("content", {}))]
        medias += [
            (status, response.get("content", {})) for status, response in operation["responses"].items()
        ]
        for label, content in medias:
            for media_type, media in content.items():
                for example in _examples(document, media):
                    where = f"{method.upper()} {path} {label} {media_type}"
                    problems += check(where, media.get("schema", {}), example)
    return problems


def test_every_operation_is_documented(document: dict[str, Any]) -> None:
    found = operations(document)
    assert len(found) >= 25
    problems = [
        problem for method, path, op in found for problem in operation_problems(document, method, path, op)
    ]
    assert not problems, "\n" + "\n".join(problems)


def test_every_schema_and_property_is_described(document: dict[str, Any]) -> None:
    problems = schema_problems(document)
    assert not problems, "\n" + "\n".join(problems)


def test_every_example_matches_its_schema(document: dict[str, Any]) -> None:
    problems = example_problems(document)
    assert not problems, "\n" + "\n".join(problems)


def test_security_is_what_the_service_checks(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["OperatorKey"] == {**schemes["OperatorKey"], "type": "http", "scheme": "bearer"}
    assert schemes["OrderAccessToken"] == {**schemes["OrderAccessToken"], "type": "http", "scheme": "bearer"}
    paths = document["paths"]
    # An order's token, or the operator key, opens the order and its payment session...
    for path, method in (("/orders/{order_id}", "get"), ("/orders/{order_id}/payment-session", "post")):
        assert paths[path][method]["security"] == [{"OrderAccessToken": []}, {"OperatorKey": []}]
    # ...but only the operator key syncs and refunds it.
    for path, method in (("/orders/{order_id}/sync", "post"), ("/orders/{order_id}/refunds", "post")):
        assert paths[path][method]["security"] == [{"OperatorKey": []}]
    # Each provider's webhook scheme names the header it is carried in.
    any_provider = {name for req in paths["/webhooks/{provider}"]["post"]["security"] for name in req}
    assert len(any_provider) >= 2
    for name in any_provider:
        assert schemes[name]["type"] == "apiKey" and schemes[name]["in"] == "header"
    assert len(paths["/webhook"]["post"]["security"]) == 1


def test_the_checks_catch_an_undocumented_operation(document: dict[str, Any]) -> None:
    """The walk above can fail: strip one operation of what it needs and each gap is named."""
    operation = document["paths"]["/orders/{order_id}/payment-session"]["post"]
    bare = {
        "summary": operation["summary"],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": {}}}}},
        "parameters": [{"name": "order_id", "in": "path"}],
    }
    problems = operation_problems(document, "post", "/orders/{order_id}/payment-session", bare)
    expected = [
        "no description",
        "request body application/json has no example",
        "answer 201 (application/json) has no example",
        "does not declare 413",
        "does not declare 422",
        "does not declare 500",
        "does not declare 503",
        "declares no security and is not public",
        "parameter path.order_id has no description",
    ]
    assert [p.removeprefix("POST /orders/{order_id}/payment-session: ") for p in problems] == expected
    broken = {
        **document,
        "components": {**document["components"], "schemas": {"X": {"properties": {"y": {}}}}},
    }
    assert schema_problems(broken) == ["schema X: no description", "schema X.y: no description"]

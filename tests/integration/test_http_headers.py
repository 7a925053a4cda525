"""Headers every answer carries, and each HTML page's Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.providers.fintecture.settings import FintectureSettings
from tests.integration.orders_helpers import order_body, put_product


def assert_safe_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def directives(policy: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in policy.split(";"))}


def inline_hashes(html: str, tag: str) -> list[str]:
    found = re.findall(rf"<{tag}(\s[^>]*)?>(.*?)</{tag}>", html, re.DOTALL)
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(content.encode()).digest()).decode() + "'"
        for attributes, content in found
        if "src=" not in attributes
    ]


async def test_the_order_and_its_access_token_are_never_stored_by_a_cache(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await put_product(client, admin_headers, "beans", 1250)
    headers = {"Idempotency-Key": "3f1c7a52-6d1e-4c8b-9f0e-2a5b7c9d1e3f"}
    created = await client.post("/orders", json=order_body([("beans", 1)]), headers=headers)
    assert created.status_code == 201
    assert created.json()["access_token"]
    assert_safe_headers(created)
    replayed = await client.post("/orders", json=order_body([("beans", 1)]), headers=headers)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert_safe_headers(replayed)
    token = {"Authorization": f"Bearer {created.json()['access_token']}"}
    assert_safe_headers(await client.get(f"/orders/{created.json()['id']}", headers=token))


@pytest.mark.parametrize("path", ["/healthz", "/products", "/orders/not-an-id", "/openapi.json", "/nowhere"])
async def test_every_answer_carries_the_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert_safe_headers(response)


async def test_an_error_page_runs_no_script(client: httpx.AsyncClient) -> None:
    response = await client.get("/callback", params={"state": "unknown", "session_id": "unknown"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert "script-src" not in policy  # falls back to default-src 'none'
    assert policy["frame-ancestors"] == ["'none'"]
    assert_safe_headers(response)


async def test_swagger_ui_runs_only_scripts_and_styles_from_this_service(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    policy = directives(response.headers["content-security-policy"])
    assert inline_hashes(response.text, "script") == []
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["default-src"] == ["'none'"]
    assert "http://" not in response.text and "https://" not in response.text
    assert (await client.get("/docs/oauth2-redirect")).status_code == 404


async def test_redoc_runs_only_its_script_from_this_service(client: httpx.AsyncClient) -> None:
    response = await client.get("/redoc")
    assert response.status_code == 200
    assert inline_hashes(response.text, "script") == []
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'unsafe-inline'"]  # ReDoc writes its styles at run time
    assert policy["worker-src"] == ["blob:"]
    assert policy["default-src"] == ["'none'"]
    assert "font-src" not in policy
    assert "http://" not in response.text and "https://" not in response.text


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("swagger-ui/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
        ("swagger-init.js", "text/javascript; charset=utf-8"),
        ("redoc/redoc.standalone.js", "text/javascript; charset=utf-8"),
    ],
)
async def test_the_viewers_files_are_served_versioned_cached_and_compressed(
    client: httpx.AsyncClient, name: str, content_type: str
) -> None:
    pages = (await client.get("/docs")).text + (await client.get("/redoc")).text
    (url,) = re.findall(rf'"(/docs/assets/{re.escape(name)}\?v=[0-9a-f]{{16}})"', pages)
    response = await client.get(url, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in response.headers
    assert len(response.content) > 100  # decoded by httpx
    again = await client.get(url, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert b"cdn.redoc.ly" not in response.content


@pytest.mark.parametrize(
    "name", ["README.md", "swagger-ui/LICENSE", "../main.py", "redoc/redoc.standalone.js.map", "nothing.js"]
)
async def test_only_the_pages_files_are_served(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/docs/assets/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.fixture
async def demo_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    demo_settings = settings.model_copy(update={"demo_storefront": True})
    app: FastAPI = create_app(demo_settings, [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://checkout.test") as client:
            yield client


@pytest.mark.parametrize("path", ["/", "/checkout/result"])
async def test_the_demo_shop_runs_only_its_own_script_and_style(
    demo_client: httpx.AsyncClient, path: str
) -> None:
    response = await demo_client.get(path)
    assert response.status_code == 200
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == inline_hashes(response.text, "script") != []
    assert policy["style-src"] == inline_hashes(response.text, "style") != []
    assert policy["connect-src"] == ["'self'"]
    assert policy["default-src"] == ["'none'"]
    assert_safe_headers(response)

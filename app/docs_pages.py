"""The API's documentation pages, /docs (Swagger UI) and /redoc, served with the viewers' files
installed with the service (`app/docs_assets/`, see its README for versions and licenses).

Nothing is loaded from another host, so the pages work without internet access and each page's
Content-Security-Policy names this service only ('self'): Swagger UI starts from a file
(`swagger-init.js`), not an inline script; ReDoc starts itself from the `<redoc spec-url>` element.
Swagger UI's online validator is off, so the document's URL is never sent to a third party.

The files are served from /docs/assets/ with their content types, an ETag, gzip when the client
accepts it, and a year of caching: each link carries the file's digest (`?v=...`), so a new
version is a new URL.
"""

from __future__ import annotations

import gzip
import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.errors import NotFound
from app.http_headers import page_policy

ASSETS_DIR = Path(__file__).resolve().parent / "docs_assets"
ASSETS_PREFIX = "/docs/assets"

# The files the pages load; nothing else under docs_assets is served.
_CONTENT_TYPES = {
    "swagger-ui/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui/swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui/favicon-32x32.png": "image/png",
    "swagger-init.js": "text/javascript; charset=utf-8",
    "redoc/redoc.standalone.js": "text/javascript; charset=utf-8",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
# The one address on another host the viewers load by themselves: ReDoc's side menu footer shows the
# Redocly logo from its CDN. Served with an empty src instead, the image is hidden by ReDoc's own
# onError handler and the page loads nothing from elsewhere (the footer's text link stays).
_PATCHES = {
    "redoc/redoc.standalone.js": [(b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'src:""')],
}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    gzipped: bytes | None  # None where compression gains nothing (the PNG)
    etag: str
    content_type: str


@cache
def _asset(name: str) -> _Asset:
    """Read (patch and compress) a file once per process, on its first request."""
    body = (ASSETS_DIR / name).read_bytes()
    for old, new in _PATCHES.get(name, []):
        if body.count(old) != 1:
            raise RuntimeError(f"{name}: expected {old!r} once; update the patch with the file")
        body = body.replace(old, new)
    content_type = _CONTENT_TYPES[name]
    gzipped = gzip.compress(body, compresslevel=6, mtime=0) if content_type.startswith("text/") else None
    return _Asset(body, gzipped, f'"{hashlib.sha256(body).hexdigest()[:32]}"', content_type)


@cache
def _digest(name: str) -> str:
    return hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest()[:16]


def asset_url(name: str) -> str:
    """The versioned URL of one of the viewers' files."""
    return f"{ASSETS_PREFIX}/{name}?v={_digest(name)}"


def swagger_page(openapi_url: str, title: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="icon" type="image/png" href="{asset_url("swagger-ui/favicon-32x32.png")}">'
        f'<link rel="stylesheet" href="{asset_url("swagger-ui/swagger-ui.css")}">'
        "</head><body>"
        f'<div id="swagger-ui" data-openapi-url="{html.escape(openapi_url)}"></div>'
        f'<script src="{asset_url("swagger-ui/swagger-ui-bundle.js")}"></script>'
        f'<script src="{asset_url("swagger-init.js")}"></script>'
        "</body></html>"
    )


def redoc_page(openapi_url: str, title: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="icon" type="image/png" href="{asset_url("swagger-ui/favicon-32x32.png")}">'
        "</head><body>"
        f'<redoc spec-url="{html.escape(openapi_url)}"></redoc>'
        f'<script src="{asset_url("redoc/redoc.standalone.js")}"></script>'
        "</body></html>"
    )


def router(openapi_url: str, title: str) -> APIRouter:
    swagger = swagger_page(openapi_url, f"{title} - Swagger UI")
    swagger_policy = page_policy(
        swagger,
        scripts=["'self'"],
        styles=["'self'"],
        # Swagger UI draws its icons as data: images.
        images=["'self'", "data:"],
    )
    redoc = redoc_page(openapi_url, f"{title} - ReDoc")
    redoc_policy = page_policy(
        redoc,
        scripts=["'self'"],
        # ReDoc styles itself with <style> elements it creates at run time (styled-components),
        # which no hash can name; the page runs no inline script.
        styles=["'unsafe-inline'"],
        images=["'self'", "data:"],
        # Its search index is built in a worker started from a blob: URL.
        workers=["blob:"],
    )
    pages = APIRouter(include_in_schema=False)

    @pages.get("/docs", response_class=HTMLResponse)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger, headers={"Content-Security-Policy": swagger_policy})

    @pages.get("/redoc", response_class=HTMLResponse)
    async def redoc_view() -> HTMLResponse:
        return HTMLResponse(redoc, headers={"Content-Security-Policy": redoc_policy})

    @pages.get(ASSETS_PREFIX + "/{name:path}")
    async def docs_asset(name: str, request: Request) -> Response:
        if name not in _CONTENT_TYPES:
            raise NotFound("file")
        asset = _asset(name)
        headers = {"Cache-Control": _IMMUTABLE, "ETag": asset.etag, "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(asset.gzipped, media_type=asset.content_type, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    return pages

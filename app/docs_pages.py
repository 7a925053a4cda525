"""The API's documentation pages, /docs (Swagger UI) and /redoc, each with its own
Content-Security-Policy.

The pages are FastAPI's own, rendered once here, so each policy can name exactly what its page
loads: the viewers' script and style from their CDN, the hash of Swagger UI's inline start-up
script, and the OpenAPI document from this service. Swagger UI's online validator is off, so the
document's URL is never sent to a third party.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, swagger_ui_default_parameters
from fastapi.responses import HTMLResponse

from app.http_headers import page_policy

CDN = "https://cdn.jsdelivr.net"
FAVICON_HOST = "https://fastapi.tiangolo.com"
REDOC_LOGO_HOST = "https://cdn.redoc.ly"
GOOGLE_FONTS_CSS = "https://fonts.googleapis.com"
GOOGLE_FONTS = "https://fonts.gstatic.com"


def router(openapi_url: str, title: str) -> APIRouter:
    swagger_page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - Swagger UI",
        swagger_ui_parameters={**swagger_ui_default_parameters, "validatorUrl": None},
    ).body
    swagger = bytes(swagger_page).decode()
    swagger_policy = page_policy(
        swagger,
        scripts=[CDN],
        styles=[CDN],
        # Swagger UI draws its icons as data: images.
        images=["'self'", "data:", FAVICON_HOST],
    )
    redoc = bytes(get_redoc_html(openapi_url=openapi_url, title=f"{title} - ReDoc").body).decode()
    redoc_policy = page_policy(
        redoc,
        scripts=[CDN],
        # ReDoc styles itself with <style> elements it creates at run time (styled-components),
        # which no hash can name; the page runs no inline script.
        styles=["'unsafe-inline'", GOOGLE_FONTS_CSS],
        fonts=[GOOGLE_FONTS],
        images=["'self'", "data:", FAVICON_HOST, REDOC_LOGO_HOST],
        # Its search index is built in a worker started from a blob: URL.
        workers=["blob:"],
    )
    pages = APIRouter(include_in_schema=False)

    @pages.get("/docs", response_class=HTMLResponse)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger, headers={"Content-Security-Policy": swagger_policy})

    @pages.get("/redoc", response_class=HTMLResponse)
    async def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc, headers={"Content-Security-Policy": redoc_policy})

    return pages

"""A minimal demo storefront (products -> order -> pay -> result), served only when enabled.

It uses the public API exactly as a merchant's own frontend would; it holds no logic of its own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from app.http_headers import page_policy

router = APIRouter(include_in_schema=False)
_PAGE = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
# Its own inline script and style, and calls to this API; the payer leaves for the provider's page
# by navigation, which no fetch directive governs.
_POLICY = page_policy(_PAGE, forms=["'self'"])


@router.get("/", response_class=HTMLResponse)
@router.get("/checkout/result", response_class=HTMLResponse)
async def storefront() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers={"Content-Security-Policy": _POLICY})

"""A minimal demo storefront (products -> order -> pay -> result), served only when enabled.

It uses the public API exactly as a merchant's own frontend would; it holds no logic of its own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)
_PAGE = Path(__file__).parent / "static" / "index.html"


@router.get("/", response_class=HTMLResponse)
@router.get("/checkout/result", response_class=HTMLResponse)
async def storefront() -> HTMLResponse:
    return HTMLResponse(_PAGE.read_text(encoding="utf-8"))

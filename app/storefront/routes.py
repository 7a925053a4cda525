"""A minimal demo storefront (products -> order -> pay -> result), served only when enabled.

It uses the public API exactly as a merchant's own frontend would; it holds no logic of its own.
The one number it shares with the API, the most units of a product per order
(MAX_LINE_QUANTITY), is rendered into the page from the same setting the API enforces.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from app.deps import SettingsDep
from app.http_headers import page_policy

router = APIRouter(include_in_schema=False)
_STATIC = Path(__file__).parent / "static"
_PAGE = (_STATIC / "index.html").read_text(encoding="utf-8")
# Its own inline script and style, its icon, and calls to this API; the payer leaves for the
# provider's page by navigation, which no fetch directive governs.
_POLICY = page_policy(_PAGE, images=["'self'"], forms=["'self'"])
_FAVICON_SVG = (_STATIC / "favicon.svg").read_bytes()
_ICON_CACHE = {"Cache-Control": "public, max-age=86400"}


def _favicon_ico(size: int = 32, rgb: tuple[int, int, int] = (0x1F, 0x6F, 0xEB)) -> bytes:
    """The icon for browsers that ask for /favicon.ico unprompted: one PNG inside an ICO, a blue
    square with a white bar, made here rather than kept as a binary file."""
    rows = b"".join(
        b"\x00"
        + b"".join(bytes((255, 255, 255) if 12 <= y < 20 and 6 <= x < 26 else rgb) for x in range(size))
        for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", size, size, 0, 0, 1, 24, len(png), 6 + 16)
    return header + entry + png


_FAVICON_ICO = _favicon_ico()


@router.get("/", response_class=HTMLResponse)
@router.get("/checkout/result", response_class=HTMLResponse)
async def storefront(settings: SettingsDep) -> HTMLResponse:
    # An attribute, not script: the page's script hashes in the policy stay the same.
    page = _PAGE.replace("{{max_line_quantity}}", str(settings.max_line_quantity))
    return HTMLResponse(page, headers={"Content-Security-Policy": _POLICY})


@router.get("/favicon.svg")
async def favicon_svg() -> Response:
    return Response(_FAVICON_SVG, media_type="image/svg+xml", headers=_ICON_CACHE)


@router.get("/favicon.ico")
async def favicon_ico() -> Response:
    return Response(_FAVICON_ICO, media_type="image/vnd.microsoft.icon", headers=_ICON_CACHE)

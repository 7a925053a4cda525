"""Headers every answer carries, and the Content-Security-Policy of each HTML page.

- `Cache-Control: no-store` unless a route chose otherwise: answers carry order access tokens
  (`POST /orders` and its replays), customers' names and addresses, and operator views; no cache
  between the client and the service may keep them.
- `X-Content-Type-Options: nosniff`: a JSON error quoting its input is never read as HTML.
- `Referrer-Policy: no-referrer`: the payer's return (`/callback?state=...&session_id=...`)
  redirects to the storefront, and nothing of that query may follow as a Referer.
- `Content-Security-Policy` on HTML: each page states the sources it needs (`page_policy`, with the
  hashes of its own inline scripts and styles); any other HTML answer gets `DEFAULT_PAGE_POLICY`,
  which runs no script at all.

The server banner is off where uvicorn is configured (`app/server.py`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# For HTML nobody declared a policy for (the payer's "link not recognised" page): inline styles,
# nothing else.
DEFAULT_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

_INLINE_BLOCK = re.compile(r"<(script|style)(\s[^>]*)?>(.*?)</\1\s*>", re.DOTALL | re.IGNORECASE)


def _source_hash(content: str) -> str:
    digest = hashlib.sha256(content.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def inline_hashes(html: str) -> tuple[list[str], list[str]]:
    """The CSP hash sources of the inline <script> and <style> blocks of a page we serve, as written:
    (scripts, styles). A <script src=...> is not inline."""
    scripts: list[str] = []
    styles: list[str] = []
    for match in _INLINE_BLOCK.finditer(html):
        tag, attributes, content = match.group(1).lower(), match.group(2) or "", match.group(3)
        if tag == "script":
            if "src=" not in attributes.lower():
                scripts.append(_source_hash(content))
        else:
            styles.append(_source_hash(content))
    return scripts, styles


def page_policy(
    html: str,
    *,
    scripts: Iterable[str] = (),
    styles: Iterable[str] = (),
    images: Iterable[str] = (),
    fonts: Iterable[str] = (),
    connect: Iterable[str] = ("'self'",),
    workers: Iterable[str] = (),
    forms: Iterable[str] = (),
) -> str:
    """A policy for one of our pages: nothing by default, the sources given, plus the hashes of
    the page's own inline scripts and styles (so an injected one never runs)."""
    scripts, styles = list(scripts), list(styles)
    inline_scripts, inline_styles = inline_hashes(html)
    # Where 'unsafe-inline' is meant, a hash beside it would switch it off.
    if "'unsafe-inline'" not in scripts:
        scripts += inline_scripts
    if "'unsafe-inline'" not in styles:
        styles += inline_styles
    directives = {
        "default-src": ["'none'"],
        "script-src": scripts,
        "style-src": styles,
        "img-src": list(images),
        "font-src": list(fonts),
        "connect-src": list(connect),
        "worker-src": list(workers),
        "base-uri": ["'none'"],
        "form-action": list(forms) or ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items() if sources)


class SecurityHeadersMiddleware:
    """Adds the headers above to every HTTP answer, leaving any a route set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("cache-control", "no-store")
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "no-referrer")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("content-security-policy", DEFAULT_PAGE_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)

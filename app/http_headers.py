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

from starlette.types import Message

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


# Set on every answer unless the route set its own; ASGI header names are lower-case bytes.
_DEFAULT_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_HTML_POLICY = (b"content-security-policy", DEFAULT_PAGE_POLICY.encode("ascii"))


def add_default_headers(start_message: Message) -> None:
    """Add the headers above to an answer's `http.response.start` message, leaving any the route
    set itself (called by the edge middleware, app/edge.py, for every HTTP answer). One pass over
    the answer's headers: this runs for every request."""
    headers = start_message["headers"] = list(start_message.get("headers", ()))
    present = set()
    html = False
    for name, value in headers:
        name = name.lower()
        present.add(name)
        if name == b"content-type" and value.startswith(b"text/html"):
            html = True
    headers.extend(header for header in _DEFAULT_HEADERS if header[0] not in present)
    if html and _HTML_POLICY[0] not in present:
        headers.append(_HTML_POLICY)

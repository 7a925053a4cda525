"""Authenticated requests to Powens's API (contracts/powens.md §1).

The service token is minted with the domain client's credentials (`POST /auth/token`, JSON
client_credentials, scope `payments:admin`) and shared by all callers through the shared
`TokenCache` (one caller mints at a time). Powens documents a 30-minute lifetime and sends no
`expires_in`, so a token is reused for 25 minutes; a token refused with 401 or 403 is forgotten and
minted again once. Requests are not signed (Bearer only). Retries and back-off are the shared
`Transport`'s: GETs are retried, a POST that may have reached Powens is never sent again blindly.

Uncertain readings: the token answer's key is `token` (documented), `access_token` is accepted too
(the SDK and public integrators hedge); HTTP status codes are undocumented [?], so both 401 and 403
count as a refused token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from app.logging_setup import get_logger
from app.providers.base import ProviderError
from app.providers.powens.payloads import api_error, encode_json, json_object
from app.providers.transport import TokenCache, Transport, TransportOptions, logged_error

log = get_logger(__name__)

TOKEN_PATH = "/auth/token"  # noqa: S105 - a path, not a secret
TOKEN_SCOPE = "payments:admin"  # noqa: S105 - a scope name, not a secret
TOKEN_LIFETIME_SECONDS = 30 * 60  # documented; the answer carries no expires_in
TOKEN_REUSE_SECONDS = 25 * 60  # how long one token is used before a new one is minted
REFUSED_TOKEN_STATUSES = frozenset({401, 403})


class PowensTransport:
    """Powens's API through one shared HTTP client. Safe for concurrent use."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        base_url: str,
        options: TransportOptions | None = None,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError("a Powens client_id and client_secret are required")
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("the Powens API URL must be http(s)://host[/path]")
        self.client_id = client_id
        self._client_secret = client_secret
        self.scheme = parts.scheme
        self._base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self._options = options or TransportOptions()
        self._transport = Transport(http, self._options, provider="Powens")
        self._tokens = TokenCache(
            self._mint_token,
            refresh_margin=TOKEN_LIFETIME_SECONDS - TOKEN_REUSE_SECONDS,
            clock=self._options.clock,
        )

    def __repr__(self) -> str:  # never show the secret
        return f"PowensTransport(client_id={self.client_id!r}, base={self._base})"

    @property
    def base_url(self) -> str:
        return self._base

    def url(self, path: str, query: Sequence[tuple[str, str]] | None = None) -> str:
        """The absolute URL of `path` under the API base, query percent-encoded."""
        target = self._base + path
        if query:
            target += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
        return target

    async def api(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        json_body: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """An authenticated call; one re-mint and one more try when the token is refused (401/403).

        `idempotent` defaults to GET/HEAD only: a POST that may have arrived is not sent again
        unless the caller says repeating it is harmless. Returns a successful response; raises
        ProviderError for anything else.
        """
        body = encode_json(json_body) if json_body is not None else None
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        safe = method in {"GET", "HEAD"} if idempotent is None else idempotent
        url = self.url(path, query)
        for attempt in range(2):
            token = await self._tokens.get()
            authorised = {**headers, "Authorization": f"Bearer {token}"}
            response = await self._transport.send(
                self._builder(method, url, body, authorised), idempotent=safe
            )
            if response.status_code in REFUSED_TOKEN_STATUSES and attempt == 0:
                # A refused token is refused before any work is done: even a POST may go again.
                log.info("powens.token_refused", path=path, http_status=response.status_code)
                self._tokens.forget(token)
                continue
            if response.is_success:
                return response
            raise self._error(response, f"{method} {path}")
        raise AssertionError("unreachable")

    def _builder(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Callable[[], httpx.Request]:
        """A fresh request per attempt (nothing is signed, so every attempt is the same request)."""
        return lambda: self._transport.build_request(method, url, content=body, headers=dict(headers))

    # --- Token (§1) -------------------------------------------------------------------------------

    async def _mint_token(self) -> tuple[str, float]:
        body = encode_json(
            {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "scope": TOKEN_SCOPE,
            }
        )
        url = self.url(TOKEN_PATH)
        # Minting has no side effect at Powens: safe to retry like a GET. No Authorization header.
        response = await self._transport.send(
            self._builder(
                "POST", url, body, {"Accept": "application/json", "Content-Type": "application/json"}
            ),
            idempotent=True,
        )
        if not response.is_success:
            raise self._error(response, "token request")
        answer = json_object(response, "token request", retryable=True)
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise ProviderError(
                "Powens token response has no token", http_status=200, code="invalid_response", retryable=True
            )
        log.info("powens.token_minted", reuse_seconds=TOKEN_REUSE_SECONDS)
        return token, float(TOKEN_LIFETIME_SECONDS)

    @staticmethod
    def _error(response: httpx.Response, context: str) -> ProviderError:
        return logged_error("powens", api_error(response, context), context)

"""Authenticated, signed requests to Fintecture's API (contracts/fintecture.md §1, §2).

The PIS token is minted with the application's id and secret (§1) and shared by all callers; with
a private key every request, the token call included, is signed cavage-style (§2); a refused token
(401) is minted again once. Retries and back-off are the shared `Transport`'s.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from app.logging_setup import get_logger
from app.providers.base import ProviderError
from app.providers.fintecture.payloads import api_error, encode_json, encode_query, json_object
from app.providers.fintecture.signing import http_date, sign_request
from app.providers.transport import TokenCache, Transport, TransportOptions, logged_error

log = get_logger(__name__)

TOKEN_PATH = "/oauth/accesstoken"  # noqa: S105 - a path, not a secret


class FintectureTransport:
    """Fintecture's API through one shared HTTP client. Safe for concurrent use."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        app_id: str,
        app_secret: str,
        base_url: str,
        private_key: rsa.RSAPrivateKey | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        if not app_id:
            raise ValueError("a Fintecture app_id is required")
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("the Fintecture base URL must be http(s)://host[/path]")
        self.app_id = app_id
        self.private_key = private_key  # None: requests go unsigned (sandbox only)
        self.scheme = parts.scheme
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path  # a prefix the API is mounted under, signed as part of the path
        self._basic = "Basic " + base64.b64encode(f"{app_id}:{app_secret}".encode()).decode("ascii")
        self._options = options or TransportOptions()
        self._transport = Transport(http, self._options, provider="Fintecture")
        self._tokens = TokenCache(
            self._mint_token, refresh_margin=self._options.token_refresh_margin, clock=self._options.clock
        )

    def __repr__(self) -> str:  # never show the secret or the key
        return f"FintectureTransport(app_id={self.app_id!r}, base={self._origin}{self._base_path})"

    async def api(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        json_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """An authenticated call; one re-mint and one retry when the token is refused (401).

        Returns a successful response; raises ProviderError for anything else.
        """
        body = None
        all_headers = dict(headers or {})
        if json_body is not None:
            body = encode_json(json_body)
            all_headers["Content-Type"] = "application/json"
        idempotent = method in {"GET", "HEAD"}
        for attempt in range(2):
            token = await self._tokens.get()
            response = await self._send(
                method,
                path,
                query=query,
                body=body,
                headers={**all_headers, "Authorization": f"Bearer {token}"},
                idempotent=idempotent,
            )
            if response.status_code == 401 and attempt == 0:
                # A 401 is refused before any work is done, so even a POST can be sent again.
                log.info("fintecture.token_refused", path=path)
                self._tokens.forget(token)
                continue
            if response.is_success:
                return response
            raise self._error(response, f"{method} {path.split('?')[0]}")
        raise AssertionError("unreachable")

    def signed_request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """The exact request to send: URL built here so the signed target is the raw wire target."""
        target = self._base_path + path + (f"?{encode_query(query)}" if query else "")
        request_headers = {"Accept": "application/json", **(headers or {})}
        request_id = str(uuid.uuid4())
        if self.private_key is not None:
            request_headers.update(
                sign_request(
                    self.private_key,
                    self.app_id,
                    method=method,
                    target=target,
                    body=body,
                    date=http_date(self._options.now()),
                    request_id=request_id,
                )
            )
        else:
            request_headers["X-Request-ID"] = request_id
        return self._transport.build_request(
            method, self._origin + target, content=body, headers=request_headers
        )

    # --- Token (§1) -------------------------------------------------------------------------------

    async def _mint_token(self) -> tuple[str, float]:
        form = urlencode([("grant_type", "client_credentials"), ("app_id", self.app_id), ("scope", "PIS")])
        # Minting has no side effect on the provider: safe to retry like a GET.
        response = await self._send(
            "POST",
            TOKEN_PATH,
            body=form.encode("ascii"),
            headers={
                "Authorization": self._basic,
                "Content-Type": "application/x-www-form-urlencoded",
            },
            idempotent=True,
        )
        if not response.is_success:
            raise self._error(response, "token request")
        body = json_object(response, "token request", retryable=True)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise ProviderError(
                "Fintecture token response has no access_token",
                http_status=200,
                code="invalid_response",
                retryable=True,
            )
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else 300.0
        log.info("fintecture.token_minted", expires_in=lifetime)
        return token, lifetime

    # --- Sending ----------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str],
        idempotent: bool,
    ) -> httpx.Response:
        # Signed afresh on every attempt: new Date and X-Request-ID.
        return await self._transport.send(
            lambda: self.signed_request(method, path, query=query, body=body, headers=headers),
            idempotent=idempotent,
        )

    @staticmethod
    def _error(response: httpx.Response, context: str) -> ProviderError:
        return logged_error("fintecture", api_error(response, context), context)

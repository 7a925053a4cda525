"""HTTP plumbing every provider adapter shares: bounded retries that never repeat a payment by
accident, and an access-token cache that mints once for all concurrent callers.

A provider's own transport (`app/providers/<name>/transport.py`) builds and authenticates its
requests; `Transport.send` decides whether and when to send one again, `TokenCache` when to mint.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from app import metrics
from app.logging_setup import get_logger
from app.providers.base import ProviderError

log = get_logger(__name__)

# Statuses worth trying again later; the subset an idempotent request retries by itself.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
AUTO_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# An error code for a provider answer whose body names none.
_STATUS_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def status_name(status: int) -> str:
    return _STATUS_NAMES.get(status, f"http_{status}")


def json_object(
    response: httpx.Response, what: str, *, retryable: bool = False, exact_numbers: bool = False
) -> dict[str, Any]:
    """The answer's JSON object (numbers with a fraction as Decimal when `exact_numbers`); a
    ProviderError naming `what` (the provider and the call) when the body is anything else."""
    try:
        body = json.loads(response.content, parse_float=Decimal) if exact_numbers else response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"{what} answered with a body that is not a JSON object",
            http_status=response.status_code,
            code="invalid_response",
            retryable=retryable,
        )
    return body


def logged_error(provider: str, error: ProviderError, context: str) -> ProviderError:
    """Log a provider's refusal (no body, no secret) and hand the error back to raise."""
    log.warning(
        "provider_error",
        provider=provider,
        operation=context,
        kind=error.code or "http_error",
        http_status=error.http_status,
        log_id=error.log_id,
    )
    return error


# The request certainly never reached the server: safe to send again whatever its method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may have reached the server: only an idempotent one is sent again.
_MAYBE_SENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TransportOptions:
    """How an adapter talks to its provider. The callables are there for tests to control time."""

    timeout_seconds: float = 10.0  # every request, connect to last byte
    max_retries: int = 3  # attempts after the first, for requests that are safe to repeat
    retry_base_delay: float = 0.2  # back-off before retry n: equal jitter under base * 2**n ...
    retry_max_delay: float = 3.0  # ... capped here
    retry_after_cap: float = 10.0  # a longer Retry-After is not waited for: the error is returned
    token_refresh_margin: float = 60.0  # mint a new token this long before the current one expires
    clock: Callable[[], float] = time.monotonic  # token lifetimes
    now: Callable[[], datetime] = field(default=_utcnow)  # wall clock: Date headers, Retry-After dates
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from `now`; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


class Transport:
    """Sends requests built by an adapter, retrying only when it is safe. Safe for concurrent use."""

    def __init__(self, http: httpx.AsyncClient, options: TransportOptions, *, provider: str) -> None:
        self.http = http
        self.options = options
        self._provider = provider  # the provider as error messages name it
        self._event = provider.lower()  # log events: "<provider>.retry"

    def build_request(
        self, method: str, url: str, *, content: bytes | None, headers: dict[str, str]
    ) -> httpx.Request:
        """One request with the configured timeout; `url` is sent as given (already encoded)."""
        return self.http.build_request(
            method, url, content=content, headers=headers, timeout=self.options.timeout_seconds
        )

    async def send(self, build: Callable[[], httpx.Request], *, idempotent: bool) -> httpx.Response:
        """Send `build()`; retry network errors and 429/5xx with back-off, but only when safe.

        `build` is called again for every attempt, so each one can be signed afresh. Returns the
        last response, success or not. A request that certainly never reached the server
        (connection refused, connect or pool timeout) is retried whatever its method; a
        non-idempotent one that may have arrived is never sent twice.
        """
        max_retries = self.options.max_retries
        attempt = 0
        while True:
            request = build()
            path = request.url.path
            try:
                response = await self._exchange(request)
            except _NOT_SENT as exc:
                if attempt < max_retries:
                    await self._back_off(attempt, path, type(exc).__name__)
                    attempt += 1
                    continue
                self._log_network_error(request, exc)
                raise ProviderError(
                    f"{self._provider} unreachable ({type(exc).__name__})",
                    code="network_error",
                    retryable=True,
                ) from exc
            except _MAYBE_SENT as exc:
                if idempotent and attempt < max_retries:
                    await self._back_off(attempt, path, type(exc).__name__)
                    attempt += 1
                    continue
                outcome = "" if idempotent else "; the request may have been processed"
                self._log_network_error(request, exc)
                raise ProviderError(
                    f"{self._provider} call failed ({type(exc).__name__}){outcome}",
                    code="network_error",
                    retryable=True,
                ) from exc

            if response.status_code in AUTO_RETRY_STATUSES and idempotent and attempt < max_retries:
                delay = self._delay_for(response, attempt)
                if delay is not None:
                    log.warning(
                        f"{self._event}.retry",
                        path=path,
                        http_status=response.status_code,
                        attempt=attempt + 1,
                        delay=round(delay, 3),
                    )
                    await self.options.sleep(delay)
                    attempt += 1
                    continue
            return response

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        """One HTTP exchange, counted in the provider-call metrics whatever its outcome."""
        started = time.perf_counter()
        outcome = "network_error"
        try:
            response = await self.http.send(request)
            outcome = metrics.provider_outcome(response.status_code)
            # The call's line (the client logs none): the path without its query, which may carry
            # a payer's or a session's identifiers.
            log.info(
                "provider_request",
                provider=self._event,
                method=request.method,
                path=request.url.path,
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            return response
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.provider_call(self._event, request.method, request.url.path, outcome, elapsed)

    def _log_network_error(self, request: httpx.Request, exc: Exception) -> None:
        log.warning(
            "provider_error",
            provider=self._event,
            operation=f"{request.method} {request.url.path}",
            kind="network_error",
            error=type(exc).__name__,
        )

    def backoff_delay(self, attempt: int) -> float:
        """Equal jitter: half the ceiling plus a random half, so retries spread out but never hit 0."""
        ceiling = min(self.options.retry_max_delay, self.options.retry_base_delay * (2.0**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _delay_for(self, response: httpx.Response, attempt: int) -> float | None:
        """Back-off for a retryable status; None when the server asks for a longer wait than we hold."""
        if response.status_code in {429, 503}:
            asked = retry_after_seconds(response.headers.get("retry-after"), self.options.now())
            if asked is not None:
                return asked if asked <= self.options.retry_after_cap else None
        return self.backoff_delay(attempt)

    async def _back_off(self, attempt: int, path: str, reason: str) -> None:
        delay = self.backoff_delay(attempt)
        log.warning(
            f"{self._event}.retry", path=path, reason=reason, attempt=attempt + 1, delay=round(delay, 3)
        )
        await self.options.sleep(delay)


class TokenCache:
    """One access token shared by all callers, minted by one of them at a time.

    `mint` returns (token, lifetime in seconds). Callers that waited while a mint failed get that
    failure too, instead of each queueing one more attempt behind a failing token endpoint.
    """

    def __init__(
        self,
        mint: Callable[[], Awaitable[tuple[str, float]]],
        *,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mint = mint
        self._margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._finished = 0  # mints that ended, in success or failure
        self._failure: ProviderError | None = None

    async def get(self) -> str:
        token = self._token
        if token is not None and self._clock() < self._expires_at:
            return token
        # Mints finished before this caller arrived; one finishing while it waits is its answer.
        finished_seen = self._finished
        async with self._lock:
            # Another caller may have minted while this one waited for the lock.
            if self._token is not None and self._clock() < self._expires_at:
                return self._token
            failure = self._failure
            if failure is not None and self._finished != finished_seen:
                # The mint this caller waited on just failed: share its answer.
                raise ProviderError(
                    failure.args[0] if failure.args else "token request failed",
                    http_status=failure.http_status,
                    code=failure.code,
                    log_id=failure.log_id,
                    retryable=failure.retryable,
                )
            self._failure = None
            try:
                token, lifetime = await self._mint()
            except ProviderError as exc:
                self._failure = exc
                raise
            finally:
                self._finished += 1
            self._token = token
            self._expires_at = self._clock() + lifetime - min(self._margin, lifetime / 2)
            return token

    def forget(self, token: str) -> None:
        """Drop `token` (the provider refused it); a newer one minted meanwhile stays."""
        if self._token == token:
            self._token = None

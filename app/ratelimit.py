"""Per-client rate limits on the anonymous endpoints: placing orders, reaching an order with its
token (reading it, opening its payment session) and the payer's return.

Built on `limits` (the engine slowapi wraps), through its asyncio API so a check never blocks the
event loop. Counters live in memory (`RATE_LIMIT_STORAGE_URL=memory://`, one process) or in Redis
(`redis://host:6379/0`), which every process of a deployment shares: with several processes or
machines only Redis enforces the limit as configured. The sliding-window-counter strategy costs
two counters per client and limit, and does not let a client burst twice the limit across a window
boundary as a fixed window would.

A client is its address as the server sees it (behind a proxy, uvicorn's `--proxy-headers` with
`FORWARDED_ALLOW_IPS` naming the proxy makes that the shopper's). The operator key is never
limited. When the counters cannot be reached the request is let through and a warning is logged
(at most every 10 s): a Redis outage must not stop checkout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine, Mapping
from enum import StrEnum
from typing import Any

from fastapi import Depends, HTTPException, Request
from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.auth import bearer_token, is_admin
from app.config import Settings
from app.logging_setup import get_logger

log = get_logger(__name__)

STORAGE_TIMEOUT_SECONDS = 0.5
_WARNING_INTERVAL_SECONDS = 10.0


class Limit(StrEnum):
    """The rate-limited groups of endpoints; each has its own counter per client."""

    ORDER_CREATE = "order_create"
    ORDER_ACCESS = "order_access"
    CALLBACK = "callback"


def storage_uri(url: str) -> str:
    """`memory://` or `redis://...` as the asyncio storage `limits` expects."""
    return url if url.startswith("async+") else f"async+{url}"


class RateLimiter:
    def __init__(self, storage_url: str, rules: Mapping[Limit, str]) -> None:
        options: dict[str, float | str | bool] = {"wrap_exceptions": True}
        if not storage_url.startswith(("memory:", "async+memory:")):
            options.update(
                key_prefix="checkout-rate",
                connect_timeout=STORAGE_TIMEOUT_SECONDS,
                stream_timeout=STORAGE_TIMEOUT_SECONDS,
            )
        self.storage = storage_from_string(storage_uri(storage_url), **options)
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)  # type: ignore[arg-type]
        self.rules: dict[Limit, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in rules.items()
        }
        self._last_warning = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        if not settings.rate_limit_enabled:
            return None
        return cls(
            settings.rate_limit_storage_url,
            {
                Limit.ORDER_CREATE: settings.rate_limit_order_create,
                Limit.ORDER_ACCESS: settings.rate_limit_order_access,
                Limit.CALLBACK: settings.rate_limit_callback,
            },
        )

    async def retry_after(self, name: Limit, client: str) -> int | None:
        """Count one request of `client` to `name`; the seconds to wait when it is over a limit."""
        try:
            for item in self.rules[name]:
                if not await self.strategy.hit(item, name.value, client):
                    stats = await self.strategy.get_window_stats(item, name.value, client)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        except (StorageError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            if now - self._last_warning >= _WARNING_INTERVAL_SECONDS:
                self._last_warning = now
                cause = exc.storage_error if isinstance(exc, StorageError) else exc
                log.warning("rate_limit_storage_unavailable", error=type(cause).__name__)
        return None


async def enforce_limit(request: Request, name: Limit) -> None:
    """Count the request against `name`: 429 `too_many_requests` with Retry-After (an
    HTTPException) once its client is over the limit. The operator key is never counted."""
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is None or is_admin(bearer_token(request), request.app.state.settings):
        return
    client = request.client.host if request.client else "unknown"
    wait = await limiter.retry_after(name, client)
    if wait is not None:
        raise HTTPException(
            429,
            f"too many requests from this client; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def rate_limited(name: Limit) -> Any:
    """A route dependency: 429 `too_many_requests` with Retry-After once the client is over `name`."""

    async def check(request: Request) -> None:
        await enforce_limit(request, name)

    dependency: Callable[[Request], Coroutine[Any, Any, None]] = check
    return Depends(dependency)

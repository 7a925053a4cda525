"""The transport every adapter shares: when a request is sent again, and how a token is minted once.

The HTTP side is httpx's own MockTransport answering per attempt; nothing here is provider-specific
(the Fintecture adapter is checked against the simulator in tests/integration).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from app.providers.base import ProviderError
from app.providers.transport import TokenCache, Transport, TransportOptions, retry_after_seconds

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
URL = "https://api.example.test/things"


class Wire:
    """Answers each attempt with the next scripted outcome (a status code or an exception class)."""

    def __init__(self, *outcomes: int | type[Exception], headers: dict[str, str] | None = None) -> None:
        self.outcomes = list(outcomes)
        self.headers = headers or {}
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, int):
            return httpx.Response(outcome, headers=self.headers)
        raise outcome("scripted", request=request)


async def send(
    wire: Wire, method: str, *, idempotent: bool, **options: object
) -> tuple[httpx.Response | ProviderError, list[float], list[httpx.Request]]:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    built: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(wire)) as http:
        transport = Transport(
            http,
            TransportOptions(now=lambda: NOW, sleep=sleep, **options),  # type: ignore[arg-type]
            provider="Example",
        )

        def build() -> httpx.Request:
            request = transport.build_request(
                method, URL, content=b"{}", headers={"X-Attempt": str(len(built))}
            )
            built.append(request)
            return request

        try:
            result: httpx.Response | ProviderError = await transport.send(build, idempotent=idempotent)
        except ProviderError as exc:
            result = exc
    return result, delays, built


# --- What is sent again --------------------------------------------------------------------------


async def test_idempotent_request_retries_5xx_with_growing_back_off_and_fresh_requests() -> None:
    wire = Wire(503, 500, 200)
    result, delays, built = await send(wire, "GET", idempotent=True)
    assert isinstance(result, httpx.Response) and result.status_code == 200
    assert len(wire.seen) == 3
    assert [r.headers["x-attempt"] for r in wire.seen] == ["0", "1", "2"]  # built anew each time
    assert len(built) == 3
    assert 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.4


async def test_retries_are_bounded_and_the_last_answer_is_returned() -> None:
    wire = Wire(502)
    result, delays, _ = await send(wire, "GET", idempotent=True, max_retries=2)
    assert isinstance(result, httpx.Response) and result.status_code == 502
    assert len(wire.seen) == 3 and len(delays) == 2


async def test_non_idempotent_request_is_not_retried_on_5xx() -> None:
    wire = Wire(503, 200)
    result, delays, _ = await send(wire, "POST", idempotent=False)
    assert isinstance(result, httpx.Response) and result.status_code == 503
    assert len(wire.seen) == 1 and delays == []


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.WriteError, httpx.RemoteProtocolError])
async def test_a_post_that_may_have_arrived_is_never_sent_twice(error: type[Exception]) -> None:
    wire = Wire(error, 200)
    result, delays, _ = await send(wire, "POST", idempotent=False)
    assert isinstance(result, ProviderError)
    assert (result.code, result.retryable) == ("network_error", True)
    assert str(result).startswith(
        f"Example call failed ({error.__name__}); the request may have been processed"
    )
    assert len(wire.seen) == 1 and delays == []


async def test_a_get_that_may_have_arrived_is_sent_again() -> None:
    wire = Wire(httpx.ReadTimeout, 200)
    result, _, _ = await send(wire, "GET", idempotent=True)
    assert isinstance(result, httpx.Response) and result.status_code == 200
    assert len(wire.seen) == 2


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_a_request_that_never_left_is_retried_whatever_its_method(error: type[Exception]) -> None:
    wire = Wire(error, error, 201)
    result, delays, _ = await send(wire, "POST", idempotent=False)
    assert isinstance(result, httpx.Response) and result.status_code == 201
    assert len(delays) == 2


async def test_an_unreachable_provider_is_a_retryable_network_error() -> None:
    wire = Wire(httpx.ConnectError)
    result, delays, _ = await send(wire, "POST", idempotent=False, max_retries=1)
    assert isinstance(result, ProviderError)
    assert (str(result), result.code, result.retryable) == (
        "Example unreachable (ConnectError) code=network_error",
        "network_error",
        True,
    )
    assert len(wire.seen) == 2 and len(delays) == 1


# --- Retry-After --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_are_honoured(status: int) -> None:
    wire = Wire(status, 200, headers={"Retry-After": "2"})
    result, delays, _ = await send(wire, "GET", idempotent=True)
    assert isinstance(result, httpx.Response) and result.status_code == 200
    assert delays == [2.0]


async def test_retry_after_as_a_date() -> None:
    later = format_datetime(NOW + timedelta(seconds=4), usegmt=True)
    wire = Wire(429, 200, headers={"Retry-After": later})
    _, delays, _ = await send(wire, "GET", idempotent=True)
    assert delays == [4.0]


async def test_a_longer_retry_after_than_the_cap_is_not_waited_for() -> None:
    wire = Wire(429, 200, headers={"Retry-After": "11"})
    result, delays, _ = await send(wire, "GET", idempotent=True, retry_after_cap=10.0)
    assert isinstance(result, httpx.Response) and result.status_code == 429
    assert delays == [] and len(wire.seen) == 1


async def test_retry_after_is_ignored_where_it_means_nothing() -> None:
    wire = Wire(500, 200, headers={"Retry-After": "60"})
    _, delays, _ = await send(wire, "GET", idempotent=True)
    assert len(delays) == 1 and delays[0] <= 0.2


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 7 ", 7.0), ("", None), (None, None), ("soon", None), ("-1", None),
     (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0)],
)  # fmt: skip
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, NOW) == expected


async def test_back_off_is_equal_jitter_under_a_cap() -> None:
    async with httpx.AsyncClient() as http:
        transport = Transport(
            http, TransportOptions(retry_base_delay=0.2, retry_max_delay=3.0), provider="Example"
        )
    for attempt, ceiling in enumerate([0.2, 0.4, 0.8, 1.6, 3.0, 3.0]):
        delays = [transport.backoff_delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > 0  # spread, never all the same


# --- TokenCache ---------------------------------------------------------------------------------


class Mint:
    def __init__(self, lifetime: float = 300.0, fail: ProviderError | None = None) -> None:
        self.calls = 0
        self.lifetime = lifetime
        self.fail = fail
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> tuple[str, float]:
        self.calls += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return f"token-{self.calls}", self.lifetime


def clock_at(values: list[float]) -> Callable[[], float]:
    return lambda: values[0]


async def test_concurrent_callers_share_one_mint() -> None:
    mint = Mint()
    mint.gate.clear()
    cache = TokenCache(mint)
    callers = [asyncio.create_task(cache.get()) for _ in range(20)]
    await asyncio.sleep(0)
    mint.gate.set()
    assert set(await asyncio.gather(*callers)) == {"token-1"}
    assert mint.calls == 1
    assert await cache.get() == "token-1"
    assert mint.calls == 1


async def test_waiters_share_a_failed_mint_instead_of_queueing() -> None:
    failure = ProviderError(
        "token refused", http_status=503, code="service_unavailable", log_id="L1", retryable=True
    )
    mint = Mint(fail=failure)
    mint.gate.clear()
    cache = TokenCache(mint)
    callers = [asyncio.create_task(cache.get()) for _ in range(10)]
    await asyncio.sleep(0)
    mint.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert mint.calls == 1
    assert all(isinstance(r, ProviderError) for r in results)
    for error in results:
        assert isinstance(error, ProviderError)
        assert (error.args[0], error.http_status, error.code, error.log_id, error.retryable) == (
            "token refused", 503, "service_unavailable", "L1", True
        )  # fmt: skip
    # A caller arriving afterwards tries again.
    mint.fail = None
    assert await cache.get() == "token-2"
    assert mint.calls == 2


async def test_a_token_is_renewed_ahead_of_its_expiry() -> None:
    now = [0.0]
    mint = Mint(lifetime=300.0)
    cache = TokenCache(mint, refresh_margin=60.0, clock=clock_at(now))
    assert await cache.get() == "token-1"
    now[0] = 239.9
    assert await cache.get() == "token-1"
    now[0] = 240.0  # 300 s lifetime minus the 60 s margin
    assert await cache.get() == "token-2"


async def test_a_short_lived_token_is_used_for_half_its_life() -> None:
    now = [0.0]
    mint = Mint(lifetime=30.0)
    cache = TokenCache(mint, refresh_margin=60.0, clock=clock_at(now))
    await cache.get()
    now[0] = 14.9
    assert await cache.get() == "token-1"
    now[0] = 15.0
    assert await cache.get() == "token-2"


async def test_forget_drops_only_the_refused_token() -> None:
    mint = Mint()
    cache = TokenCache(mint)
    first = await cache.get()
    cache.forget(first)
    second = await cache.get()
    assert (first, second) == ("token-1", "token-2")
    cache.forget(first)  # a late refusal of the old token keeps the new one
    assert await cache.get() == "token-2"
    assert mint.calls == 2

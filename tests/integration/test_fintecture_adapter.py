"""The Fintecture adapter against the provider simulator over HTTP (in-process ASGI transport).

What is checked: the token is minted once and shared, re-minted once on a 401; create_session and
get_payment round-trip; a strict (production-style) application accepts the adapter's signatures,
which are also re-verified here from the simulator's request log; GETs retry 429/503 and POSTs are
never sent twice once they may have reached the server; errors carry the provider's fields.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.providers.base import (
    Payer,
    PaymentStatus,
    ProviderError,
    SessionRequest,
    WebhookRejected,
    WebhookRequest,
)
from app.providers.fintecture.client import FintectureProvider
from app.providers.fintecture.signing import generate_key_pair_pem, load_private_key
from app.providers.fintecture.statuses import map_status
from app.providers.fintecture.transport import FintectureTransport
from app.providers.transport import TransportOptions
from simulator.app import create_app as create_simulator
from simulator.clock import FrozenClock
from simulator.config import AppConfig, SimulatorConfig
from tests.support.servers import reserve_socket, serve

LENIENT_APP = "shop-sandbox"
STRICT_APP = "shop-production"
SECRET = "app-secret-0123456789"
REDIRECT = "https://shop.example/callback"
API = "http://fintecture.sim"
TOKEN_TTL = 3600


@dataclass(frozen=True)
class Keys:
    private: rsa.RSAPrivateKey
    public: rsa.RSAPublicKey
    public_pem: str


@pytest.fixture(scope="module")
def keys() -> Keys:
    private_pem, public_pem = generate_key_pair_pem()
    public = serialization.load_pem_public_key(public_pem)
    assert isinstance(public, rsa.RSAPublicKey)
    return Keys(load_private_key(private_pem), public, public_pem.decode())


class MerchantEndpoint(httpx.AsyncBaseTransport):
    """Where the simulator posts webhooks: keeps each delivery exactly as received, answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.deliveries.append(request)
        return httpx.Response(200)


class Wire(httpx.AsyncBaseTransport):
    """The network between adapter and simulator, able to fail the way real networks do.

    `refuse` drops the next N requests before they leave (the server never sees them); `lose_reply`
    delivers the next N requests matching a path, then loses the reply (a read timeout).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.refuse: dict[str, int] = {}
        self.lose_reply: dict[str, int] = {}

    @staticmethod
    def _take(counters: dict[str, int], path: str) -> bool:
        for prefix, left in counters.items():
            if left and path.startswith(prefix):
                counters[prefix] = left - 1
                return True
        return False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._take(self.refuse, request.url.path):
            raise httpx.ConnectError("connection refused", request=request)
        response = await self.inner.handle_async_request(request)
        if self._take(self.lose_reply, request.url.path):
            await response.aread()
            raise httpx.ReadTimeout("no reply", request=request)
        return response


@dataclass
class Sim:
    http: httpx.AsyncClient
    wire: Wire
    clock: FrozenClock
    keys: Keys
    merchant: MerchantEndpoint
    delays: list[float] = field(default_factory=list)

    def adapter(
        self, app_id: str = LENIENT_APP, *, signed: bool = False, app_secret: str = SECRET, **options: Any
    ) -> FintectureProvider:
        async def sleep(seconds: float) -> None:
            self.delays.append(seconds)

        transport = FintectureTransport(
            self.http,
            app_id=app_id,
            app_secret=app_secret,
            base_url=API,
            private_key=self.keys.private if signed else None,
            options=TransportOptions(**{"max_retries": 3, "now": self.clock.now, "sleep": sleep, **options}),
        )
        return FintectureProvider(transport)

    async def requests(self, path_prefix: str = "/") -> list[dict[str, Any]]:
        response = await self.http.get(f"{API}/_sim/requests", params={"path_prefix": path_prefix})
        assert response.status_code == 200
        return response.json()["requests"]  # type: ignore[no-any-return]

    async def session(self, session_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{API}/_sim/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def sessions(self) -> list[dict[str, Any]]:
        return (await self.http.get(f"{API}/_sim/sessions")).json()["sessions"]  # type: ignore[no-any-return]

    async def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(f"{API}/_sim{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def sim(keys: Keys) -> AsyncIterator[Sim]:
    clock = FrozenClock(datetime(2026, 11, 21, 9, 0, tzinfo=UTC))
    merchant = MerchantEndpoint()
    apps = [
        AppConfig(
            app_id=app_id,
            app_secret=SECRET,
            public_key_pem=keys.public_pem,
            redirect_uris=[REDIRECT],
            webhook_url="http://merchant.test/webhook",
            mode=mode,
        )
        for app_id, mode in ((LENIENT_APP, "lenient"), (STRICT_APP, "strict"))
    ]
    config = SimulatorConfig(
        applications=apps,
        clock=clock,
        token_ttl_seconds=TOKEN_TTL,
        request_date_tolerance_seconds=300,
        webhook_transport=merchant,
    )
    app = create_simulator(config)
    async with app.router.lifespan_context(app):
        wire = Wire(httpx.ASGITransport(app=app))
        async with httpx.AsyncClient(transport=wire) as http:
            yield Sim(http=http, wire=wire, clock=clock, keys=keys, merchant=merchant)


def session_request(**overrides: Any) -> SessionRequest:
    fields: dict[str, Any] = {
        "amount": Decimal("273.50"),
        "currency": "EUR",
        "communication": "ORDER-2026-0042",
        "state": "opaque/state+token=é&x",
        "redirect_uri": REDIRECT + "?order=42&lang=fr",
        "origin_uri": "https://shop.example/cart",
        "payer": Payer(
            name="Camille Martin",
            email="camille@example.com",
            address={
                "street": "rue Marie Stuart",
                "number": "2",
                "zip": "75002",
                "city": "Paris",
                "country": "FR",
            },
        ),
        "expiry_seconds": 1800,
        "language": "fr",
        "country": "FR",
        "bank_id": "ftecfr",
    }
    fields.update(overrides)
    return SessionRequest(**fields)


def verify_from_log(public_key: rsa.RSAPublicKey, entry: dict[str, Any]) -> list[str]:
    """§2 re-checked from what the simulator received (its log keeps path, raw query, headers, body)."""
    headers = {name.lower(): value for name, value in entry["headers"].items()}
    params: dict[str, str] = dict(re.findall(r'(\w+)="([^"]*)"', headers["signature"]))
    names = params["headers"].split(" ")
    target = entry["path"] + (f"?{entry['query']}" if entry["query"] else "")
    values = {"(request-target)": f"{entry['method'].lower()} {target}", **headers}
    signing_string = "\n".join(f"{name}: {values[name]}" for name in names)
    public_key.verify(
        base64.b64decode(params["signature"]), signing_string.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    body = entry["body"].encode()
    if body:
        assert headers["digest"] == "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    return names


# --- Round trip ----------------------------------------------------------------------------------


async def test_create_session_then_read_it_back(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    assert re.fullmatch(r"[0-9a-f]{32}", created.provider_session_id)
    assert created.connect_url.startswith("http://127.0.0.1:8100/connect/v2/")

    stored = await sim.session(created.provider_session_id)
    # The simulator decoded exactly what was meant: odd characters survive the query encoding.
    assert stored["state"] == "opaque/state+token=é&x"
    assert stored["redirect_uri"] == REDIRECT + "?order=42&lang=fr"
    assert stored["origin_uri"] == "https://shop.example/cart"
    assert (stored["amount"], stored["currency"], stored["communication"]) == (
        "273.50",
        "EUR",
        "ORDER-2026-0042",
    )
    assert (stored["language"], stored["country"], stored["psu_type"]) == ("fr", "FR", "retail")
    assert stored["preselected_provider"] == "ftecfr"

    snapshot = await adapter.get_payment(created.provider_session_id)
    assert snapshot.provider == "fintecture"
    assert snapshot.provider_session_id == created.provider_session_id
    assert (snapshot.status, snapshot.raw_status) == (PaymentStatus.OPEN, "provider_required")
    assert snapshot.amount == Decimal("273.50")
    assert snapshot.currency == "EUR"
    assert snapshot.communication == "ORDER-2026-0042"
    assert snapshot.review_reason is None

    await sim.control(f"/sessions/{created.provider_session_id}/complete", {"outcome": "confirm"})
    paid = await adapter.get_payment(created.provider_session_id)
    assert (paid.status, paid.raw_status, paid.transfer_state) == (
        PaymentStatus.SUCCEEDED,
        "payment_created",
        "completed",
    )
    assert paid.bank_id == "ftecfr"
    assert paid.customer_id
    assert paid.amount == Decimal("273.50")


@pytest.mark.parametrize(
    ("status", "transfer_state"),
    [
        ("payment_pending", "pending"),
        ("payment_created", "received"),
        ("payment_created", "overpaid"),
        ("payment_created", "processing"),
        ("payment_unsuccessful", "rejected"),
        ("payment_partial", "insufficient"),
        ("payment_cancelled", None),
        ("payment_expired", None),
        ("order_created", None),
    ],
)
async def test_driven_statuses_are_read_and_mapped(sim: Sim, status: str, transfer_state: str | None) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    await sim.control(
        f"/sessions/{created.provider_session_id}/status",
        {"status": status, "transfer_state": transfer_state},
    )
    snapshot = await adapter.get_payment(created.provider_session_id)
    assert (snapshot.raw_status, snapshot.transfer_state) == (status, transfer_state)
    assert (snapshot.status, snapshot.review_reason) == map_status(status, transfer_state)


# --- Token ---------------------------------------------------------------------------------------


async def test_concurrent_calls_share_one_token(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    snapshots = await asyncio.gather(*(adapter.get_payment(created.provider_session_id) for _ in range(20)))
    assert {s.status for s in snapshots} == {PaymentStatus.OPEN}
    assert len(await sim.requests("/oauth/accesstoken")) == 1


async def test_concurrent_first_calls_mint_only_once(sim: Sim) -> None:
    created = await sim.adapter().create_session(session_request())
    fresh = sim.adapter()  # nothing cached yet: 20 callers arrive together
    await asyncio.gather(*(fresh.get_payment(created.provider_session_id) for _ in range(20)))
    assert len(await sim.requests("/oauth/accesstoken")) == 2  # one per adapter


async def test_an_expired_token_is_reminted_once(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request(expiry_seconds=2 * TOKEN_TTL))
    # The provider's clock runs ahead of ours: its token expires while our cache still trusts it.
    await sim.control("/clock/advance", {"seconds": TOKEN_TTL + 1})
    snapshot = await adapter.get_payment(created.provider_session_id)
    assert snapshot.status is PaymentStatus.OPEN
    assert len(await sim.requests("/oauth/accesstoken")) == 2
    reads = await sim.requests("/pis/v2/payments")
    assert [(r["status_code"], r["error_code"]) for r in reads] == [(401, "invalid_token"), (200, None)]


async def test_wrong_credentials_are_not_retried(sim: Sim) -> None:
    adapter = sim.adapter(app_secret="wrong")
    with pytest.raises(ProviderError) as info:
        await adapter.get_payment("0" * 32)
    error = info.value
    assert (error.http_status, error.code, error.retryable) == (401, "unauthorized", False)
    assert error.log_id
    assert "invalid_app_id" in str(error)
    assert len(await sim.requests("/oauth/accesstoken")) == 1


# --- Signing (strict application = production rules) ---------------------------------------------


async def test_strict_application_accepts_the_signed_adapter(sim: Sim) -> None:
    adapter = sim.adapter(STRICT_APP, signed=True)
    created = await adapter.create_session(session_request())
    await sim.control(f"/sessions/{created.provider_session_id}/complete", {"outcome": "confirm"})
    snapshot = await adapter.get_payment(created.provider_session_id)
    assert snapshot.status is PaymentStatus.SUCCEEDED

    log = await sim.requests("/oauth/")
    log += await sim.requests("/pis/")
    assert [(r["method"], r["path"].split("/")[-1], r["status_code"]) for r in log] == [
        ("POST", "accesstoken", 200),
        ("POST", "connect", 200),
        ("GET", created.provider_session_id, 200),
    ]
    assert all(r["signed"] and r["verified"] for r in log)
    # And independently of the simulator's verifier, from the bytes it logged.
    token, connect, read = log
    assert verify_from_log(sim.keys.public, token) == ["(request-target)", "date", "digest", "x-request-id"]
    assert verify_from_log(sim.keys.public, connect) == ["(request-target)", "date", "digest", "x-request-id"]
    assert verify_from_log(sim.keys.public, read) == ["(request-target)", "date", "x-request-id"]
    assert "%2F" in connect["query"] and "state=opaque%2Fstate%2Btoken%3D%C3%A9%26x" in connect["query"]


async def test_strict_application_refuses_an_unsigned_adapter(sim: Sim) -> None:
    adapter = sim.adapter(STRICT_APP, signed=False)
    with pytest.raises(ProviderError) as info:
        await adapter.create_session(session_request())
    assert (info.value.http_status, info.value.code, info.value.retryable) == (401, "unauthorized", False)
    assert "invalid_signature" in str(info.value)
    assert await sim.sessions() == []


async def test_signed_requests_with_a_stale_clock_are_refused(sim: Sim) -> None:
    # Our Date is 10 minutes behind the provider's: outside its window.
    adapter = sim.adapter(STRICT_APP, signed=True, now=lambda: datetime(2026, 11, 21, 8, 50, tzinfo=UTC))
    with pytest.raises(ProviderError) as info:
        await adapter.get_payment("0" * 32)
    assert info.value.http_status == 401
    assert "Date is outside the accepted window" in str(info.value)


# --- Retries -------------------------------------------------------------------------------------


async def test_get_retries_503_then_succeeds(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    await sim.control(
        "/faults", {"api_error": {"status": 503, "count": 2, "path_prefix": "/pis/v2/payments"}}
    )
    snapshot = await adapter.get_payment(created.provider_session_id)
    assert snapshot.status is PaymentStatus.OPEN
    reads = await sim.requests("/pis/v2/payments")
    assert [r["status_code"] for r in reads] == [503, 503, 200]
    assert len(sim.delays) == 2 and sim.delays[0] < sim.delays[1]  # exponential back-off


async def test_get_honours_retry_after_on_429(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    await sim.control(
        "/faults",
        {"api_error": {"status": 429, "count": 1, "retry_after": 2, "path_prefix": "/pis/v2/payments"}},
    )
    await adapter.get_payment(created.provider_session_id)
    assert sim.delays == [2.0]


async def test_get_gives_up_when_asked_to_wait_longer_than_it_holds(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    await sim.control(
        "/faults",
        {"api_error": {"status": 429, "count": 1, "retry_after": 120, "path_prefix": "/pis/v2/payments"}},
    )
    with pytest.raises(ProviderError) as info:
        await adapter.get_payment(created.provider_session_id)
    assert (info.value.http_status, info.value.code, info.value.retryable) == (429, "too_many_requests", True)
    assert sim.delays == []


async def test_get_retries_are_bounded(sim: Sim) -> None:
    adapter = sim.adapter(max_retries=2)
    created = await adapter.create_session(session_request())
    await sim.control("/faults", {"api_error": {"status": 500, "path_prefix": "/pis/v2/payments"}})
    with pytest.raises(ProviderError) as info:
        await adapter.get_payment(created.provider_session_id)
    error = info.value
    assert (error.http_status, error.code, error.retryable) == (500, "internal_server_error", True)
    assert error.log_id
    assert len(await sim.requests("/pis/v2/payments")) == 3


async def test_get_retries_a_lost_reply(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    sim.wire.lose_reply["/pis/v2/payments"] = 1
    snapshot = await adapter.get_payment(created.provider_session_id)
    assert snapshot.status is PaymentStatus.OPEN
    assert len(await sim.requests("/pis/v2/payments")) == 2


async def test_post_is_not_retried_on_5xx(sim: Sim) -> None:
    adapter = sim.adapter()
    await sim.control("/faults", {"api_error": {"status": 503, "count": 1, "path_prefix": "/pis/v2/connect"}})
    with pytest.raises(ProviderError) as info:
        await adapter.create_session(session_request())
    assert (info.value.http_status, info.value.code, info.value.retryable) == (
        503,
        "service_unavailable",
        True,
    )
    assert len(await sim.requests("/pis/v2/connect")) == 1
    assert sim.delays == []


async def test_post_whose_reply_is_lost_is_not_sent_again(sim: Sim) -> None:
    adapter = sim.adapter()
    sim.wire.lose_reply["/pis/v2/connect"] = 1
    with pytest.raises(ProviderError) as info:
        await adapter.create_session(session_request())
    assert (info.value.code, info.value.retryable) == ("network_error", True)
    assert "may have been processed" in str(info.value)
    # The provider did create it; sending the POST again would have opened a second one.
    assert len(await sim.requests("/pis/v2/connect")) == 1
    assert len(await sim.sessions()) == 1


async def test_post_that_never_left_is_retried(sim: Sim) -> None:
    adapter = sim.adapter()
    sim.wire.refuse["/pis/v2/connect"] = 2
    created = await adapter.create_session(session_request())
    assert len(await sim.requests("/pis/v2/connect")) == 1
    assert [s["session_id"] for s in await sim.sessions()] == [created.provider_session_id]
    assert len(sim.delays) == 2


# --- Errors --------------------------------------------------------------------------------------


async def test_unknown_session_is_not_found(sim: Sim) -> None:
    with pytest.raises(ProviderError) as info:
        await sim.adapter().get_payment("f" * 32)
    error = info.value
    assert (error.http_status, error.code, error.retryable) == (404, "not_found", False)
    assert error.log_id and re.fullmatch(r"[0-9a-f]{32}", error.log_id)


async def test_a_documented_400_carries_code_and_log_id(sim: Sim) -> None:
    with pytest.raises(ProviderError) as info:
        await sim.adapter().create_session(session_request(redirect_uri="https://elsewhere.example/cb"))
    error = info.value
    assert (error.http_status, error.code, error.retryable) == (400, "bad_request", False)
    assert error.log_id
    assert "invalid_field" in str(error)
    assert await sim.sessions() == []


# --- Webhooks from the simulator ------------------------------------------------------------------


async def test_simulator_webhooks_verify_with_the_adapter(sim: Sim) -> None:
    adapter = sim.adapter(STRICT_APP, signed=True)
    created = await adapter.create_session(session_request())
    await sim.control(f"/sessions/{created.provider_session_id}/complete", {"outcome": "confirm"})
    await sim.control("/webhooks/flush", {})
    assert sim.merchant.deliveries
    requests = [
        WebhookRequest(delivery.method, delivery.url.path, delivery.headers, delivery.content)
        for delivery in sim.merchant.deliveries
    ]
    for delivery, request in zip(sim.merchant.deliveries, requests, strict=True):
        hint = adapter.verify_webhook(request, sim.clock.now())
        assert hint.provider_session_id == created.provider_session_id
        assert hint.delivery_id == delivery.headers["x-request-id"]
        assert hint.payload["state"] == "opaque/state+token=é&x"
    # Another application's key cannot read them.
    other = FintectureProvider(
        FintectureTransport(
            sim.http,
            app_id=STRICT_APP,
            app_secret=SECRET,
            base_url=API,
            private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )
    )
    with pytest.raises(WebhookRejected):
        other.verify_webhook(requests[0], sim.clock.now())


# --- Timeouts, over a real socket ----------------------------------------------------------------


@pytest.fixture
async def live_sim(keys: Keys) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """The simulator behind uvicorn on 127.0.0.1: the only way a client timeout really fires."""
    config = SimulatorConfig(
        applications=[
            AppConfig(
                app_id=LENIENT_APP,
                app_secret=SECRET,
                public_key_pem=keys.public_pem,
                redirect_uris=[REDIRECT],
            )
        ]
    )
    async with serve(create_simulator(config), reserve_socket()) as url, httpx.AsyncClient() as http:
        yield url, http


async def test_every_call_has_a_timeout(live_sim: tuple[str, httpx.AsyncClient]) -> None:
    url, http = live_sim
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    adapter = FintectureProvider(
        FintectureTransport(
            http,
            app_id=LENIENT_APP,
            app_secret=SECRET,
            base_url=url,
            options=TransportOptions(timeout_seconds=0.3, sleep=sleep),
        )
    )
    created = await adapter.create_session(session_request())

    slow = {"api_latency": {"seconds": 1.0, "count": 1, "path_prefix": "/pis/v2/payments"}}
    assert (await http.post(f"{url}/_sim/faults", json=slow)).status_code == 200
    snapshot = await adapter.get_payment(created.provider_session_id)  # first try times out, second answers
    assert snapshot.status is PaymentStatus.OPEN
    assert len(delays) == 1

    slow = {"api_latency": {"seconds": 1.0, "count": 1, "path_prefix": "/pis/v2/connect"}}
    assert (await http.post(f"{url}/_sim/faults", json=slow)).status_code == 200
    with pytest.raises(ProviderError) as info:
        await adapter.create_session(session_request())
    assert (info.value.code, info.value.retryable) == ("network_error", True)
    assert "ReadTimeout" in str(info.value)
    connects = (await http.get(f"{url}/_sim/requests", params={"path_prefix": "/pis/v2/connect"})).json()
    assert len(connects["requests"]) == 2  # the first session, then the slow one: never sent twice

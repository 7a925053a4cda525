"""The Powens adapter against the provider simulator over real HTTP (uvicorn on 127.0.0.1).

The adapter is built the way the service builds it (`PowensSettings` → `build`), pointed at the
simulator's `/powens/2.0` API and `/powens/webview`. What is checked: a payment opened, paid in the
webview (driven like a browser: GET the page, POST the form, follow nothing) and read back; the
payer's return parsed from the simulator's redirect; every state the simulator can reach mapped
as the contract says; cancels, immediate and with the payer's consent; the service token minted
once, and again once when the simulator's clock has expired it; Powens's errors and injected
faults; and the simulator's signed webhooks (plain and gzip) verified by the adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from app.providers.base import (
    Payer,
    PaymentStatus,
    ProviderContext,
    ProviderError,
    SessionRequest,
    WebhookRejected,
    WebhookRequest,
)
from app.providers.powens.client import PowensProvider, build
from app.providers.powens.settings import PowensSettings
from simulator.app import create_app as create_simulator
from simulator.clock import FrozenClock
from simulator.config import PowensAppConfig, SimulatorConfig
from tests.support.servers import reserve_socket, serve, url_of

CLIENT_ID = "84213570"
GZIP_CLIENT_ID = "84213571"
CLIENT_SECRET = "w1Yc8Qm0xZ7rT2pL-sim"
WEBHOOK_SECRET = "b8f1e2d4c6a80719e3f5"
DOMAIN = "shop-sandbox"
CALLBACK = "https://pay.shop.example/callback"
WEBHOOK_URL = "http://merchant.test/webhooks/powens"
IBAN = "FR7630006000011234567890189"


class MerchantEndpoint(httpx.AsyncBaseTransport):
    """Where the simulator posts webhooks: keeps each delivery exactly as received, answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.deliveries.append(request)
        return httpx.Response(200)


@dataclass
class Sim:
    url: str
    http: httpx.AsyncClient
    clock: FrozenClock
    merchant: MerchantEndpoint

    def settings(self, client_id: str = CLIENT_ID, **changes: Any) -> PowensSettings:
        values: dict[str, Any] = {
            "client_id": client_id,
            "client_secret": CLIENT_SECRET,
            "domain": DOMAIN,
            "api_url": f"{self.url}/powens/2.0",
            "webview_url": f"{self.url}/powens/webview",
            "webhook_secret": WEBHOOK_SECRET,
            "beneficiary_iban": IBAN,
            "beneficiary_name": "Demo Shop SAS",
            **changes,
        }
        return PowensSettings(_env_file=None, **values)  # type: ignore[call-arg]

    def adapter(self, client_id: str = CLIENT_ID, **changes: Any) -> PowensProvider:
        context = ProviderContext(
            http=self.http, production=False, callback_url=CALLBACK, timeout_seconds=5.0, max_retries=2
        )
        return build(self.settings(client_id, **changes), context)

    async def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(f"{self.url}/_sim{path}", json=body or {})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def requests(self, path_prefix: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.url}/_sim/requests", params={"path_prefix": path_prefix})
        assert response.status_code == 200, response.text
        return response.json()["requests"]  # type: ignore[no-any-return]

    async def payment(self, payment_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.url}/_sim/powens/payments/{payment_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def pay_in_webview(self, connect_url: str, outcome: str, scenario: str | None = None) -> str:
        """What the payer's browser does: open the webview, submit the form; the 303's Location."""
        page = await self.http.get(connect_url)
        assert page.status_code == 200, page.text
        form = {"outcome": outcome, **({"scenario": scenario} if scenario else {})}
        answer = await self.http.post(connect_url, data=form)
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]

    async def deliveries(self) -> list[WebhookRequest]:
        await self.control("/webhooks/flush")
        return [
            WebhookRequest(request.method, request.url.path, request.headers, request.content)
            for request in self.merchant.deliveries
        ]


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    clock = FrozenClock(datetime(2026, 11, 21, 9, 0, tzinfo=UTC))
    merchant = MerchantEndpoint()
    sock = reserve_socket()
    apps = [
        PowensAppConfig(
            client_id=client_id,
            client_secret=CLIENT_SECRET,
            domain=DOMAIN,
            redirect_uris=[CALLBACK],
            webhook_url=WEBHOOK_URL,
            webhook_secret=WEBHOOK_SECRET,
            webhook_gzip=gzip,
            max_amount=Decimal("10.00"),
        )
        for client_id, gzip in ((CLIENT_ID, False), (GZIP_CLIENT_ID, True))
    ]
    config = SimulatorConfig(
        powens_applications=apps, public_url=url_of(sock), clock=clock, webhook_transport=merchant
    )
    async with serve(create_simulator(config), sock) as url, httpx.AsyncClient() as http:
        yield Sim(url=url, http=http, clock=clock, merchant=merchant)


def session_request(**overrides: Any) -> SessionRequest:
    fields: dict[str, Any] = {
        "amount": Decimal("7.5"),
        "currency": "EUR",
        "communication": "ORD-7Q2K9",
        "state": "opaque/state+token=é&x",
        "redirect_uri": CALLBACK,
        "origin_uri": "https://shop.example/cart",
        "payer": Payer(name="Camille Martin", email="camille@example.com"),
        "expiry_seconds": 1800,
        "language": "fr",
    }
    fields.update(overrides)
    return SessionRequest(**fields)


# --- Round trip ----------------------------------------------------------------------------------


async def test_open_pay_in_the_webview_return_and_read(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    assert created.provider_session_id.isdigit()
    assert created.connect_url.startswith(
        f"{sim.url}/powens/webview/fr/payment?domain=shop-sandbox.biapi.pro&"
    )

    stored = await sim.payment(created.provider_session_id)
    assert stored["client_state"] == "opaque/state+token=é&x"  # survived the JSON
    assert stored["client_redirect_uri"] == CALLBACK
    [instruction] = stored["instructions"]
    assert Decimal(str(instruction["amount"])) == Decimal("7.50")
    assert instruction["label"] == "ORD-7Q2K9"
    assert instruction["beneficiary"]["identification"] == IBAN
    assert instruction["beneficiary"]["label"] == "Demo Shop SAS"
    assert stored["payer_identity"]["last_name"] == "Martin"
    [create_call] = [
        e for e in await sim.requests("/powens/2.0/payments") if e["path"] == "/powens/2.0/payments"
    ]
    assert '"amount":7.50' in create_call["body"]  # a JSON number with the currency's digits

    opened = await adapter.get_payment(created.provider_session_id)
    assert (opened.status, opened.raw_status) == (PaymentStatus.OPEN, "created")

    location = await sim.pay_in_webview(created.connect_url, "validate", "done")
    assert location.startswith(CALLBACK + "?")
    hint = adapter.parse_return(dict(parse_qsl(urlsplit(location).query)))
    assert hint.state == "opaque/state+token=é&x"
    assert hint.provider_session_id == created.provider_session_id
    assert hint.error is None

    paid = await adapter.get_payment(created.provider_session_id)
    assert paid.provider == "powens"
    assert (paid.status, paid.raw_status, paid.transfer_state) == (PaymentStatus.SUCCEEDED, "done", None)
    assert (paid.amount, paid.currency, paid.communication) == (Decimal("7.50"), "EUR", "ORD-7Q2K9")
    assert paid.review_reason is None


async def test_pending_then_rejected_by_the_bank(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    location = await sim.pay_in_webview(created.connect_url, "validate", "pdng/rjct")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["payment_state"] == "pending"
    assert adapter.parse_return(query).provider_session_id == created.provider_session_id

    pending = await adapter.get_payment(created.provider_session_id)
    assert (pending.status, pending.raw_status) == (PaymentStatus.PROCESSING, "pending")
    await sim.control("/clock/advance", {"seconds": 900})
    rejected = await adapter.get_payment(created.provider_session_id)
    assert (rejected.status, rejected.raw_status, rejected.transfer_state) == (
        PaymentStatus.FAILED,
        "rejected",
        "noSpecifiedReason",
    )


async def test_the_payer_cancels_in_the_webview(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    location = await sim.pay_in_webview(created.connect_url, "cancel")
    hint = adapter.parse_return(dict(parse_qsl(urlsplit(location).query)))
    assert hint.provider_session_id == created.provider_session_id
    assert hint.error == "CancelledByUser"
    snapshot = await adapter.get_payment(created.provider_session_id)
    # Failed, not cancelled: the payer may open a new session.
    assert (snapshot.status, snapshot.transfer_state) == (PaymentStatus.FAILED, "CancelledByUser")


@pytest.mark.parametrize(
    ("state", "extra", "expected"),
    [
        ("accepted", {}, PaymentStatus.PROCESSING),
        ("partial", {}, PaymentStatus.NEEDS_REVIEW),
        ("expired", {}, PaymentStatus.EXPIRED),
        ("validating", {}, PaymentStatus.OPEN),
        ("rejected", {"error_code": "CancelledByClient"}, PaymentStatus.FAILED),
        ("pending", {"state_detail": "cancelling"}, PaymentStatus.PROCESSING),
        ("settled", {"allow_unknown": True}, PaymentStatus.NEEDS_REVIEW),
    ],
)
async def test_states_the_simulator_can_force(
    sim: Sim, state: str, extra: dict[str, Any], expected: PaymentStatus
) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    await sim.control(f"/powens/payments/{created.provider_session_id}/state", {"state": state, **extra})
    snapshot = await adapter.get_payment(created.provider_session_id)
    assert (snapshot.status, snapshot.raw_status) == (expected, state)
    if expected is PaymentStatus.NEEDS_REVIEW:
        assert snapshot.review_reason


# --- Cancelling ----------------------------------------------------------------------------------


async def test_cancel_a_created_payment(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    snapshot = await adapter.cancel_payment(created.provider_session_id)
    assert (snapshot.status, snapshot.raw_status, snapshot.transfer_state) == (
        PaymentStatus.FAILED,
        "rejected",
        "cancelledByUser",
    )


async def test_cancel_a_pending_payment_with_the_payers_consent(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    await sim.pay_in_webview(created.connect_url, "validate", "pdng")
    asked = await adapter.cancel_payment(created.provider_session_id, state="cancel-state-1")
    assert (asked.status, asked.raw_status, asked.raw["state_detail"]) == (
        PaymentStatus.PROCESSING,
        "pending",
        "cancelling",
    )
    answer = await sim.control(
        f"/powens/payments/{created.provider_session_id}/complete", {"outcome": "confirm_cancel"}
    )
    hint = adapter.parse_return(dict(parse_qsl(urlsplit(answer["redirect_url"]).query)))
    assert (hint.state, hint.provider_session_id) == ("cancel-state-1", created.provider_session_id)
    cancelled = await adapter.get_payment(created.provider_session_id)
    assert cancelled.status is PaymentStatus.FAILED


async def test_a_cancel_powens_does_not_support(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    await sim.pay_in_webview(created.connect_url, "validate", "done")
    with pytest.raises(ProviderError) as caught:
        await adapter.cancel_payment(created.provider_session_id)
    assert (caught.value.http_status, caught.value.code) == (400, "notSupported")


# --- Tokens --------------------------------------------------------------------------------------


async def test_one_token_then_a_new_one_when_powens_expires_it(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    for _ in range(3):
        await adapter.get_payment(created.provider_session_id)
    assert len(await sim.requests("/powens/2.0/auth/token")) == 1
    # 31 minutes on Powens's clock: the token it issued is dead while ours still looks fresh.
    await sim.control("/clock/advance", {"seconds": 31 * 60})
    snapshot = await adapter.get_payment(created.provider_session_id)
    assert snapshot.raw_status == "created"
    assert len(await sim.requests("/powens/2.0/auth/token")) == 2
    reads = [e for e in await sim.requests("/powens/2.0/payments/") if e["method"] == "GET"]
    assert [e["status_code"] for e in reads[-2:]] == [401, 200]


async def test_wrong_credentials_are_an_error(sim: Sim) -> None:
    adapter = sim.adapter(client_secret="not-the-secret")
    with pytest.raises(ProviderError) as caught:
        await adapter.get_payment("123456")
    assert (caught.value.http_status, caught.value.code) == (401, "unauthorized")


# --- Errors and faults ---------------------------------------------------------------------------


async def test_an_amount_above_the_cap_is_refused(sim: Sim) -> None:
    with pytest.raises(ProviderError) as caught:
        await sim.adapter().create_session(session_request(amount=Decimal("12.34")))
    assert (caught.value.http_status, caught.value.code, caught.value.retryable) == (
        400,
        "invalidAmount",
        False,
    )


async def test_an_unregistered_redirect_uri_is_refused_by_powens(sim: Sim) -> None:
    with pytest.raises(ProviderError) as caught:
        await sim.adapter().create_session(session_request(redirect_uri="https://elsewhere.example/callback"))
    assert (caught.value.http_status, caught.value.code) == (400, "invalidValue")


async def test_an_unknown_payment_is_not_found(sim: Sim) -> None:
    with pytest.raises(ProviderError) as caught:
        await sim.adapter().get_payment("999999999999")
    assert (caught.value.http_status, caught.value.code, caught.value.retryable) == (404, "not_found", False)


async def test_reads_are_retried_and_creates_are_not(sim: Sim) -> None:
    adapter = sim.adapter()
    created = await adapter.create_session(session_request())
    await sim.control(
        "/faults", {"api_error": {"status": 503, "count": 2, "path_prefix": "/powens/2.0/payments/"}}
    )
    snapshot = await adapter.get_payment(created.provider_session_id)
    assert snapshot.raw_status == "created"

    before = len(
        [e for e in await sim.requests("/powens/2.0/payments") if e["path"] == "/powens/2.0/payments"]
    )
    await sim.control(
        "/faults", {"api_error": {"status": 503, "count": 1, "path_prefix": "/powens/2.0/payments"}}
    )
    with pytest.raises(ProviderError) as caught:
        await adapter.create_session(session_request())
    assert (caught.value.http_status, caught.value.retryable) == (503, True)
    after = len(
        [e for e in await sim.requests("/powens/2.0/payments") if e["path"] == "/powens/2.0/payments"]
    )
    assert after == before + 1  # sent once, never repeated


# --- Webhooks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", [CLIENT_ID, GZIP_CLIENT_ID], ids=["plain", "gzip"])
async def test_simulator_webhooks_verify_with_the_adapter(sim: Sim, client_id: str) -> None:
    adapter = sim.adapter(client_id)
    created = await adapter.create_session(session_request())
    await sim.pay_in_webview(created.connect_url, "validate", "pdng/done")
    early = await sim.deliveries()  # validating, pending: signed now
    early_hints = [adapter.verify_webhook(request, sim.clock.now()) for request in early]
    await sim.control("/clock/advance", {"seconds": 900})
    deliveries = await sim.deliveries()  # ... and done, signed 15 minutes later
    assert deliveries[: len(early)] == early
    late_hints = [adapter.verify_webhook(request, sim.clock.now()) for request in deliveries[len(early) :]]
    hints = early_hints + late_hints
    assert [hint.payload["state"] for hint in hints] == ["validating", "pending", "done"]
    gzip = client_id == GZIP_CLIENT_ID
    for request, hint in zip(deliveries, hints, strict=True):
        assert request.path == "/webhooks/powens"
        assert (request.headers.get("content-encoding") == "gzip") is gzip
        assert hint.provider_session_id == created.provider_session_id
        assert hint.event_type == "PAYMENT_STATE_UPDATED"
        assert hint.delivery_id == str(hint.payload["id_webhook_data"])
    assert len({hint.delivery_id for hint in hints}) == 3

    # Another secret, a tampered body, or a delivery replayed 15 minutes later: refused.
    other = sim.adapter(client_id, webhook_secret="another-secret-0123")
    with pytest.raises(WebhookRejected, match="does not match"):
        other.verify_webhook(deliveries[-1], sim.clock.now())
    last = deliveries[-1]
    if not gzip:
        tampered = last.raw_body.replace(b'"done"', b'"accepted"')
        assert tampered != last.raw_body
        with pytest.raises(WebhookRejected, match="does not match"):
            adapter.verify_webhook(
                WebhookRequest(last.method, last.path, last.headers, tampered), sim.clock.now()
            )
    with pytest.raises(WebhookRejected, match="outside the accepted window"):
        adapter.verify_webhook(deliveries[0], sim.clock.now())  # signed 15 minutes ago

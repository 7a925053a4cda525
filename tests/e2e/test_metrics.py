"""GET /metrics against the live service after a payment made end to end over HTTP: each family is
there with the labels and the values that payment produced, and the endpoint opens only to its token.

The service runs in this test process, so its counters carry what earlier tests counted: each
assertion on a counter compares a scrape after the payment with one before it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from app.models import Order, ProviderEvent
from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import APP_ID, Stack, StackFactory
from tests.e2e.test_webhook_security import form_body
from tests.support.fintecture import build_delivery, public_key_from_pem

TOKEN = "metrics-token-for-the-e2e-tests-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


async def scrape(stack: Stack) -> Samples:
    response = await stack.http.get(
        f"{stack.service_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Summed over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def signed(public: rsa.RSAPublicKey, body: bytes, request_id: str) -> dict[str, str]:
    return build_delivery(public, body, date=datetime.now(UTC), request_id=request_id, key_id=APP_ID)


@pytest.fixture
def merchant_public(merchant_keys: tuple[str, str]) -> rsa.RSAPublicKey:
    return public_key_from_pem(merchant_keys[1])


@pytest.fixture
async def metrics_stack(stack_factory: StackFactory) -> Stack:
    return await stack_factory(metrics_token=TOKEN)


async def test_a_payment_shows_in_every_family(
    metrics_stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    stack = metrics_stack
    before = await scrape(stack)

    order, session = await stack.paying_order()  # PUT /products, POST /orders, POST payment-session
    psid = session["provider_session_id"]
    await stack.faults(webhook_drop={"count": 100})  # the deliveries below are the only ones
    await stack.drive(psid, "payment_created", "completed")

    body = form_body(psid)
    headers = signed(merchant_public, body, str(uuid.uuid4()))
    webhook = f"{stack.service_url}/webhook"
    first = await stack.http.post(webhook, content=body, headers=headers)
    assert first.json() == {"received": True, "duplicate": False}
    again = await stack.http.post(webhook, content=body, headers=headers)
    assert again.json() == {"received": True, "duplicate": True}
    forged = await stack.http.post(
        webhook, content=body, headers={**headers, "Digest": "SHA-256=" + "A" * 43 + "="}
    )
    assert forged.status_code == 401
    nul = f"session_id={psid}&status=payment_created&note=a%00b".encode()
    malformed = await stack.http.post(webhook, content=nul, headers=signed(merchant_public, nul, "nul-1"))
    assert malformed.status_code == 400
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    missing = await stack.http.get(f"{stack.service_url}/no/such/{uuid.uuid4()}")
    assert missing.status_code == 404
    # An order waiting for a person, for the gauge.
    async with stack.sessionmaker() as db, db.begin():
        await db.execute(
            update(Order).where(Order.id == uuid.UUID(order["id"])).values(status="needs_review")
        )

    after = await scrape(stack)

    # Transitions: exactly one to paid, from awaiting_payment, by the webhook, for Fintecture.
    transitions = "checkout_payment_transitions_total"
    paid = {
        "provider": "fintecture",
        "from_state": "awaiting_payment",
        "to_state": "paid",
        "source": "webhook",
    }
    assert delta(before, after, transitions, **paid) == 1
    assert total(after, transitions, to_state="paid") - total(before, transitions, to_state="paid") == 1
    opened = {
        "provider": "fintecture",
        "from_state": "pending",
        "to_state": "awaiting_payment",
        "source": "api",
    }
    assert delta(before, after, transitions, **opened) == 1

    # Webhooks: one accepted, one duplicate, one forged and one unusable, by their error codes.
    webhooks = "checkout_webhooks_total"
    assert delta(before, after, webhooks, provider="fintecture", verdict="accepted", reason="") == 1
    assert delta(before, after, webhooks, provider="fintecture", verdict="duplicate", reason="") == 1
    rejected = {"provider": "fintecture", "verdict": "rejected"}
    assert delta(before, after, webhooks, **rejected, reason="invalid_signature") == 1
    assert delta(before, after, webhooks, **rejected, reason="invalid_webhook") == 1

    # Provider calls: the session opened once, the payment read once (by the inbox worker), each
    # with its latency; operations carry no identifier.
    calls = "checkout_provider_requests_total"
    connect = {"provider": "fintecture", "operation": "POST /pis/v2/connect"}
    read = {"provider": "fintecture", "operation": "GET /pis/v2/payments/{id}"}
    assert delta(before, after, calls, **connect, outcome="ok") == 1
    assert delta(before, after, calls, **read, outcome="ok") == 1
    duration = "checkout_provider_request_duration_seconds_count"
    assert delta(before, after, duration, **connect) == 1
    assert delta(before, after, "checkout_provider_request_duration_seconds_sum", **read) > 0
    assert not any(psid in dict(labels).get("operation", "") for (_, labels) in after)

    # Requests by route template and status, never by raw path.
    requests = "checkout_http_requests_total"
    assert delta(before, after, requests, method="POST", route="/orders", status="201") == 1
    route = "/orders/{order_id}/payment-session"
    assert delta(before, after, requests, method="POST", route=route, status="201") == 1
    assert delta(before, after, requests, method="POST", route="/webhook", status="200") == 2
    assert delta(before, after, requests, method="POST", route="/webhook", status="401") == 1
    assert delta(before, after, requests, method="POST", route="/webhook", status="400") == 1
    assert delta(before, after, requests, method="GET", route="unmatched", status="404") == 1
    assert (
        delta(before, after, "checkout_http_request_duration_seconds_count", method="POST", route=route) == 1
    )
    assert not any(order["id"] in dict(labels).get("route", "") for (_, labels) in after)

    # Read from the database at the scrape: nothing left in the inbox, one order to review.
    assert value(after, "checkout_database_gauges_up") == 1
    assert value(after, "checkout_inbox_depth") == 0
    assert value(after, "checkout_inbox_oldest_unprocessed_age_seconds") == 0
    assert value(after, "checkout_orders_needs_review") == 1


async def test_inbox_gauges_show_an_unprocessed_event(
    stack_factory: StackFactory, merchant_public: rsa.RSAPublicKey
) -> None:
    stack = await stack_factory(metrics_token=TOKEN, workers_enabled=False)
    _, session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    body = form_body(session["provider_session_id"])
    stored = await stack.http.post(
        f"{stack.service_url}/webhook", content=body, headers=signed(merchant_public, body, "late-1")
    )
    assert stored.status_code == 200
    async with stack.sessionmaker() as db, db.begin():  # received a minute ago, still not processed
        await db.execute(update(Order).values(status="needs_review"))
        await db.execute(update(ProviderEvent).values(received_at=datetime.now(UTC) - timedelta(minutes=1)))
    after = await scrape(stack)
    assert value(after, "checkout_inbox_depth") == 1
    assert 60 <= value(after, "checkout_inbox_oldest_unprocessed_age_seconds") < 120
    assert value(after, "checkout_orders_needs_review") == 1


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


async def test_metrics_open_only_to_the_token(metrics_stack: Stack) -> None:
    url = f"{metrics_stack.service_url}/metrics"
    http = metrics_stack.http
    missing = await http.get(url)
    assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(await http.get(url, headers={"Authorization": "Basic " + TOKEN}), 401, "unauthorized")
    assert_error(await http.get(url, headers={"Authorization": "Bearer " + TOKEN + "x"}), 403, "forbidden")
    assert_error(await http.get(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}), 403, "forbidden")
    allowed = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert "checkout_http_requests_total" in allowed.text
    schema = (await http.get(f"{metrics_stack.service_url}/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


async def test_without_a_token_configured_there_is_no_metrics_endpoint(stack: Stack) -> None:
    for headers in ({}, {"Authorization": "Bearer x"}, {"Authorization": f"Bearer {TOKEN}"}):
        assert_error(await stack.http.get(f"{stack.service_url}/metrics", headers=headers), 404, "not_found")

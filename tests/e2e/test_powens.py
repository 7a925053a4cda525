"""Powens Pay end to end: storefront -> service -> simulator (webview, label scenarios, knobs,
HMAC-signed webhooks) -> /callback and /webhooks/powens -> PostgreSQL, everything over real HTTP on
127.0.0.1, beside Fintecture in the same stack.

The tampered and hand-made deliveries are built here from the contract's formula
(contracts/powens.md §5) with the standard library only:

    BI-Signature = base64(HMAC-SHA256(secret, "POST" + "." + path + "." + BI-Signature-Date + "." + payload))

where the payload is the JSON body (before gzip, when the body is compressed).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import itertools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import select

from app.models import OrderTransition, PaymentSession, ProviderEvent
from tests.e2e.conftest import (
    POWENS_BENEFICIARY,
    POWENS_IBAN,
    POWENS_PHASE_SECONDS,
    POWENS_WEBHOOK_PATH,
    STOREFRONT,
    Stack,
    StackFactory,
    form_action_and_fields,
    query_of,
)

TEST_CONNECTOR_UUID = "338178e6-3d01-564f-9a7b-52ca442459bf"  # the Powens test bank (contract §7)

# Our own deliveries' ids: far above any the simulator hands out, unique within a run.
_webhook_ids = itertools.count(9_000_000_000)


# --- Deliveries built from the contract --------------------------------------------------------


def signature_date(moment: datetime) -> str:
    """`2022-06-27T11:08:52.577831Z`: UTC ISO 8601 with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bi_signature(secret: str, path: str, date: str, payload: bytes) -> str:
    message = b"POST" + b"." + path.encode() + b"." + date.encode() + b"." + payload
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def payment_body(payment_id: str, state: str = "done") -> bytes:
    """A PAYMENT_STATE_UPDATED body: the Payment resource (§4) plus a fresh `id_webhook_data`."""
    resource = {
        "id": int(payment_id),
        "state": state,
        "state_detail": None,
        "error_code": None,
        "error_description": None,
        "action": None,
        "validate_uri": None,
        "validate_mechanism": "webview",
        "fields": None,
        "connector_uuid": TEST_CONNECTOR_UUID,
        "id_connector": None,
        "register_date": "2026-03-02 10:00:00",
        "payer": None,
        "payer_identity": None,
        "operator_identity": None,
        "instructions": [
            {
                "id": 987,
                "label": "ORD-XXXXXXXX",
                "amount": 273.5,
                "currency": {"id": "EUR", "symbol": "€", "precision": 2, "name": "Euro"},
                "execution_date_type": "first_open_day",
                "execution_date": None,
                "beneficiary": {
                    "id": 988,
                    "scheme_name": "iban",
                    "identification": POWENS_IBAN,
                    "label": POWENS_BENEFICIARY,
                    "issuer": None,
                    "bic": None,
                },
                "beneficiary_identity": None,
                "reference_id": "5F0C2B7A9D1E3F40",
                "state": state if state in ("pending", "done") else None,
            }
        ],
        "id_webhook_data": next(_webhook_ids),
    }
    return json.dumps(resource, separators=(",", ":")).encode()


def signed_headers(
    secret: str,
    payload: bytes,
    *,
    path: str = POWENS_WEBHOOK_PATH,
    at: datetime | None = None,
) -> dict[str, str]:
    date = signature_date(at or datetime.now(UTC))
    return {
        "Content-Type": "application/json",
        "BI-Signature-Date": date,
        "BI-Signature": bi_signature(secret, path, date, payload),
    }


async def post_powens_webhook(stack: Stack, body: bytes, headers: dict[str, str]) -> Any:
    return await stack.http.post(f"{stack.service_url}{POWENS_WEBHOOK_PATH}", content=body, headers=headers)


def with_params(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (None removes one)."""
    parts = urlsplit(url)
    query = {**query_of(url), **changes}
    kept = [(k, v) for k, v in query.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(kept)))


# A delivery held this long on the simulator's clock reaches the service after the payer's return;
# its date stays well within the service's ±600 s window.
HOLD_SECONDS = 120


async def hold_webhooks(stack: Stack, count: int) -> None:
    """The next `count` deliveries wait HOLD_SECONDS of the simulator's clock: the payer's return
    is applied first, deterministically."""
    await stack.faults(webhook_delay={"count": count, "seconds": HOLD_SECONDS})


async def release_webhooks(stack: Stack) -> None:
    await stack.advance_clock(HOLD_SECONDS)
    await stack.settle()


async def paid_transitions(stack: Stack, order_id: str) -> int:
    return await stack.count(
        OrderTransition,
        OrderTransition.order_id == uuid.UUID(order_id),
        OrderTransition.to_status == "paid",
    )


async def session_row(stack: Stack, session_id: str) -> PaymentSession:
    async with stack.sessionmaker() as db:
        row = await db.get(PaymentSession, uuid.UUID(session_id))
    assert row is not None
    return row


# --- The providers side by side ----------------------------------------------------------------


async def test_both_providers_are_listed_and_each_opens_a_payment_session_in_one_stack(
    powens_stack: Stack,
) -> None:
    stack = powens_stack
    response = await stack.http.get(f"{stack.service_url}/providers")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(p["name"], p["display_name"], p["default"]) for p in items] == [
        ("fintecture", "Fintecture", True),
        ("powens", "Powens Pay", False),
    ]
    assert all(p["capabilities"]["pay_in"] for p in items)

    ft_order, ft_session = await stack.paying_order()  # no provider named: the default
    pw_order, pw_session = await stack.powens_paying_order()
    assert ft_session["provider"] == "fintecture"
    assert pw_session["provider"] == "powens"
    assert pw_session["connect_url"].startswith(f"{stack.simulator_url}/powens/webview/")
    assert query_of(pw_session["connect_url"])["payment_id"] == pw_session["provider_session_id"]

    ft_back = await stack.complete(ft_session["provider_session_id"], "confirm")
    pw_back = await stack.pay_in_webview(pw_session["connect_url"], "validate", "done")
    for order, back in ((ft_order, ft_back), (pw_order, pw_back)):
        result = await stack.follow_callback(back)
        assert result.status_code == 303
        assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "paid"}
    await stack.settle()
    for order in (ft_order, pw_order):
        assert [t[1] for t in await stack.transitions(order["id"])] == ["pending", "awaiting_payment", "paid"]


async def test_an_order_failed_at_powens_is_then_paid_with_fintecture(powens_stack: Stack) -> None:
    stack = powens_stack
    await stack.faults(webhook_drop={"count": 100})  # both payers' returns decide, in order
    order, session = await stack.powens_paying_order()
    back = await stack.powens_complete(session["provider_session_id"], "validate", "rjct")
    assert back is not None
    assert query_of((await stack.follow_callback(back)).headers["location"])["status"] == "failed"

    retry = await stack.open_session(order, provider="fintecture")
    assert retry.status_code == 201, retry.text
    back = await stack.complete(retry.json()["provider_session_id"], "confirm")
    assert query_of((await stack.follow_callback(back)).headers["location"])["status"] == "paid"
    await stack.settle()
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
        ("awaiting_payment", "failed", "callback"),
        ("failed", "awaiting_payment", "api"),
        ("awaiting_payment", "paid", "callback"),
    ]


async def test_a_double_click_opens_one_powens_payment(powens_stack: Stack) -> None:
    stack = powens_stack
    order = await stack.create_order()
    responses = await asyncio.gather(*(stack.open_session(order, provider="powens") for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["provider_session_id"] for r in responses}) == 1
    assert len({r.json()["connect_url"] for r in responses}) == 1
    assert await stack.count(PaymentSession) == 1
    calls = [(r["method"], r["path"]) for r in await stack.api_requests() if r["path"].startswith("/powens/")]
    assert calls.count(("POST", "/powens/2.0/payments")) == 1
    assert sum(path.endswith("/scopedtoken") for _, path in calls) == 1


async def test_no_scoped_token_fails_the_session_and_leaves_the_order_payable(powens_stack: Stack) -> None:
    """The payment is created at Powens, but its webview code cannot be had: nobody can pay it, so
    the session fails here, the order does not move, and a new attempt opens a new payment."""
    stack = powens_stack
    order = await stack.create_order()
    await stack.faults(api_error={"status": 503, "count": 20, "path_prefix": "/powens/2.0/payments/"})
    refused = await stack.open_session(order, provider="powens")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "provider_unavailable"
    assert await stack.order_status(order["id"]) == "pending"
    assert await stack.transitions(order["id"]) == [(None, "pending", "api")]
    [abandoned] = (await stack.http.get(f"{stack.simulator_url}/_sim/powens/payments")).json()["payments"]
    assert abandoned["state"] == "created"

    await stack.faults(api_error={"status": 503, "count": 0})
    retry = await stack.open_session(order, provider="powens")
    assert retry.status_code == 201, retry.text
    assert retry.json()["provider_session_id"] != str(abandoned["id"])
    assert await stack.order_status(order["id"]) == "awaiting_payment"
    async with stack.sessionmaker() as db:
        statuses = sorted(s.value for s in (await db.scalars(select(PaymentSession.status))).all())
    assert statuses == ["failed", "open"]


# --- The payer's journeys ----------------------------------------------------------------------


async def test_paid_through_the_webview_for_the_orders_amount_and_reference(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    assert session["status"] == "awaiting_payment"
    payment_id = session["provider_session_id"]
    payment = await stack.powens_payment(payment_id)
    [instruction] = payment["instructions"]
    assert instruction["amount"] == 273.5
    assert instruction["currency"]["id"] == "EUR"
    assert instruction["label"] == order["reference"]
    assert instruction["beneficiary"]["identification"] == POWENS_IBAN
    assert instruction["beneficiary"]["label"] == POWENS_BENEFICIARY
    assert payment["client_redirect_uri"] == f"{stack.service_url}/callback"
    assert (payment["payer_identity"]["first_name"], payment["payer_identity"]["last_name"]) == (
        "Camille",
        "Martin",
    )
    assert payment["state"] == "created"

    page = await stack.http.get(session["connect_url"])
    assert page.status_code == 200
    assert "273.50" in page.text and order["reference"] in page.text
    action, fields = form_action_and_fields(page.text)
    assert fields["scenario"] == ""  # the label's own scenario unless the payer picks another
    submit_url = httpx.URL(session["connect_url"]).join(action)
    await hold_webhooks(stack, 2)  # validating, done: they reach the service after the payer
    submitted = await stack.http.post(
        str(submit_url), data={**fields, "scenario": "done", "outcome": "validate"}
    )
    assert submitted.status_code == 303
    back = submitted.headers["location"]
    assert back.startswith(f"{stack.service_url}/callback?")
    returned = query_of(back)
    assert returned["id_payment"] == payment_id
    assert returned["payment_state"] == "done"
    assert returned["state"]

    result = await stack.follow_callback(back)
    assert result.status_code == 303
    assert result.headers["location"].startswith(STOREFRONT)
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "paid"}

    await stack.settle()
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
        ("awaiting_payment", "paid", "callback"),
    ]
    await release_webhooks(stack)  # the validating and done webhooks arrive, and change nothing
    deliveries = await stack.deliveries(payment_id)
    assert [(d["fields"]["state"], d["state"]) for d in deliveries] == [
        ("validating", "delivered"),
        ("done", "delivered"),
    ]
    assert await stack.order_status(order["id"]) == "paid"
    assert [t[1] for t in await stack.transitions(order["id"])] == ["pending", "awaiting_payment", "paid"]
    row = await session_row(stack, session["session_id"])
    assert (row.provider, row.provider_status, row.transfer_state, row.bank_provider) == (
        "powens",
        "done",
        None,
        TEST_CONNECTOR_UUID,
    )
    assert await stack.count(ProviderEvent, ProviderEvent.provider == "powens") == 2


async def test_cancelled_by_the_payer_fails_the_order_and_a_new_session_may_follow(
    powens_stack: Stack,
) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    await hold_webhooks(stack, 1)  # rejected: it reaches the service after the payer
    back = await stack.pay_in_webview(session["connect_url"], "cancel")
    assert back.startswith(f"{stack.service_url}/callback?")
    assert query_of(back)["error"] == "cancelled"
    assert query_of(back)["error_code"] == "CancelledByUser"

    result = await stack.follow_callback(back)
    assert result.status_code == 303
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "failed"}
    assert await stack.order_status(order["id"]) == "failed"
    assert (await stack.transitions(order["id"]))[-1] == ("awaiting_payment", "failed", "callback")
    row = await session_row(stack, session["session_id"])
    assert (row.provider_status, row.transfer_state) == ("rejected", "CancelledByUser")

    retry = await stack.open_session(order, provider="powens")
    assert retry.status_code == 201, retry.text
    assert retry.json()["provider_session_id"] != session["provider_session_id"]
    assert await stack.order_status(order["id"]) == "awaiting_payment"
    await release_webhooks(stack)  # the old payment's webhook is old news: the new one drives the order
    [late] = await stack.deliveries(session["provider_session_id"])
    assert late["state"] == "delivered"
    assert await stack.order_status(order["id"]) == "awaiting_payment"
    assert [t[1] for t in await stack.transitions(order["id"])] == [
        "pending",
        "awaiting_payment",
        "failed",
        "awaiting_payment",
    ]


@pytest.mark.parametrize(
    ("scenario", "error_code"),
    [("rjct", "noSpecifiedReason"), ("bug", "bug")],
    ids=["rejected by the bank", "error during initiation"],
)
async def test_rejected_by_the_bank_fails_the_order(
    powens_stack: Stack, scenario: str, error_code: str
) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    await hold_webhooks(stack, 2)  # they reach the service after the payer
    back = await stack.pay_in_webview(session["connect_url"], "validate", scenario)
    assert back.startswith(f"{stack.service_url}/callback?")
    assert query_of(back)["error_code"] == error_code
    result = await stack.follow_callback(back)
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "failed"}
    await release_webhooks(stack)
    assert await stack.order_status(order["id"]) == "failed"
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
        ("awaiting_payment", "failed", "callback"),
    ]
    row = await session_row(stack, session["session_id"])
    assert (row.provider_status, row.transfer_state) == ("rejected", error_code)


async def test_pending_then_done_by_webhook_only(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    payment_id = session["provider_session_id"]
    # The payer confirms at the bank and closes the browser: no callback ever.
    await stack.powens_complete(payment_id, "validate", "pdng")
    await stack.settle()
    assert await stack.order_status(order["id"]) == "processing"

    # One phase later on the simulator's clock, the test bank settles the transfer.
    await stack.advance_clock(POWENS_PHASE_SECONDS)
    assert (await stack.powens_payment(payment_id))["state"] == "done"
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
        ("awaiting_payment", "processing", "webhook"),
        ("processing", "paid", "webhook"),
    ]


async def test_return_only_when_every_webhook_is_dropped(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.powens_complete(session["provider_session_id"], "validate", "done")
    assert back is not None
    await stack.settle()
    deliveries = await stack.deliveries(session["provider_session_id"])
    assert [d["state"] for d in deliveries] == ["dropped", "dropped"]  # validating, done
    assert await stack.count(ProviderEvent) == 0
    result = await stack.follow_callback(back)
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "paid"}
    assert [t[2] for t in await stack.transitions(order["id"])] == ["api", "api", "callback"]


async def test_provider_down_during_the_return_then_the_sweeper_completes(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.powens_complete(session["provider_session_id"], "validate", "done")
    assert back is not None
    await stack.faults(api_error={"status": 503, "count": 50, "path_prefix": "/powens/2.0/payments"})

    result = await stack.follow_callback(back)
    assert result.status_code == 303  # never a 500 for the payer
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "processing"}
    assert await stack.order_status(order["id"]) == "awaiting_payment"
    refused = [r for r in await stack.api_requests() if r["fault"] and r["path"].startswith("/powens/")]
    assert refused, "the provider was asked during the return"

    await stack.faults(api_error={"status": 503, "count": 0})
    await stack.sweep()
    assert await stack.order_status(order["id"]) == "paid"
    assert (await stack.transitions(order["id"]))[-1] == ("awaiting_payment", "paid", "poll")


async def test_a_service_token_powens_expired_is_minted_again_during_the_return(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    payment_id = session["provider_session_id"]
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.powens_complete(payment_id, "validate", "done")
    assert back is not None
    await stack.advance_clock(31 * 60)  # Powens's service tokens live 30 minutes

    result = await stack.follow_callback(back)
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "paid"}
    calls = [(r["method"], r["path"], r["status_code"]) for r in await stack.api_requests()]
    assert calls == [
        ("POST", "/powens/2.0/auth/token", 200),
        ("POST", "/powens/2.0/payments", 200),
        ("POST", f"/powens/2.0/payments/{payment_id}/scopedtoken", 200),
        ("GET", f"/powens/2.0/payments/{payment_id}", 401),  # the cached token has expired
        ("POST", "/powens/2.0/auth/token", 200),
        ("GET", f"/powens/2.0/payments/{payment_id}", 200),
    ]


async def test_accepted_is_processing_not_paid_until_done(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    payment_id = session["provider_session_id"]
    await stack.powens_drive(payment_id, "accepted")
    await stack.settle()
    assert await stack.order_status(order["id"]) == "processing"
    await stack.sweep()  # asking again changes nothing: accepted is never paid
    assert await stack.order_status(order["id"]) == "processing"
    row = await session_row(stack, session["session_id"])
    assert (row.provider_status, row.status.value) == ("accepted", "processing")

    await stack.powens_drive(payment_id, "done")
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
        ("awaiting_payment", "processing", "webhook"),
        ("processing", "paid", "webhook"),
    ]


async def test_partial_needs_review(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    await stack.powens_drive(session["provider_session_id"], "partial")
    await stack.settle()
    detail = await stack.order(order["id"])
    assert detail["status"] == "needs_review"
    last = detail["transitions"][-1]
    assert (last["from_status"], last["to_status"], last["source"]) == (
        "awaiting_payment",
        "needs_review",
        "webhook",
    )
    assert "partial" in (last["reason"] or "")
    assert await paid_transitions(stack, order["id"]) == 0


async def test_expired_expires_the_order_and_a_new_session_may_follow(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    await stack.powens_drive(session["provider_session_id"], "expired")
    await stack.settle()
    assert await stack.order_status(order["id"]) == "expired"
    assert (await stack.transitions(order["id"]))[-1] == ("awaiting_payment", "expired", "webhook")
    again = await stack.open_session(order, provider="powens")
    assert again.status_code == 201, again.text
    assert again.json()["provider_session_id"] != session["provider_session_id"]


# --- Deliveries that repeat, come late, race or lie -------------------------------------------


async def test_twenty_duplicate_deliveries_make_one_inbox_row_and_one_transition(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    await stack.faults(webhook_duplicate={"count": 1, "copies": 20})
    await stack.powens_drive(session["provider_session_id"], "done")
    await stack.settle()
    [delivery] = await stack.deliveries(session["provider_session_id"])
    assert len(delivery["attempts"]) == 20
    assert all(a["status_code"] == 200 for a in delivery["attempts"])
    assert await stack.count(ProviderEvent) == 1  # one inbox row per id_webhook_data
    assert await stack.order_status(order["id"]) == "paid"
    assert await paid_transitions(stack, order["id"]) == 1
    assert await stack.count(OrderTransition, OrderTransition.order_id == uuid.UUID(order["id"])) == 3


async def test_out_of_order_deliveries_never_downgrade(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    payment_id = session["provider_session_id"]
    await stack.faults(webhook_reorder={"count": 3})
    await stack.powens_complete(payment_id, "validate", "pdng")  # validating, pending: held
    await stack.powens_drive(payment_id, "done")  # the third: all three go, newest first
    await stack.settle()
    deliveries = await stack.deliveries(payment_id)
    states = [d["fields"]["state"] for d in deliveries]
    assert states == ["validating", "pending", "done"]
    first_attempts = {
        d["fields"]["state"]: datetime.fromisoformat(d["attempts"][0]["at"]) for d in deliveries
    }
    assert first_attempts["done"] < first_attempts["pending"] < first_attempts["validating"]
    assert await stack.order_status(order["id"]) == "paid"
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
        ("awaiting_payment", "paid", "webhook"),
    ]

    # A late, authentic delivery about an earlier state: a hint, re-checked, nothing moves.
    body = payment_body(payment_id, "pending")
    late = await post_powens_webhook(stack, body, signed_headers(stack.powens_webhook_secret, body))
    assert late.status_code == 200
    assert late.json() == {"received": True, "duplicate": False}
    await stack.settle()
    statuses = [t[1] for t in await stack.transitions(order["id"])]
    assert statuses == ["pending", "awaiting_payment", "paid"]
    assert await stack.count(ProviderEvent) == 4


async def test_return_and_webhook_racing_make_exactly_one_paid_transition_each_round(
    powens_stack: Stack,
) -> None:
    stack = powens_stack
    rounds = await stack.powens_paying_orders(100)
    for order, session in rounds:
        # The payer confirms: the validating and done webhooks leave now, and the browser comes
        # back while they land and the service's inbox worker processes them.
        back = await stack.powens_complete(session["provider_session_id"], "validate", "done")
        assert back is not None
        callback, _ = await asyncio.gather(stack.follow_callback(back), stack.flush_webhooks())
        assert query_of(callback.headers["location"]) == {"order_id": order["id"], "status": "paid"}
        await stack.settle()
        assert await paid_transitions(stack, order["id"]) == 1
    assert await stack.count(OrderTransition, OrderTransition.to_status == "paid") == 100
    assert await stack.count(ProviderEvent, ProviderEvent.processed_at.is_(None)) == 0


async def test_many_rounds_racing_concurrently(powens_stack: Stack) -> None:
    stack = powens_stack
    rounds = await stack.powens_paying_orders(20)
    backs = await asyncio.gather(
        *(stack.powens_complete(s["provider_session_id"], "validate", "done") for _, s in rounds)
    )
    await asyncio.gather(*(stack.follow_callback(str(b)) for b in backs), stack.settle())
    await stack.settle()
    for order, _ in rounds:
        assert [t[1] for t in await stack.transitions(order["id"])] == ["pending", "awaiting_payment", "paid"]


async def test_a_forged_return_is_refused_without_a_write(powens_stack: Stack) -> None:
    stack = powens_stack
    mine, my_session = await stack.powens_paying_order()
    theirs, their_session = await stack.powens_paying_order()
    other, other_session = await stack.paying_order()  # a Fintecture session in the same stack
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.powens_complete(my_session["provider_session_id"], "validate", "done")
    assert back is not None
    await stack.powens_complete(their_session["provider_session_id"], "validate", "done")
    before = await stack.table_counts()
    reads_before = len(await stack.api_requests())

    fintecture_state = (await session_row(stack, other_session["session_id"])).state_token
    for url in (
        with_params(back, id_payment=their_session["provider_session_id"]),  # their payment, my state
        with_params(back, state=fintecture_state),  # a Fintecture session's state, my payment
        with_params(back, state="x" + query_of(back)["state"]),
        with_params(back, id_payment=None),
        with_params(back, state=None),
        with_params(back, id_payment="not-a-payment"),
    ):
        result = await stack.follow_callback(url)
        assert result.status_code == 400, url
        assert "could not recognise this payment link" in result.text
    assert await stack.table_counts() == before
    assert len(await stack.api_requests()) == reads_before  # nobody was asked about anything
    for order in (mine, theirs, other):
        assert await stack.order_status(order["id"]) == "awaiting_payment"


# --- Webhook authentication ---------------------------------------------------------------------


def _drop(name: str) -> Callable[[Stack, str, bytes], tuple[dict[str, str], bytes]]:
    def variant(stack: Stack, payment_id: str, body: bytes) -> tuple[dict[str, str], bytes]:
        headers = signed_headers(stack.powens_webhook_secret, body)
        return {k: v for k, v in headers.items() if k != name}, body

    return variant


def _body_byte_changed(stack: Stack, payment_id: str, body: bytes) -> tuple[dict[str, str], bytes]:
    headers = signed_headers(stack.powens_webhook_secret, body)
    changed = body.replace(b'"state":"done"', b'"state":"donE"', 1)
    assert changed != body and len(changed) == len(body)
    return headers, changed


def _signed_for_another_path(stack: Stack, payment_id: str, body: bytes) -> tuple[dict[str, str], bytes]:
    return signed_headers(stack.powens_webhook_secret, body, path="/webhook"), body


def _dated(offset: int) -> Callable[[Stack, str, bytes], tuple[dict[str, str], bytes]]:
    def variant(stack: Stack, payment_id: str, body: bytes) -> tuple[dict[str, str], bytes]:
        at = datetime.now(UTC) + timedelta(seconds=offset)
        return signed_headers(stack.powens_webhook_secret, body, at=at), body

    return variant


def _wrong_secret(stack: Stack, payment_id: str, body: bytes) -> tuple[dict[str, str], bytes]:
    return signed_headers("not-" + stack.powens_webhook_secret, body), body


def _garbage_signature(stack: Stack, payment_id: str, body: bytes) -> tuple[dict[str, str], bytes]:
    headers = signed_headers(stack.powens_webhook_secret, body)
    return {**headers, "BI-Signature": "bm90IGEgc2lnbmF0dXJl"}, body


TAMPERED: dict[str, Callable[[Stack, str, bytes], tuple[dict[str, str], bytes]]] = {
    "body byte changed": _body_byte_changed,
    "signed for another path": _signed_for_another_path,
    "date too old": _dated(-601),
    "date too new": _dated(601),
    "wrong secret": _wrong_secret,
    "missing signature": _drop("BI-Signature"),
    "missing date": _drop("BI-Signature-Date"),
    "garbage signature": _garbage_signature,
}


@pytest.mark.parametrize("variant", list(TAMPERED))
async def test_tampered_webhook_is_refused_and_writes_nothing(powens_stack: Stack, variant: str) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    payment_id = session["provider_session_id"]
    await stack.faults(webhook_drop={"count": 100})
    await stack.powens_drive(payment_id, "done")  # were the delivery applied, the order would be paid
    before = await stack.table_counts()

    headers, body = TAMPERED[variant](stack, payment_id, payment_body(payment_id))
    response = await post_powens_webhook(stack, body, headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_signature"
    await stack.service.state.workers.drain_inbox()
    assert await stack.table_counts() == before
    assert await stack.order_status(order["id"]) == "awaiting_payment"


async def test_authentic_delivery_is_applied_once_and_replays_are_ignored(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    payment_id = session["provider_session_id"]
    await stack.faults(webhook_drop={"count": 100})
    await stack.powens_drive(payment_id, "done")

    body = payment_body(payment_id)
    headers = signed_headers(stack.powens_webhook_secret, body)
    first = await post_powens_webhook(stack, body, headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "duplicate": False}
    replay = await post_powens_webhook(stack, body, signed_headers(stack.powens_webhook_secret, body))
    assert replay.status_code == 200
    assert replay.json() == {"received": True, "duplicate": True}
    await stack.settle()
    assert await stack.count(ProviderEvent) == 1
    assert await stack.order_status(order["id"]) == "paid"
    assert (await stack.transitions(order["id"]))[-1] == ("awaiting_payment", "paid", "webhook")


async def test_gzip_delivery_signed_over_its_json_is_accepted_and_applied(powens_stack: Stack) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    payment_id = session["provider_session_id"]
    await stack.faults(webhook_drop={"count": 100})
    await stack.powens_drive(payment_id, "done")
    before = await stack.table_counts()

    payload = payment_body(payment_id)
    compressed = gzip.compress(payload)
    headers = {**signed_headers(stack.powens_webhook_secret, payload), "Content-Encoding": "gzip"}
    # The same signature over the compressed bytes is not Powens's: refused.
    wrong = {
        **signed_headers(stack.powens_webhook_secret, compressed),
        "Content-Encoding": "gzip",
    }
    refused = await post_powens_webhook(stack, compressed, wrong)
    assert refused.status_code == 401
    assert await stack.table_counts() == before

    response = await post_powens_webhook(stack, compressed, headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    assert (await stack.transitions(order["id"]))[-1] == ("awaiting_payment", "paid", "webhook")
    async with stack.sessionmaker() as db:
        event = (await db.scalars(select(ProviderEvent))).one()
    assert event.raw_body == compressed  # kept byte for byte, as received
    assert event.provider == "powens" and event.provider_session_id == payment_id


async def test_the_simulators_gzip_webhooks_settle_the_order(stack_factory: StackFactory) -> None:
    stack = await stack_factory(powens=True, powens_app_overrides={"webhook_gzip": True})
    order, session = await stack.powens_paying_order()
    await stack.powens_complete(session["provider_session_id"], "validate", "done")  # no callback
    await stack.settle()
    deliveries = await stack.deliveries(session["provider_session_id"])
    assert {d["content_encoding"] for d in deliveries} == {"gzip"}
    assert all(d["attempts"][0]["status_code"] == 200 for d in deliveries)
    assert await stack.order_status(order["id"]) == "paid"
    assert (await stack.transitions(order["id"]))[-1] == ("awaiting_payment", "paid", "webhook")

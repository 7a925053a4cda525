"""Outbound events end to end: the writers record them with their transitions, the dispatcher delivers
them signed per Standard Webhooks to a live receiver that verifies them with the `standardwebhooks`
library, the operator reads and replays them; and the replay of stored provider webhooks.

Everything runs over real HTTP on 127.0.0.1 and on the test session's PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.db import transaction
from app.events.dispatcher import OutboxDispatcher
from app.models import (
    DeliveryStatus,
    OutboundDelivery,
    OutboundEvent,
    ProviderEvent,
    TransitionSource,
)
from app.payments import writer
from app.providers.base import PaymentSnapshot, PaymentStatus
from tests.e2e.conftest import Stack, StackFactory
from tests.support.webhook_receiver import Receiver, new_secret, running_receiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAID = "273.50"  # the stack's default order: two lamps at 136.75 EUR


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        yield receiver


@asynccontextmanager
async def dispatcher_for(
    stack: Stack, *receivers: Receiver, **options: Any
) -> AsyncIterator[OutboxDispatcher]:
    values: dict[str, Any] = {"retry_base": 0.05, "retry_max": 0.2, "poll_seconds": 0.02, "timeout": 5.0}
    values.update(options)
    dispatcher = OutboxDispatcher(stack.sessionmaker, {r.url: r.secret for r in receivers}, **values)
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


async def pending(stack: Stack) -> int:
    unrouted = await stack.count(OutboundEvent, OutboundEvent.routed_at.is_(None))
    return unrouted + await stack.count(OutboundDelivery, OutboundDelivery.status == DeliveryStatus.PENDING)


async def deliver_all(stack: Stack, *dispatchers: OutboxDispatcher, timeout: float = 10.0) -> None:
    """Run the dispatchers' passes side by side until nothing is pending (back-offs included)."""
    deadline = time.monotonic() + timeout
    while True:
        await asyncio.gather(*(d.drain() for d in dispatchers))
        left = await pending(stack)
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} deliveries still pending after {timeout}s"
        await asyncio.sleep(0.02)


def snapshot(session: dict[str, Any], status: PaymentStatus, raw: str) -> PaymentSnapshot:
    return PaymentSnapshot(
        provider="fintecture",
        provider_session_id=session["provider_session_id"],
        status=status,
        raw_status=raw,
        transfer_state=None,
        amount=Decimal(PAID),
        currency="EUR",
        communication=None,
    )


async def move(stack: Stack, session: dict[str, Any], status: PaymentStatus, raw: str) -> None:
    """The operator's path through the one writer, committed."""
    async with transaction(stack.sessionmaker) as db:
        result = await writer.apply(
            db,
            uuid.UUID(session["session_id"]),
            snapshot(session, status, raw),
            source=TransitionSource.OPERATOR,
            observed_at=datetime.now(UTC),
        )
        assert result.order_changed


async def event_types(stack: Stack, order_id: str) -> list[str]:
    async with stack.sessionmaker() as db:
        rows = await db.scalars(
            select(OutboundEvent.type)
            .where(OutboundEvent.order_id == uuid.UUID(order_id))
            .order_by(OutboundEvent.id)
        )
        return list(rows)


async def operator_event(stack: Stack, webhook_id: str) -> dict[str, Any]:
    response = await stack.http.get(f"{stack.service_url}/events/outbound/{webhook_id}", headers=stack.admin)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- recorded with the transition ------------------------------------------------------------------


async def test_an_event_is_written_with_its_transition_and_never_without(stack: Stack) -> None:
    order, session = await stack.paying_order()
    assert await event_types(stack, order["id"]) == ["order.awaiting_payment"]

    # The transition rolled back: its event goes with it.
    async with stack.sessionmaker() as db:
        result = await writer.apply(
            db,
            uuid.UUID(session["session_id"]),
            snapshot(session, PaymentStatus.SUCCEEDED, "payment_created"),
            source=TransitionSource.OPERATOR,
            observed_at=datetime.now(UTC),
        )
        assert result.order_changed
        seen = await db.scalar(
            select(func.count()).select_from(OutboundEvent).where(OutboundEvent.type == "order.paid")
        )
        assert seen == 1  # in the writer's transaction...
        await db.rollback()
    assert await event_types(stack, order["id"]) == ["order.awaiting_payment"]  # ...and gone with it
    assert await stack.order_status(order["id"]) == "awaiting_payment"

    await move(stack, session, PaymentStatus.PROCESSING, "payment_pending")
    await move(stack, session, PaymentStatus.SUCCEEDED, "payment_created")
    assert await event_types(stack, order["id"]) == [
        "order.awaiting_payment",
        "order.processing",
        "order.paid",
    ]
    # One event per move of the order, in the order of the moves.
    moves = [t for t in await stack.transitions(order["id"]) if t[0] is not None]
    assert [f"order.{to}" for _, to, _ in moves] == await event_types(stack, order["id"])
    async with stack.sessionmaker() as db:
        paid = await db.scalar(select(OutboundEvent).where(OutboundEvent.type == "order.paid"))
    assert paid is not None and paid.stream == f"order:{order['id']}"
    assert paid.data == {
        "order_id": order["id"],
        "reference": order["reference"],
        "status": "paid",
        "previous_status": "processing",
        "amount": 27350,
        "currency": "EUR",
        "payment_session_id": session["session_id"],
        "refund_id": None,
        "reason": None,
        "source": "operator",
    }


async def test_refunds_and_payouts_record_their_own_events(stack: Stack) -> None:
    order, session = await stack.paying_order()
    await stack.drive(session["provider_session_id"], "payment_created", "completed")
    await stack.settle()
    created = await stack.http.post(
        f"{stack.service_url}/orders/{order['id']}/refunds", headers=stack.admin, json={"amount": 10000}
    )
    assert created.status_code == 201, created.text
    refund = created.json()
    await stack.drive(refund["provider_refund_id"], "payment_created", "completed")
    await stack.settle()
    assert await event_types(stack, order["id"]) == [
        "order.awaiting_payment",
        "order.paid",
        "refund.open",
        "refund.succeeded",
        "order.partially_refunded",
    ]
    async with stack.sessionmaker() as db:
        done = await db.scalar(select(OutboundEvent).where(OutboundEvent.type == "refund.succeeded"))
    assert done is not None and done.stream == f"order:{order['id']}"  # in the order's stream
    assert (done.data["refund_id"], done.data["amount"], done.data["previous_status"]) == (
        refund["id"],
        10000,
        "open",
    )

    payout = await stack.http.post(
        f"{stack.service_url}/payouts",
        headers=stack.admin,
        json={
            "amount": 2699,
            "currency": "EUR",
            "reference": "SELLER-42",
            "communication": "Payout November",
            "payee": {"name": "John Doe", "email": "john@example.com"},
        },
    )
    assert payout.status_code == 201, payout.text
    async with stack.sessionmaker() as db:
        rows = (
            await db.scalars(
                select(OutboundEvent).where(OutboundEvent.payout_id == uuid.UUID(payout.json()["id"]))
            )
        ).all()
    assert [(e.type, e.stream, e.data["previous_status"]) for e in rows] == [
        ("payout.awaiting_payee", f"payout:{payout.json()['id']}", "creating")
    ]


# --- delivery ---------------------------------------------------------------------------------------


async def test_a_paid_order_delivers_order_paid_signed_per_standard_webhooks(
    stack_factory: StackFactory, receiver: Receiver
) -> None:
    stack = await stack_factory(
        merchant_webhook_urls={receiver.url: receiver.secret}, merchant_webhook_poll_seconds=0.05
    )
    order, session = await stack.paying_order()
    back = await stack.complete(session["provider_session_id"], "confirm")
    await stack.follow_callback(back)
    deadline = time.monotonic() + 10
    while "order.paid" not in receiver.accepted_of(order["id"]):
        assert time.monotonic() < deadline, receiver.received
        await asyncio.sleep(0.05)

    assert receiver.accepted_of(order["id"]) == ["order.awaiting_payment", "order.paid"]
    assert all(r.payload is not None for r in receiver.received)  # every one verified
    paid = next(r for r in receiver.received if r.event_type == "order.paid")
    assert paid.payload is not None
    assert paid.payload["version"] == 1 and paid.payload["type"] == "order.paid"
    assert paid.payload["id"] == paid.webhook_id and paid.webhook_id.startswith("evt_")
    assert paid.payload["data"]["status"] == "paid" and paid.payload["data"]["amount"] == 27350
    assert abs(int(paid.headers["webhook-timestamp"]) - time.time()) < 60
    assert paid.headers["content-type"] == "application/json"
    # The library refuses what was not signed with this secret, or was changed on the way.
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(paid.body, paid.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(paid.body.replace(b"27350", b"1"), paid.headers)

    # The receiver answered; the dispatcher records it right after.
    while (await operator_event(stack, paid.webhook_id))["deliveries"][0]["status"] == "pending":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    [delivery] = (await operator_event(stack, paid.webhook_id))["deliveries"]
    assert (delivery["endpoint_url"], delivery["status"], delivery["attempts"]) == (
        receiver.url,
        "delivered",
        1,
    )
    assert [a["status_code"] for a in delivery["attempt_log"]] == [200]


async def test_a_failing_endpoint_is_retried_with_back_off_then_succeeds(
    stack: Stack, receiver: Receiver
) -> None:
    order, _ = await stack.paying_order()
    answers = [500, 503]
    receiver.answer = lambda _payload: answers.pop(0) if answers else 200
    async with dispatcher_for(stack, receiver, retry_base=0.2, retry_max=0.3) as dispatcher:
        assert [dispatcher.retry_in(n).total_seconds() for n in (1, 2, 3, 10)] == [0.2, 0.3, 0.3, 0.3]
        await deliver_all(stack, dispatcher)

    attempts = receiver.received
    assert [r.answered for r in attempts] == [500, 503, 200]
    assert len({r.webhook_id for r in attempts}) == 1  # the same event every time
    assert attempts[1].at - attempts[0].at >= 0.2 and attempts[2].at - attempts[1].at >= 0.3
    assert receiver.accepted_of(order["id"]) == ["order.awaiting_payment"]  # accepted once
    delivery = (await operator_event(stack, attempts[0].webhook_id))["deliveries"][0]
    assert (delivery["status"], delivery["attempts"], delivery["last_error"]) == ("delivered", 3, None)
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 200]


async def test_an_endpoint_that_is_down_gets_each_orders_events_later_in_order(
    stack: Stack, receiver: Receiver
) -> None:
    first, first_session = await stack.paying_order()
    await move(stack, first_session, PaymentStatus.PROCESSING, "payment_pending")
    await move(stack, first_session, PaymentStatus.SUCCEEDED, "payment_created")
    second, _ = await stack.paying_order()
    down = True
    receiver.answer = lambda _payload: 503 if down else 200
    async with dispatcher_for(stack, receiver, retry_base=0.05, retry_max=0.1) as dispatcher:
        await dispatcher.drain()
        # Only the head of each order's stream was tried (maybe more than once, its back-off being
        # short): a later event waits for the earlier one.
        assert {r.event_type for r in receiver.received} == {"order.awaiting_payment"}
        assert {json.loads(r.body)["data"]["order_id"] for r in receiver.received} == {
            first["id"],
            second["id"],
        }
        for _ in range(3):
            await asyncio.sleep(0.1)
            await dispatcher.drain()
        assert {r.event_type for r in receiver.received} == {"order.awaiting_payment"}
        down = False
        await deliver_all(stack, dispatcher)

    assert receiver.accepted_of(first["id"]) == ["order.awaiting_payment", "order.processing", "order.paid"]
    assert receiver.accepted_of(second["id"]) == ["order.awaiting_payment"]
    # Exactly once per successful delivery.
    accepted_ids = [p["id"] for p in receiver.accepted]
    assert len(accepted_ids) == len(set(accepted_ids)) == 4


async def test_an_event_that_keeps_failing_is_parked_frees_its_stream_and_can_be_replayed(
    stack: Stack, receiver: Receiver
) -> None:
    order, session = await stack.paying_order()
    await move(stack, session, PaymentStatus.SUCCEEDED, "payment_created")
    refusing = True
    receiver.answer = lambda p: 500 if refusing and p["type"] == "order.awaiting_payment" else 200
    async with dispatcher_for(stack, receiver, max_attempts=3) as dispatcher:
        await deliver_all(stack, dispatcher)
        assert [r.answered for r in receiver.received if r.event_type == "order.awaiting_payment"] == [
            500
        ] * 3
        # Parked, so the order's next event went on.
        assert receiver.accepted_of(order["id"]) == ["order.paid"]

        listed = await stack.http.get(
            f"{stack.service_url}/events/outbound", params={"delivery_status": "parked"}, headers=stack.admin
        )
        assert listed.status_code == 200, listed.text
        [parked] = listed.json()["items"]
        assert parked["type"] == "order.awaiting_payment"
        assert parked["deliveries"][0]["status"] == "parked"
        assert parked["deliveries"][0]["last_error"].startswith("HTTP 500")

        refusing = False
        replay = await stack.http.post(
            f"{stack.service_url}/events/outbound/replay-parked", headers=stack.admin
        )
        assert replay.status_code == 200, replay.text
        assert replay.json() == {"replayed": 1}
        await deliver_all(stack, dispatcher)
        assert receiver.accepted_of(order["id"]) == ["order.paid", "order.awaiting_payment"]
        again = await stack.http.post(
            f"{stack.service_url}/events/outbound/replay-parked", headers=stack.admin
        )
        assert again.json() == {"replayed": 0}

        # One event, sent again on request with the same webhook-id (receivers deduplicate on it).
        paid_id = next(r.webhook_id for r in receiver.received if r.event_type == "order.paid")
        one = await stack.http.post(
            f"{stack.service_url}/events/outbound/{paid_id}/replay", headers=stack.admin
        )
        assert one.status_code == 200, one.text
        assert one.json() == {"replayed": 1}
        await deliver_all(stack, dispatcher)
    assert [r.webhook_id for r in receiver.received if r.event_type == "order.paid"] == [paid_id, paid_id]
    assert (await operator_event(stack, paid_id))["deliveries"][0]["attempts"] == 1  # a fresh count


async def test_two_dispatchers_deliver_each_event_once_and_in_order(stack: Stack, receiver: Receiver) -> None:
    orders = []
    for _ in range(6):
        order, session = await stack.paying_order()
        await move(stack, session, PaymentStatus.PROCESSING, "payment_pending")
        await move(stack, session, PaymentStatus.SUCCEEDED, "payment_created")
        orders.append(order)
    async with (
        dispatcher_for(stack, receiver, concurrency=3) as one,
        dispatcher_for(stack, receiver, concurrency=3) as two,
    ):
        await deliver_all(stack, one, two)

    ids = [r.webhook_id for r in receiver.received]
    assert len(ids) == len(set(ids)) == 18  # each event once, none twice
    for order in orders:
        assert receiver.accepted_of(order["id"]) == [
            "order.awaiting_payment",
            "order.processing",
            "order.paid",
        ]


async def test_each_endpoint_gets_every_event_with_its_own_signature(
    stack: Stack, receiver: Receiver
) -> None:
    order, _ = await stack.paying_order()
    async with running_receiver() as second:
        async with dispatcher_for(stack, receiver, second) as dispatcher:
            await deliver_all(stack, dispatcher)
        assert (
            receiver.accepted_of(order["id"]) == second.accepted_of(order["id"]) == ["order.awaiting_payment"]
        )
        assert receiver.received[0].webhook_id == second.received[0].webhook_id
        assert (
            receiver.received[0].headers["webhook-signature"]
            != second.received[0].headers["webhook-signature"]
        )


# --- the operator API ------------------------------------------------------------------------------


async def test_operator_endpoints_need_the_key_and_page_through_events(stack: Stack) -> None:
    base = f"{stack.service_url}/events"
    for method, path in (
        ("GET", "/outbound"),
        ("GET", "/outbound/evt_x"),
        ("POST", "/outbound/evt_x/replay"),
        ("POST", "/outbound/replay-parked"),
        ("POST", "/inbound/replay"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789abcdef"}):
            response = await stack.http.request(
                method, base + path, headers=headers, json={"outcome": "applied"}
            )
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "unauthorized"

    for method, path in (("GET", "/outbound/evt_missing"), ("POST", "/outbound/evt_missing/replay")):
        response = await stack.http.request(method, base + path, headers=stack.admin)
        assert response.status_code == 404
        assert response.json()["error"] == {"code": "not_found", "message": "event not found"}

    orders = [(await stack.paying_order())[0] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "type": "order.awaiting_payment"}
        if cursor:
            params["cursor"] = cursor
        page = await stack.http.get(f"{base}/outbound", params=params, headers=stack.admin)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [item["order_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [o["id"] for o in reversed(orders)]  # newest first, each once
    assert all(not item["routed"] and item["deliveries"] == [] for item in body["items"])

    only = await stack.http.get(f"{base}/outbound", params={"order_id": orders[0]["id"]}, headers=stack.admin)
    assert [item["order_id"] for item in only.json()["items"]] == [orders[0]["id"]]
    none = await stack.http.get(f"{base}/outbound", params={"type": "order.paid"}, headers=stack.admin)
    assert none.json() == {"items": [], "next_cursor": None}

    bad = await stack.http.get(f"{base}/outbound", params={"cursor": "not-a-cursor"}, headers=stack.admin)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_cursor"
    bad = await stack.http.get(f"{base}/outbound", params={"delivery_status": "lost"}, headers=stack.admin)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    for params in ({"type": "order\x00paid"}, {"limit": 0}, {"order_id": "42"}):
        bad = await stack.http.get(f"{base}/outbound", params=params, headers=stack.admin)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error", params
    for body in ({"event_ids": [2**70]}, {"provider": "fin\x00tecture"}, {"outcome": "lost"}, {"nope": 1}):
        bad = await stack.http.post(f"{base}/inbound/replay", json=body, headers=stack.admin)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error", body
    # Not sent yet: nothing to replay.
    unsent = seen[0]
    event_id = (
        await stack.http.get(f"{base}/outbound", params={"order_id": unsent}, headers=stack.admin)
    ).json()["items"][0]["id"]
    conflict = await stack.http.post(f"{base}/outbound/{event_id}/replay", headers=stack.admin)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "event_not_routed"


# --- replaying stored provider webhooks ----------------------------------------------------------


async def test_replaying_provider_webhooks_reapplies_nothing_twice(stack: Stack) -> None:
    order, session = await stack.paying_order()
    await stack.drive(session["provider_session_id"], "payment_created", "completed")
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    stored = await stack.count(ProviderEvent)
    assert stored >= 1
    before = (await stack.transitions(order["id"]), await event_types(stack, order["id"]))
    reads = len([r for r in await stack.api_requests() if r["method"] == "GET"])

    url = f"{stack.service_url}/events/inbound/replay"
    empty = await stack.http.post(url, headers=stack.admin, json={})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "validation_error"
    assert await stack.count(ProviderEvent, ProviderEvent.processed_at.is_(None)) == 0  # nothing reset

    replay = await stack.http.post(
        url, headers=stack.admin, json={"provider": "fintecture", "outcome": "applied"}
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["replayed"] == stored
    await stack.settle()
    assert await stack.count(ProviderEvent, ProviderEvent.processed_at.is_(None)) == 0
    assert len([r for r in await stack.api_requests() if r["method"] == "GET"]) > reads  # read again
    assert (await stack.transitions(order["id"]), await event_types(stack, order["id"])) == before
    assert await stack.order_status(order["id"]) == "paid"


async def test_checkout_events_replay_makes_stored_webhooks_due_again(stack: Stack, tmp_path: Any) -> None:
    order, session = await stack.paying_order()
    await stack.drive(session["provider_session_id"], "payment_created", "completed")
    await stack.settle()
    async with stack.sessionmaker() as db:
        ids = sorted((await db.scalars(select(ProviderEvent.id))).all())
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": stack.settings.database_url,
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "events", "replay", "--provider", "fintecture", "--since", since],
        cwd=tmp_path,  # no .env there
        env={**env, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"replayed": len(ids), "event_ids": ids}
    assert await stack.count(ProviderEvent, ProviderEvent.processed_at.is_(None)) == len(ids)
    before = await stack.transitions(order["id"])
    await stack.settle()
    assert await stack.transitions(order["id"]) == before

    refused = subprocess.run(
        [sys.executable, "-m", "app.cli", "events", "replay"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "name the events to replay" in refused.stderr

"""The service is killed with SIGKILL while its outbound events are on the wire to the merchant's
endpoint, and started again. Every `order.paid` still arrives, each order's events arrive in order,
every event id is delivered successfully at least once, and an event arrives twice only when its
delivery was in flight at the kill.

The merchant's endpoint is a live app in the test that verifies every delivery with the
`standardwebhooks` library and takes a moment to answer, so a kill finds deliveries mid-request.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.models import DeliveryStatus, OutboundDelivery, OutboundEvent
from tests.support.process_stack import ProcessStack, process_stack
from tests.support.servers import reserve_socket, serve
from tests.support.webhook_receiver import new_secret

ORDERS = 8
ANSWER_DELAY = 0.3  # seconds the endpoint takes to answer: deliveries are on the wire for that long


@dataclass
class Endpoint:
    secret: str = field(default_factory=new_secret)
    arrived: list[tuple[str, float]] = field(default_factory=list)  # (webhook id, when), verified only
    accepted: list[dict[str, Any]] = field(default_factory=list)  # payloads answered 200, in order
    in_flight: set[str] = field(default_factory=set)
    forged: int = 0

    def app(self) -> Starlette:
        verifier = Webhook(self.secret)

        async def hooks(request: Request) -> Response:
            body = await request.body()
            try:
                payload = verifier.verify(body, dict(request.headers))
            except WebhookVerificationError:
                self.forged += 1
                return Response(status_code=400)
            webhook_id = request.headers["webhook-id"]
            self.arrived.append((webhook_id, time.monotonic()))
            self.in_flight.add(webhook_id)
            try:
                await asyncio.sleep(ANSWER_DELAY)
            finally:
                self.in_flight.discard(webhook_id)
            # Processed here, as a merchant would, whether or not the sender lives to read the 200.
            self.accepted.append(payload)
            return Response(status_code=200)

        return Starlette(routes=[Route("/hooks", hooks, methods=["POST"])])

    def paid(self) -> set[str]:
        return {p["data"]["order_id"] for p in self.accepted if p["type"] == "order.paid"}


async def _recorded_events(stack: ProcessStack) -> dict[str, list[tuple[str, str]]]:
    """Each order's events as the service recorded them, in order: (webhook id, type)."""
    async with stack.sessionmaker() as db:
        rows = await db.execute(
            select(OutboundEvent.order_id, OutboundEvent.webhook_id, OutboundEvent.type).order_by(
                OutboundEvent.id
            )
        )
        events: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
        for order_id, webhook_id, event_type in rows:
            events[str(order_id)].append((webhook_id, event_type))
        return events


async def _unfinished(stack: ProcessStack) -> set[str]:
    """Webhook ids whose delivery the service had not recorded as delivered."""
    async with stack.sessionmaker() as db:
        rows = await db.scalars(
            select(OutboundEvent.webhook_id)
            .join(OutboundDelivery, OutboundDelivery.event_id == OutboundEvent.id, isouter=True)
            .where(
                (OutboundDelivery.status.is_(None)) | (OutboundDelivery.status != DeliveryStatus.DELIVERED)
            )
        )
        return set(rows)


async def test_kill_9_mid_delivery_loses_no_outbound_event(database_url: str, clean_database: str) -> None:
    endpoint = Endpoint()
    async with serve(endpoint.app(), reserve_socket()) as endpoint_url:
        url = f"{endpoint_url}/hooks"
        async with process_stack(
            database_url,
            MERCHANT_WEBHOOK_URLS=json.dumps({url: endpoint.secret}),
            MERCHANT_WEBHOOK_TIMEOUT_SECONDS="2",  # the lease is then 7 s: a dead process's claims end soon
            MERCHANT_WEBHOOK_LEASE_SECONDS="5",
            MERCHANT_WEBHOOK_RETRY_BASE_SECONDS="0.2",
            MERCHANT_WEBHOOK_RETRY_MAX_SECONDS="1",
            INBOX_POLL_SECONDS="0.1",
            SWEEPER_INTERVAL_SECONDS="3600",
        ) as stack:
            await stack.put_product()
            sessions = [await stack.paying_order() for _ in range(ORDERS)]
            orders = [order["id"] for order, _ in sessions]

            async def pay(session: dict[str, Any]) -> None:
                back = await stack.complete(session["provider_session_id"], "confirm")
                await stack.http.get(back, follow_redirects=False)

            await asyncio.gather(*(pay(session) for _, session in sessions))
            # Kill while order.paid events are being delivered: some arrived, some on the wire.
            deadline = time.monotonic() + 30
            while not (endpoint.in_flight and len(endpoint.paid()) >= 2):
                assert time.monotonic() < deadline, "no delivery in flight with order.paid flowing"
                await asyncio.sleep(0.005)
            on_the_wire = set(endpoint.in_flight)
            # Counted at the kill: what was on the wire then may still be accepted after it.
            paid_at_kill = len(endpoint.paid())
            stack.service.kill()
            killed_at = time.monotonic()
            unfinished_at_kill = await _unfinished(stack)
            paid_before_restart = len(endpoint.paid())
            await asyncio.sleep(0.5)
            await stack.service.start()

            deadline = time.monotonic() + 60
            while endpoint.paid() != set(orders) or await _unfinished(stack):
                assert time.monotonic() < deadline, (len(endpoint.paid()), await _unfinished(stack))
                await asyncio.sleep(0.1)
            await asyncio.sleep(ANSWER_DELAY * 2)  # anything still arriving is counted below
            recorded = await _recorded_events(stack)

    arrivals = collections.Counter(webhook_id for webhook_id, _ in endpoint.arrived)
    accepted = collections.Counter(p["id"] for p in endpoint.accepted)
    duplicates = {webhook_id for webhook_id, count in accepted.items() if count > 1}
    print(
        "\ndispatcher crash:",
        json.dumps(
            {
                "orders": ORDERS,
                "events": sum(len(events) for events in recorded.values()),
                "on_the_wire_at_kill": len(on_the_wire),
                "unfinished_at_kill": len(unfinished_at_kill),
                "order_paid_at_kill": paid_at_kill,
                "order_paid_before_restart": paid_before_restart,
                "arrivals": sum(arrivals.values()),
                "duplicates": len(duplicates),
            }
        ),
    )
    assert endpoint.forged == 0
    assert on_the_wire and paid_at_kill < ORDERS  # the kill did interrupt deliveries
    every_id = {webhook_id for events in recorded.values() for webhook_id, _ in events}
    # Every event was delivered successfully at least once...
    assert set(accepted) == every_id
    # ...and twice only when the kill caught its delivery unfinished, having reached the endpoint.
    first_arrival = {webhook_id: at for webhook_id, at in reversed(endpoint.arrived)}
    assert duplicates <= unfinished_at_kill, duplicates - unfinished_at_kill
    assert all(first_arrival[webhook_id] < killed_at for webhook_id in duplicates)
    # Each order's events arrived in the order they were recorded (first arrivals), ending paid.
    for order_id in orders:
        seen: list[str] = []
        for payload in endpoint.accepted:
            if payload["data"].get("order_id") == order_id and payload["id"] not in seen:
                seen.append(payload["id"])
        assert seen == [webhook_id for webhook_id, _ in recorded[order_id]], order_id
        assert recorded[order_id][-1][1] == "order.paid"

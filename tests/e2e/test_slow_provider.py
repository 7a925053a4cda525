"""No provider call runs inside a database transaction: a slow provider never drains the pool,
never blocks other orders, and a double click still opens one session at the provider."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from app.models import OrderTransition, PaymentSession
from app.orders.states import OrderStatus
from app.providers.base import PaymentStatus
from tests.e2e.conftest import Stack, StackFactory, query_of

SLOW = 4.5  # seconds the simulated provider takes to answer each API call


async def test_a_double_click_while_the_provider_is_slow_opens_one_session(stack: Stack) -> None:
    order = await stack.create_order()
    await stack.faults(api_latency={"seconds": 1.0, "path_prefix": "/pis/v2/connect"})
    first, second = await asyncio.gather(stack.open_session(order), stack.open_session(order))
    assert sorted((first.status_code, second.status_code)) == [200, 201]
    assert first.json()["session_id"] == second.json()["session_id"]
    assert first.json()["connect_url"] == second.json()["connect_url"]
    connects = [r for r in await stack.api_requests() if r["path"].startswith("/pis/v2/connect")]
    assert len(connects) == 1
    assert await stack.count(PaymentSession) == 1
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
    ]


async def test_a_refused_session_leaves_the_order_pending_and_payable(stack: Stack) -> None:
    order = await stack.create_order()
    await stack.faults(api_error={"status": 500, "count": 10, "path_prefix": "/pis/v2/connect"})
    refused = await stack.open_session(order)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "provider_unavailable"
    assert await stack.order_status(order["id"]) == "pending"
    assert (await stack.order(order["id"]))["payment"] is None
    async with stack.sessionmaker() as db:
        reservation = (await db.scalars(select(PaymentSession))).one()
    assert reservation.status is PaymentStatus.FAILED and reservation.provider_session_id is None
    assert reservation.last_sync_error

    await stack.faults(api_error={"status": 500, "count": 0})
    retry = await stack.open_session(order)
    assert retry.status_code == 201
    assert await stack.order_status(order["id"]) == "awaiting_payment"


async def test_a_reservation_abandoned_by_a_dead_process_is_failed_and_replaced(stack: Stack) -> None:
    """A process that died between reserving and attaching leaves a `creating` row: the next
    request (or the sweeper) fails it once it is older than any provider call can take."""
    order = await stack.create_order()
    async with stack.sessionmaker() as db, db.begin():
        db.add(
            PaymentSession(
                order_id=uuid.UUID(order["id"]),
                provider="fintecture",
                provider_session_id=None,
                state_token="state-of-a-dead-process",
                connect_url=None,
                amount=order["total_amount"],
                currency="EUR",
                communication=order["reference"],
                status=PaymentStatus.CREATING,
                expires_at=datetime.now(UTC) + timedelta(minutes=30),
                created_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
    opened = await stack.open_session(order)
    assert opened.status_code == 201
    async with stack.sessionmaker() as db:
        rows = {row.state_token: row for row in await db.scalars(select(PaymentSession))}
    assert rows["state-of-a-dead-process"].status is PaymentStatus.FAILED
    assert "abandoned" in (rows["state-of-a-dead-process"].last_sync_error or "")
    assert (
        str(next(r.id for r in rows.values() if r.status is PaymentStatus.OPEN))
        == opened.json()["session_id"]
    )

    # The sweeper does the same for a reservation nobody comes back to.
    async with stack.sessionmaker() as db, db.begin():
        await db.execute(
            update(PaymentSession)
            .where(PaymentSession.id == uuid.UUID(opened.json()["session_id"]))
            .values(status=PaymentStatus.CREATING, created_at=datetime.now(UTC) - timedelta(hours=1))
        )
    swept = await stack.service.state.workers.sweep()
    assert swept.abandoned == 1


async def test_a_slow_provider_with_a_small_pool_gives_no_5xx_and_stays_ready(
    stack_factory: StackFactory,
) -> None:
    """100 session opens, 100 callbacks and their webhooks at once while every provider call takes
    4.5 s, on a pool of 5 connections: every answer is a success, /readyz stays 200 throughout, and
    every order is paid exactly once."""
    stack = await stack_factory(
        database_pool_size=5,
        # Service, simulator and 300 clients share one event loop here, so the wait for a connection
        # is bound by that CPU. Holding connections through the 4.5 s provider calls would still
        # fail: 100 opens on 10 connections would take 45 s.
        database_pool_timeout_seconds=10,
        callback_provider_timeout_seconds=9,
        inbox_concurrency=50,
        provider_timeout_seconds=10,
    )
    orders = [await stack.create_order() for _ in range(100)]
    await stack.faults(api_latency={"seconds": SLOW})

    readiness: list[int] = []
    stop = asyncio.Event()

    async def watch_readiness() -> None:
        while not stop.is_set():
            response = await stack.http.get(f"{stack.service_url}/readyz")
            readiness.append(response.status_code)
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch_readiness())
    try:
        opened = await asyncio.gather(*(stack.open_session(order) for order in orders))
        assert [r.status_code for r in opened] == [201] * 100, {r.status_code: r.text for r in opened}
        sessions = [r.json() for r in opened]

        returns = await asyncio.gather(
            *(stack.complete(s["provider_session_id"], "confirm") for s in sessions)
        )
        callbacks = await asyncio.gather(*(stack.follow_callback(url) for url in returns))
        assert [r.status_code for r in callbacks] == [303] * 100
        shown = {query_of(r.headers["location"])["status"] for r in callbacks}
        assert shown <= {"paid", "processing"}, shown

        await stack.flush_webhooks()
        deliveries = await stack.deliveries()
        assert len(deliveries) >= 100
        codes = [a["status_code"] for d in deliveries for a in d["attempts"]]
        assert codes and all(code == 200 for code in codes), sorted(set(codes))
        await stack.settle(timeout=60)
    finally:
        stop.set()
        await watcher
    assert readiness and set(readiness) == {200}, readiness

    async with stack.sessionmaker() as db:
        paid = (
            (
                await db.execute(
                    select(OrderTransition.order_id).where(OrderTransition.to_status == OrderStatus.PAID)
                )
            )
            .scalars()
            .all()
        )
    assert sorted(str(order_id) for order_id in paid) == sorted(order["id"] for order in orders)


async def test_an_order_settled_while_a_new_session_opens_is_not_offered_again(stack: Stack) -> None:
    """The first session fails, the payer asks for a new one, and while the provider is opening it
    the first session succeeds after all: the new session is recorded (a payment on it would be
    seen) but the payer is not sent to pay twice."""
    order, first = await stack.paying_order()
    await stack.follow_callback(await stack.complete(first["provider_session_id"], "reject"))
    assert await stack.order_status(order["id"]) == "failed"

    await stack.faults(api_latency={"seconds": 1.5, "path_prefix": "/pis/v2/connect"})
    second = asyncio.create_task(stack.open_session(order))
    await asyncio.sleep(0.5)  # the second session is reserved and at the provider
    await stack.drive(first["provider_session_id"], "payment_created", "completed")
    synced = await stack.http.post(f"{stack.service_url}/orders/{order['id']}/sync", headers=stack.admin)
    assert synced.status_code == 200 and synced.json()["status"] == "paid"

    refused = await second
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "order_not_payable"
    assert await stack.order_status(order["id"]) == "paid"
    async with stack.sessionmaker() as db:
        sessions = list(await db.scalars(select(PaymentSession).order_by(PaymentSession.created_at)))
    assert [s.status for s in sessions] == [PaymentStatus.SUCCEEDED, PaymentStatus.OPEN]
    assert sessions[1].provider_session_id is not None

    again = await stack.open_session(order)  # a second click never gets the unused session either
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_not_payable"

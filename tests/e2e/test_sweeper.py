"""The sweeper: the polling fallback, safe with several service processes on one database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update

from app.db import create_engine, create_sessionmaker
from app.models import PaymentSession, ProviderEvent
from app.payments.workers import PaymentWorkers
from tests.e2e.conftest import Stack, StackFactory


async def test_two_processes_sweeping_check_each_session_once(stack_factory: StackFactory) -> None:
    stack = await stack_factory(sweeper_stale_after_seconds=30)
    await stack.faults(webhook_drop={"count": 1000})
    rounds = [await stack.paying_order() for _ in range(12)]
    for _, session in rounds:
        await stack.complete(session["provider_session_id"], "confirm")  # payer never returns
    async with stack.sessionmaker() as db, db.begin():  # opened a minute ago, never checked since
        await db.execute(update(PaymentSession).values(created_at=datetime.now(UTC) - timedelta(minutes=1)))

    # A second "process": its own engine and connection pool, the same database and provider.
    engine = create_engine(stack.settings.database_url, pool_size=4)
    try:
        other = PaymentWorkers(stack.settings, create_sessionmaker(engine), stack.service.state.providers)
        first, second = await asyncio.gather(stack.service.state.workers.sweep(), other.sweep())
    finally:
        await engine.dispose()

    assert first.claimed + second.claimed == 12
    assert first.changed + second.changed == 12
    polls = [
        r
        for r in await stack.api_requests()
        if r["method"] == "GET" and r["path"].startswith("/pis/v2/payments/")
    ]
    assert sorted(r["path"] for r in polls) == sorted(
        f"/pis/v2/payments/{s['provider_session_id']}" for _, s in rounds
    )
    for order, _ in rounds:
        assert (await stack.transitions(order["id"]))[-1] == ("awaiting_payment", "paid", "poll")


async def test_sweeper_leaves_recently_checked_sessions_alone(stack_factory: StackFactory) -> None:
    stack = await stack_factory(sweeper_stale_after_seconds=600)
    await stack.paying_order()
    result = await stack.service.state.workers.sweep()
    assert result.claimed == 0


async def test_session_the_provider_expires_expires_the_order(stack: Stack) -> None:
    order, _session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    await stack.http.post(f"{stack.simulator_url}/_sim/clock/advance", json={"seconds": 1801})
    await stack.sweep()
    assert await stack.order_status(order["id"]) == "expired"
    again = await stack.open_session(order)
    assert again.status_code == 201  # a fresh session may follow an expired one


async def test_session_still_open_at_the_provider_long_after_expiry_is_expired_locally(stack: Stack) -> None:
    order, session = await stack.paying_order()
    async with stack.sessionmaker() as db, db.begin():
        await db.execute(
            update(PaymentSession)
            .where(PaymentSession.id == uuid.UUID(session["session_id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=10))
        )
    await stack.sweep()
    detail = await stack.order(order["id"])
    assert detail["status"] == "expired"
    assert detail["transitions"][-1]["source"] == "poll"
    assert "after the session expired" in detail["transitions"][-1]["reason"]


async def test_provider_errors_are_recorded_and_retried_next_pass(stack: Stack) -> None:
    order, session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    await stack.complete(session["provider_session_id"], "confirm")
    await stack.faults(api_error={"status": 500, "count": 100, "path_prefix": "/pis/v2/payments"})
    result = await stack.service.state.workers.sweep()
    assert result.errors == 1
    async with stack.sessionmaker() as db:
        row = await db.get(PaymentSession, uuid.UUID(session["session_id"]))
        assert row is not None and row.sync_attempts == 1 and row.last_sync_error
    await stack.faults(api_error={"status": 500, "count": 0})
    await stack.sweep()
    assert await stack.order_status(order["id"]) == "paid"


async def test_one_failing_event_blocks_neither_the_inbox_nor_the_sweeper(
    stack_factory: StackFactory,
) -> None:
    """A database failure while applying one order's payment (here a trigger refusing updates to that
    order) is recorded on its inbox row and retried; every other event and session goes through."""
    stack = await stack_factory(workers_enabled=False)
    (stuck, stuck_session), (fine, fine_session) = await stack.paying_order(), await stack.paying_order()
    async with stack.sessionmaker() as db, db.begin():
        await db.execute(
            text(
                "CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'order % is read-only', OLD.reference; END $$"
            )
        )
        await db.execute(
            text(
                "CREATE TRIGGER refuse_update BEFORE UPDATE ON orders FOR EACH ROW "
                f"WHEN (OLD.id = '{stuck['id']}') EXECUTE FUNCTION refuse_update()"
            )
        )
    try:
        for session in (stuck_session, fine_session):  # the stuck order's event is the older one
            await stack.drive(session["provider_session_id"], "payment_created", "completed")
        await stack.flush_webhooks()
        drained = await stack.service.state.workers.drain_inbox()
        assert (drained.applied, drained.retried) == (1, 1)
        assert await stack.order_status(fine["id"]) == "paid"
        assert await stack.order_status(stuck["id"]) == "awaiting_payment"
        async with stack.sessionmaker() as db:
            event = await db.scalar(
                select(ProviderEvent).where(
                    ProviderEvent.provider_session_id == stuck_session["provider_session_id"]
                )
            )
            assert event is not None and event.processed_at is None and event.attempts == 1
            assert "read-only" in (event.last_error or "")

        swept = await stack.service.state.workers.sweep()  # the sweeper records it and carries on
        assert swept.errors == 1
    finally:
        async with stack.sessionmaker() as db, db.begin():
            await db.execute(text("DROP TRIGGER refuse_update ON orders"))
            await db.execute(text("DROP FUNCTION refuse_update()"))

    async with stack.sessionmaker() as db, db.begin():
        await db.execute(update(ProviderEvent).values(next_attempt_at=datetime.now(UTC)))
    await stack.settle()
    assert await stack.order_status(stuck["id"]) == "paid"

"""Sessions the provider has forgotten (the simulator restarted, a provider purged them): the sweeper
settles them after their expiry instead of asking about them every period forever, and never
calls one paid."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from app.models import OrderTransition, PaymentSession
from app.payments.sweeper import UNKNOWN_SESSION_ATTEMPTS
from tests.e2e.conftest import Stack, StackFactory


async def _forget_everything(stack: Stack) -> None:
    """The provider loses its sessions, as the simulator does when it restarts."""
    response = await stack.http.post(f"{stack.simulator_url}/_sim/reset")
    assert response.status_code == 200, response.text


async def _expire(stack: Stack, session_id: str) -> None:
    """The session's expiry (and its grace) passed long ago."""
    async with stack.sessionmaker() as db, db.begin():
        await db.execute(
            update(PaymentSession)
            .where(PaymentSession.id == uuid.UUID(session_id))
            .values(expires_at=datetime.now(UTC) - timedelta(hours=1))
        )


async def _session(stack: Stack, session_id: str) -> PaymentSession:
    async with stack.sessionmaker() as db:
        session = await db.get(PaymentSession, uuid.UUID(session_id))
    assert session is not None
    return session


async def test_an_open_session_the_provider_forgot_expires_after_bounded_attempts(
    stack_factory: StackFactory,
) -> None:
    stack = await stack_factory(sweeper_stale_after_seconds=0)
    order, opened = await stack.paying_order()
    await _forget_everything(stack)
    await _expire(stack, opened["session_id"])

    for attempt in range(1, UNKNOWN_SESSION_ATTEMPTS):
        swept = await stack.service.state.workers.sweep()
        assert (swept.claimed, swept.errors) == (1, 1)
        session = await _session(stack, opened["session_id"])
        assert session.status == "open" and session.sync_attempts == attempt
        assert "404" in (session.last_sync_error or "")
        assert await stack.order_status(order["id"]) == "awaiting_payment"

    swept = await stack.service.state.workers.sweep()
    assert (swept.claimed, swept.errors, swept.changed) == (1, 0, 1)
    assert await stack.order_status(order["id"]) == "expired"
    session = await _session(stack, opened["session_id"])
    assert session.status == "expired" and session.sync_attempts == 0
    async with stack.sessionmaker() as db:
        last = (
            await db.scalars(
                select(OrderTransition)
                .where(OrderTransition.order_id == uuid.UUID(order["id"]))
                .order_by(OrderTransition.created_at.desc())
            )
        ).first()
    assert last is not None and (last.from_status, last.to_status, last.source) == (
        "awaiting_payment",
        "expired",
        "poll",
    )
    assert "no longer knows this session (404)" in (last.reason or "")

    # Settled: no more questions about it.
    for _ in range(2):
        assert (await stack.service.state.workers.sweep()).claimed == 0


async def test_a_processing_session_the_provider_forgot_goes_to_a_person_never_paid(
    stack_factory: StackFactory,
) -> None:
    stack = await stack_factory(sweeper_stale_after_seconds=0)
    order, opened = await stack.paying_order()
    # The payer authorised; the bank has not executed the transfer yet.
    await stack.follow_callback(await stack.complete(opened["provider_session_id"], "pending"))
    assert await stack.order_status(order["id"]) == "processing"
    await _forget_everything(stack)
    await _expire(stack, opened["session_id"])

    for _ in range(UNKNOWN_SESSION_ATTEMPTS):
        await stack.service.state.workers.sweep()
    shown = await stack.order(order["id"])
    assert shown["status"] == "needs_review"
    assert [t["to_status"] for t in shown["transitions"]] == [
        "pending",
        "awaiting_payment",
        "processing",
        "needs_review",
    ]
    assert "check the money by hand" in shown["transitions"][-1]["reason"]
    assert (await stack.service.state.workers.sweep()).claimed == 0


async def test_before_its_expiry_a_forgotten_session_is_still_asked_about(
    stack_factory: StackFactory,
) -> None:
    """A 404 before the session's expiry may be the provider's lag: the payer may still pay."""
    stack = await stack_factory(sweeper_stale_after_seconds=0)
    order, opened = await stack.paying_order()
    await _forget_everything(stack)

    for _ in range(UNKNOWN_SESSION_ATTEMPTS + 2):
        swept = await stack.service.state.workers.sweep()
        assert (swept.claimed, swept.errors) == (1, 1)
    assert await stack.order_status(order["id"]) == "awaiting_payment"
    assert (await _session(stack, opened["session_id"])).sync_attempts == UNKNOWN_SESSION_ATTEMPTS + 2

    # Once it has expired, the next 404 settles it: the earlier ones count.
    await _expire(stack, opened["session_id"])
    await stack.service.state.workers.sweep()
    assert await stack.order_status(order["id"]) == "expired"

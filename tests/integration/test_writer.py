"""The single writer of payment state, on real PostgreSQL: forward-only, audited, money-checked."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.models import Order, OrderTransition, PaymentSession, Product, TransitionSource
from app.orders.states import OrderStatus
from app.payments import writer
from app.providers.base import PaymentSnapshot, PaymentStatus


async def make_order(
    sm: async_sessionmaker[AsyncSession],
    *,
    sessions: int = 1,
    status: OrderStatus = OrderStatus.AWAITING_PAYMENT,
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    async with transaction(sm) as db:
        if await db.get(Product, "SKU-1") is None:
            db.add(
                Product(
                    sku="SKU-1", name="Thing", description="", unit_amount=27350, currency="EUR", active=True
                )
            )
        order = Order(
            reference=f"ORD-{secrets.token_hex(4).upper()}",
            status=status.value,
            currency="EUR",
            total_amount=27350,
            customer_name="Camille",
            customer_email="camille@example.com",
            access_token_hash="0" * 64,
        )
        db.add(order)
        await db.flush()
        ids = []
        for i in range(sessions):
            session = PaymentSession(
                order_id=order.id,
                provider="fintecture",
                provider_session_id=secrets.token_hex(16),
                state_token=secrets.token_urlsafe(16),
                connect_url="https://connect.example/x",
                amount=27350,
                currency="EUR",
                communication=order.reference,
                status=PaymentStatus.OPEN,
                expires_at=datetime.now(UTC) + timedelta(minutes=30),
                created_at=datetime.now(UTC) + timedelta(seconds=i),
            )
            db.add(session)
            await db.flush()
            ids.append(session.id)
        return order.id, ids


async def snapshot_for(
    sm: async_sessionmaker[AsyncSession],
    session_id: uuid.UUID,
    status: PaymentStatus,
    raw: str,
    transfer: str | None = None,
    **overrides: object,
) -> PaymentSnapshot:
    async with sm() as db:
        session = await db.get(PaymentSession, session_id)
        assert session is not None
        fields: dict[str, object] = {
            "provider": "fintecture",
            "provider_session_id": session.provider_session_id,
            "status": status,
            "raw_status": raw,
            "transfer_state": transfer,
            "amount": Decimal("273.50"),
            "currency": "EUR",
            "communication": session.communication,
        }
        fields.update(overrides)
        return PaymentSnapshot(**fields)  # type: ignore[arg-type]


async def apply(
    sm: async_sessionmaker[AsyncSession],
    session_id: uuid.UUID,
    snap: PaymentSnapshot,
    *,
    source: str = "webhook",
    at: datetime | None = None,
) -> writer.ApplyResult:
    async with transaction(sm) as db:
        return await writer.apply(
            db, session_id, snap, source=TransitionSource(source), observed_at=at or datetime.now(UTC)
        )


async def apply_status(
    sm: async_sessionmaker[AsyncSession],
    session_id: uuid.UUID,
    status: PaymentStatus,
    raw: str,
    transfer: str | None = None,
) -> writer.ApplyResult:
    return await apply(sm, session_id, await snapshot_for(sm, session_id, status, raw, transfer))


async def review(sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> tuple[str, str | None]:
    async with sm() as db:
        order = await db.get(Order, order_id)
        assert order is not None
        return order.status, order.review_reason


async def order_state(
    sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID
) -> tuple[str, list[tuple[str | None, str, str]]]:
    async with sm() as db:
        order = await db.get(Order, order_id)
        assert order is not None
        rows = (
            await db.execute(
                select(OrderTransition.from_status, OrderTransition.to_status, OrderTransition.source)
                .where(OrderTransition.order_id == order_id)
                .order_by(OrderTransition.id)
            )
        ).all()
        return order.status, [tuple(r) for r in rows]  # type: ignore[misc]


async def test_paid_snapshot_moves_order_once_and_records_source(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, [sid] = await make_order(sessionmaker)
    snap = await snapshot_for(sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    first = await apply(sessionmaker, sid, snap, source="callback")
    second = await apply(sessionmaker, sid, snap, source="webhook")
    assert first.order_changed and not second.order_changed
    status, transitions = await order_state(sessionmaker, order_id)
    assert status == "paid"
    assert transitions == [("awaiting_payment", "paid", "callback")]
    async with sessionmaker() as db:
        session = await db.get(PaymentSession, sid)
        assert session is not None
        assert (session.status, session.provider_status, session.transfer_state) == (
            "succeeded",
            "payment_created",
            "completed",
        )


async def test_never_downgrades_and_flags_regression(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    order_id, [sid] = await make_order(sessionmaker)
    t0 = datetime.now(UTC)
    paid = await snapshot_for(sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    pending = await snapshot_for(sessionmaker, sid, PaymentStatus.PROCESSING, "payment_pending", "pending")
    await apply(sessionmaker, sid, paid, at=t0)
    # An answer requested before the applied one is stale: ignored, nothing recorded.
    stale = await apply(sessionmaker, sid, pending, at=t0 - timedelta(seconds=1))
    assert stale.stale
    assert (await order_state(sessionmaker, order_id))[0] == "paid"
    # A newer answer saying less than paid is the provider regressing: flagged for review.
    await apply(sessionmaker, sid, pending, at=t0 + timedelta(seconds=1))
    status, transitions = await order_state(sessionmaker, order_id)
    assert status == "needs_review"
    assert [t[1] for t in transitions] == ["paid", "needs_review"]


@pytest.mark.parametrize(
    ("override", "reason_part"),
    [
        ({"amount": Decimal("273.49")}, "amount mismatch"),
        ({"currency": "GBP"}, "currency mismatch"),
        ({"communication": "SOMETHING-ELSE"}, "communication mismatch"),
    ],
)
async def test_money_mismatch_is_never_paid(
    sessionmaker: async_sessionmaker[AsyncSession], override: dict[str, object], reason_part: str
) -> None:
    order_id, [sid] = await make_order(sessionmaker)
    snap = await snapshot_for(
        sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed", **override
    )
    await apply(sessionmaker, sid, snap)
    async with sessionmaker() as db:
        order = await db.get(Order, order_id)
        assert order is not None
        assert order.status == "needs_review"
        assert order.review_reason is not None and reason_part in order.review_reason


async def test_failed_then_late_success_on_same_session_is_paid(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, [sid] = await make_order(sessionmaker)
    await apply_status(sessionmaker, sid, PaymentStatus.FAILED, "payment_unsuccessful", "rejected")
    await apply_status(sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    status, transitions = await order_state(sessionmaker, order_id)
    assert status == "paid"
    assert [t[1] for t in transitions] == ["failed", "paid"]


async def test_old_session_failing_does_not_touch_order_driven_by_newer_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, [old, new] = await make_order(sessionmaker, sessions=2)
    await apply(
        sessionmaker, old, await snapshot_for(sessionmaker, old, PaymentStatus.EXPIRED, "payment_expired")
    )
    assert (await order_state(sessionmaker, order_id))[0] == "awaiting_payment"
    await apply_status(sessionmaker, new, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    assert (await order_state(sessionmaker, order_id))[0] == "paid"


async def test_two_sessions_both_paid_is_flagged(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    order_id, [first, second] = await make_order(sessionmaker, sessions=2)
    await apply_status(sessionmaker, first, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    await apply_status(sessionmaker, second, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    assert await review(sessionmaker, order_id) == (
        "needs_review",
        "order paid twice, by two payment sessions",
    )


async def test_concurrent_applies_make_exactly_one_transition(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, [sid] = await make_order(sessionmaker)
    snap = await snapshot_for(sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    results = await asyncio.gather(
        *(apply(sessionmaker, sid, snap, source=s) for s in ["callback", "webhook"] * 5)
    )
    assert sum(r.order_changed for r in results) == 1
    async with sessionmaker() as db:
        count = await db.scalar(
            select(func.count()).select_from(OrderTransition).where(OrderTransition.order_id == order_id)
        )
    assert count == 1


async def test_cancelled_after_paid_is_a_regression_for_review(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, [sid] = await make_order(sessionmaker)
    await apply_status(sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    await apply(
        sessionmaker, sid, await snapshot_for(sessionmaker, sid, PaymentStatus.CANCELLED, "payment_cancelled")
    )
    assert await review(sessionmaker, order_id) == (
        "needs_review",
        "provider regression after paid: payment_cancelled",
    )


async def test_payment_on_a_cancelled_order_is_flagged(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, [old, new] = await make_order(sessionmaker, sessions=2)
    await apply(
        sessionmaker, new, await snapshot_for(sessionmaker, new, PaymentStatus.CANCELLED, "payment_cancelled")
    )
    assert (await order_state(sessionmaker, order_id))[0] == "cancelled"
    await apply_status(sessionmaker, old, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    assert await review(sessionmaker, order_id) == ("needs_review", "payment received on a cancelled order")


async def test_locally_expired_session_does_not_reopen_but_can_still_be_paid(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, [sid] = await make_order(sessionmaker)
    still_open = await snapshot_for(sessionmaker, sid, PaymentStatus.OPEN, "provider_required")
    async with transaction(sessionmaker) as db:
        await writer.apply(
            db,
            sid,
            still_open,
            source=TransitionSource.POLL,
            observed_at=datetime.now(UTC),
            override=PaymentStatus.EXPIRED,
        )
    await apply(sessionmaker, sid, still_open, source="webhook")  # the provider still shows it open
    assert (await order_state(sessionmaker, order_id))[0] == "expired"
    await apply_status(sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    status, transitions = await order_state(sessionmaker, order_id)
    assert status == "paid"
    assert [t[1] for t in transitions] == ["expired", "paid"]


async def test_slow_answer_that_moves_forward_is_kept(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """A read that was retried for a while returns after a quicker, older-news read was applied."""
    order_id, [sid] = await make_order(sessionmaker)
    t0 = datetime.now(UTC)
    pending = await snapshot_for(sessionmaker, sid, PaymentStatus.PROCESSING, "payment_pending", "pending")
    paid = await snapshot_for(sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    await apply(sessionmaker, sid, pending, at=t0 + timedelta(seconds=5))
    result = await apply(sessionmaker, sid, paid, at=t0)  # requested earlier, answered later
    assert result.order_changed
    assert (await order_state(sessionmaker, order_id))[0] == "paid"


async def test_a_slow_older_failure_does_not_override_a_newer_processing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A retried read that saw `failed` returns after a quicker, newer read saw the bank accept."""
    order_id, [sid] = await make_order(sessionmaker)
    t0 = datetime.now(UTC)
    pending = await snapshot_for(sessionmaker, sid, PaymentStatus.PROCESSING, "payment_pending", "pending")
    failed = await snapshot_for(sessionmaker, sid, PaymentStatus.FAILED, "payment_unsuccessful", "rejected")
    await apply(sessionmaker, sid, pending, at=t0 + timedelta(seconds=5))
    result = await apply(sessionmaker, sid, failed, at=t0)  # requested earlier, answered later
    assert result.stale and not result.order_changed
    status, transitions = await order_state(sessionmaker, order_id)
    assert status == "processing"
    assert [t[1] for t in transitions] == ["processing"]

"""The writer's refund paths on real PostgreSQL: reservations count, forward only, one transition."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.models import Order, OrderTransition, PaymentSession, TransitionSource
from app.payments import repository, writer
from app.providers.base import CreatedRefund, PaymentKind, PaymentSnapshot, PaymentStatus
from tests.integration.test_writer import apply_status, make_order


async def paid_order(sm: async_sessionmaker[AsyncSession]) -> tuple[uuid.UUID, uuid.UUID]:
    order_id, [sid] = await make_order(sm)
    await apply_status(sm, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    return order_id, sid


async def reserve(
    sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID, sid: uuid.UUID, amount: int
) -> uuid.UUID:
    async with transaction(sm) as db:
        order = await repository.lock_order(db, order_id)
        paid = await db.get(PaymentSession, sid)
        assert paid is not None
        refund = writer.reserve_refund(
            db,
            order,
            paid,
            amount=amount,
            reason=None,
            state_token=secrets.token_urlsafe(8),
            idempotency_key=None,
        )
        await db.flush()
        return refund.id


def refund_snapshot(status: PaymentStatus, amount: str, **fields: object) -> PaymentSnapshot:
    values: dict[str, object] = {
        "provider": "fintecture",
        "provider_session_id": "r-1",
        "status": status,
        "raw_status": "payment_created" if status is PaymentStatus.SUCCEEDED else "session_initiated",
        "transfer_state": "completed" if status is PaymentStatus.SUCCEEDED else None,
        "amount": Decimal(amount),
        "currency": "EUR",
        "communication": None,
        "kind": PaymentKind.REFUND,
    }
    values.update(fields)
    return PaymentSnapshot(**values)  # type: ignore[arg-type]


async def test_reservations_count_and_a_refused_one_does_not(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, sid = await paid_order(sessionmaker)
    first = await reserve(sessionmaker, order_id, sid, 20000)
    second = await reserve(sessionmaker, order_id, sid, 5000)
    async with sessionmaker() as db:
        assert await repository.refund_total(db, order_id) == 25000
    async with transaction(sessionmaker) as db:
        assert await writer.fail_refund(db, second, "refused")
        assert not await writer.fail_refund(db, second, "again")
        # No answer at all: it may exist at the provider, so it keeps counting.
        assert await writer.fail_refund(db, first, "timeout", review=True)
    async with sessionmaker() as db:
        assert await repository.refund_total(db, order_id) == 20000


async def test_concurrent_applies_move_the_order_once(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    order_id, sid = await paid_order(sessionmaker)
    refund_id = await reserve(sessionmaker, order_id, sid, 27350)
    async with transaction(sessionmaker) as db:
        attached = await writer.attach_refund(
            db, refund_id, CreatedRefund("r-1", "refund_waiting", PaymentStatus.OPEN)
        )
        assert attached is not None and attached.status is PaymentStatus.OPEN

    async def apply(source: str) -> writer.RefundApplyResult:
        async with transaction(sessionmaker) as db:
            return await writer.apply_refund(
                db,
                refund_id,
                refund_snapshot(PaymentStatus.SUCCEEDED, "273.50"),
                source=TransitionSource(source),
                observed_at=datetime.now(UTC),
            )

    results = await asyncio.gather(*(apply(s) for s in ["webhook", "poll", "operator"] * 4))
    assert sum(r.order_changed for r in results) == 1
    async with sessionmaker() as db:
        order = await db.get(Order, order_id)
        assert order is not None and order.status == "refunded"
        count = await db.scalar(
            select(func.count()).select_from(OrderTransition).where(OrderTransition.refund_id == refund_id)
        )
        assert count == 1


async def test_a_refund_reported_for_another_amount_is_for_review(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, sid = await paid_order(sessionmaker)
    refund_id = await reserve(sessionmaker, order_id, sid, 1000)
    async with transaction(sessionmaker) as db:
        await writer.attach_refund(
            db, refund_id, CreatedRefund("r-1", "refund_accepted", PaymentStatus.PROCESSING)
        )
        result = await writer.apply_refund(
            db,
            refund_id,
            refund_snapshot(PaymentStatus.SUCCEEDED, "10.01"),
            source=TransitionSource.WEBHOOK,
            observed_at=datetime.now(UTC),
        )
    assert result.refund_status is PaymentStatus.NEEDS_REVIEW
    async with sessionmaker() as db:
        order = await db.get(Order, order_id)
        assert order is not None and order.status == "needs_review"
        assert order.review_reason is not None and "refund amount mismatch" in order.review_reason


async def test_a_refund_moves_forward_only(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    order_id, sid = await paid_order(sessionmaker)
    refund_id = await reserve(sessionmaker, order_id, sid, 1000)
    async with transaction(sessionmaker) as db:
        await writer.attach_refund(db, refund_id, CreatedRefund("r-1", "refund_waiting", PaymentStatus.OPEN))
    now = datetime.now(UTC)
    async with transaction(sessionmaker) as db:
        done = await writer.apply_refund(
            db,
            refund_id,
            refund_snapshot(PaymentStatus.SUCCEEDED, "10.00"),
            source=TransitionSource.POLL,
            observed_at=now,
        )
        assert done.order_status == "partially_refunded"
        older = await writer.apply_refund(
            db,
            refund_id,
            refund_snapshot(PaymentStatus.OPEN, "10.00"),
            source=TransitionSource.WEBHOOK,
            observed_at=now.replace(year=now.year - 1),
        )
        assert older.stale and older.refund_status is PaymentStatus.SUCCEEDED

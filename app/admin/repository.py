"""The console's own reads: the filtered order and payout lists, and everything an order's page
shows that the domains' repositories do not already read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Order, PaymentSession, Payout, ProviderEvent
from app.orders.states import OrderStatus
from app.providers.base import PayoutStatus


async def page_of_orders(
    db: AsyncSession,
    *,
    status: OrderStatus | None,
    provider: str | None,
    reference: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    offset: int,
    limit: int,
) -> list[Order]:
    """Orders in `needs_review` first (a person must act on them), then newest first."""
    stmt = select(Order)
    if status is not None:
        stmt = stmt.where(Order.status == status)
    if provider is not None:
        stmt = stmt.where(
            exists().where(PaymentSession.order_id == Order.id, PaymentSession.provider == provider)
        )
    if reference is not None:
        stmt = stmt.where(Order.reference.startswith(reference, autoescape=True))
    if created_from is not None:
        stmt = stmt.where(Order.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(Order.created_at < created_to)
    review_first = case((Order.status == OrderStatus.NEEDS_REVIEW, 0), else_=1)
    stmt = stmt.order_by(review_first, Order.created_at.desc(), Order.id.desc()).offset(offset).limit(limit)
    return list(await db.scalars(stmt))


async def sessions_of(db: AsyncSession, order_id: uuid.UUID) -> list[PaymentSession]:
    return list(
        await db.scalars(
            select(PaymentSession)
            .where(PaymentSession.order_id == order_id)
            .order_by(PaymentSession.created_at, PaymentSession.id)
        )
    )


async def provider_events_naming(
    db: AsyncSession, pairs: Sequence[tuple[str, str]], *, limit: int
) -> list[ProviderEvent]:
    """The inbox rows that name one of these (provider, provider's id) pairs, oldest first."""
    if not pairs:
        return []
    return list(
        await db.scalars(
            select(ProviderEvent)
            .where(tuple_(ProviderEvent.provider, ProviderEvent.provider_session_id).in_(sorted(pairs)))
            .order_by(ProviderEvent.id)
            .limit(limit)
        )
    )


async def page_of_payouts(
    db: AsyncSession,
    *,
    status: PayoutStatus | None,
    reference: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    offset: int,
    limit: int,
) -> list[Payout]:
    """Payouts in `needs_review` first, then newest first."""
    stmt = select(Payout)
    if status is not None:
        stmt = stmt.where(Payout.status == status)
    if reference is not None:
        stmt = stmt.where(Payout.reference.startswith(reference, autoescape=True))
    if created_from is not None:
        stmt = stmt.where(Payout.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(Payout.created_at < created_to)
    review_first = case((Payout.status == PayoutStatus.NEEDS_REVIEW, 0), else_=1)
    stmt = stmt.order_by(review_first, Payout.created_at.desc(), Payout.id.desc()).offset(offset).limit(limit)
    return list(await db.scalars(stmt))

"""Every query of the orders domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models import Order, OrderTransition
from app.orders.states import OrderStatus


async def get_order(db: AsyncSession, order_id: uuid.UUID, *, with_lines: bool = False) -> Order | None:
    stmt = select(Order).where(Order.id == order_id)
    if with_lines:
        stmt = stmt.options(selectinload(Order.lines))
    return await db.scalar(stmt)


async def transitions_of(db: AsyncSession, order_id: uuid.UUID) -> list[OrderTransition]:
    result = await db.scalars(
        select(OrderTransition).where(OrderTransition.order_id == order_id).order_by(OrderTransition.id)
    )
    return list(result)


async def page_of_orders(
    db: AsyncSession,
    *,
    status: OrderStatus | None,
    reference: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Order]:
    """Newest first, keyset-paginated on (created_at, id): stable while new orders arrive."""
    stmt = select(Order)
    if status is not None:
        stmt = stmt.where(Order.status == status)
    if reference is not None:
        stmt = stmt.where(Order.reference == reference)
    if after is not None:
        stmt = stmt.where(tuple_(Order.created_at, Order.id) < tuple_(*after))
    stmt = stmt.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    return list(await db.scalars(stmt))

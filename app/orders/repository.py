"""Every query of the orders domain."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models import Order, OrderTransition, TransitionSource
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


# --- creating an order: written for the driver --------------------------------------------------
# Order creation is the checkout's hot path: one statement prices the lines from the catalog and
# writes the order, its lines and its first transition together (a refused line costs a catalog
# read more, to name every problem). Without an Idempotency-Key the statement
# autocommits on its own; with one it runs inside the request's transaction (see service).


@dataclass(frozen=True, slots=True)
class CatalogPrice:
    """What an order line is priced from."""

    sku: str
    name: str
    unit_amount: int
    currency: str
    active: bool


@dataclass(frozen=True, slots=True)
class NewLine:
    position: int
    sku: str
    name: str
    unit_amount: int
    quantity: int

    @property
    def line_amount(self) -> int:
        return self.unit_amount * self.quantity


@dataclass(frozen=True, slots=True)
class NewOrder:
    id: uuid.UUID
    reference: str
    currency: str
    customer: dict[str, Any]  # name, email, phone, company, address (a dict or None)
    access_token_hash: str
    lines: list[NewLine]

    @property
    def total_amount(self) -> int:
        return sum(line.line_amount for line in self.lines)


# An order as written: the order, its (created_at, updated_at).
WrittenOrder = tuple[NewOrder, datetime, datetime]

_CATALOG_PRICES_SQL = (
    "SELECT sku, name, unit_amount, currency, active FROM products WHERE sku = ANY($1::text[])"
)

# The order, its lines and its first transition, priced by the statement itself: the lines are
# read from `products` (active, in the order's currency) in the statement's own snapshot, and
# nothing is written unless every requested SKU was found so. When one is missing the statement
# returns nothing and the caller reads the catalog to say why.
_INSERT_ORDER_SQL = """
WITH wanted AS (
    SELECT * FROM unnest($10::int[], $11::text[], $12::int[]) AS line (position, sku, quantity)
), priced AS (
    SELECT wanted.position, wanted.sku, products.name, products.unit_amount, wanted.quantity
    FROM wanted JOIN products ON products.sku = wanted.sku
    WHERE products.active AND products.currency = $3::text
), complete AS (
    SELECT sum(unit_amount * quantity) AS total_amount FROM priced HAVING count(*) = $13
), new_order AS (
    INSERT INTO orders (id, reference, status, currency, total_amount, customer_name, customer_email,
                        customer_phone, customer_company, customer_address, access_token_hash)
    SELECT $1, $2, $14, $3, complete.total_amount, $4, $5, $6, $7, $8, $9 FROM complete
    RETURNING created_at, updated_at
), new_lines AS (
    INSERT INTO order_lines (order_id, position, sku, name, unit_amount, quantity, line_amount)
    SELECT $1, priced.position, priced.sku, priced.name, priced.unit_amount, priced.quantity,
           priced.unit_amount * priced.quantity
    FROM priced WHERE EXISTS (SELECT FROM new_order)
), first_transition AS (
    INSERT INTO order_transitions (order_id, from_status, to_status, source)
    SELECT $1, NULL, $14, $15 FROM new_order
)
SELECT new_order.created_at, new_order.updated_at,
       (SELECT array_agg(name ORDER BY position) FROM priced) AS names,
       (SELECT array_agg(unit_amount ORDER BY position) FROM priced) AS unit_amounts
FROM new_order
"""

REFERENCE_CONSTRAINT = "uq_orders_reference"


_TOKEN_HASH_OF_ORDER_SQL = "SELECT access_token_hash FROM orders WHERE id = $1"  # noqa: S105


async def access_token_hash(conn: Any, order_id: uuid.UUID) -> str | None:
    """The order's access-token hash on the driver connection `conn`; None when there is no such
    order."""
    value = await conn.fetchval(_TOKEN_HASH_OF_ORDER_SQL, order_id)
    return str(value) if value is not None else None


async def catalog_prices(conn: Any, skus: list[str]) -> dict[str, CatalogPrice]:
    rows = await conn.fetch(_CATALOG_PRICES_SQL, skus)
    return {row["sku"]: CatalogPrice(*row) for row in rows}


@dataclass(frozen=True, slots=True)
class WantedLine:
    position: int
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """An order as requested: SKUs and quantities, unpriced."""

    id: uuid.UUID
    reference: str
    currency: str
    customer: dict[str, Any]
    access_token_hash: str
    lines: list[WantedLine]


async def insert_order(conn: Any, draft: OrderDraft) -> WrittenOrder | None:
    """Price `draft` from the catalog and insert it, with its lines and first transition, in one
    statement; the order as written, its (created_at, updated_at). None, with nothing written, when
    a SKU is unknown, inactive or not priced in the order's currency. Raises asyncpg's
    UniqueViolationError on a reference collision."""
    customer, lines = draft.customer, draft.lines
    row = await conn.fetchrow(
        _INSERT_ORDER_SQL,
        draft.id,
        draft.reference,
        draft.currency,
        customer["name"],
        customer["email"],
        customer["phone"],
        customer["company"],
        json.dumps(customer["address"]) if customer["address"] is not None else None,
        draft.access_token_hash,
        [line.position for line in lines],
        [line.sku for line in lines],
        [line.quantity for line in lines],
        len(lines),
        OrderStatus.PENDING.value,
        TransitionSource.API.value,
    )
    if row is None:
        return None
    order = NewOrder(
        id=draft.id,
        reference=draft.reference,
        currency=draft.currency,
        customer=customer,
        access_token_hash=draft.access_token_hash,
        lines=[
            NewLine(
                position=line.position,
                sku=line.sku,
                name=name,
                unit_amount=unit_amount,
                quantity=line.quantity,
            )
            for line, name, unit_amount in zip(lines, row["names"], row["unit_amounts"], strict=True)
        ],
    )
    return order, row["created_at"], row["updated_at"]

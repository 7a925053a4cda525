"""Products and the prices orders are built from: every catalog query. Flushes; the caller commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schemas import ProductUpsert
from app.models import Product

DEMO_PRODUCTS: tuple[dict[str, object], ...] = (
    {
        "sku": "espresso-1kg",
        "name": "Espresso beans, 1 kg",
        "description": "Single-origin Brazilian beans, medium roast.",
        "unit_amount": 2450,
    },
    {
        "sku": "ceramic-dripper",
        "name": "Ceramic pour-over dripper",
        "description": "Hand-glazed, fits size 02 filters.",
        "unit_amount": 2800,
    },
    {
        "sku": "gooseneck-kettle",
        "name": "Gooseneck kettle, 1 l",
        "description": "Stainless steel, built-in thermometer.",
        "unit_amount": 6900,
    },
    {
        "sku": "barista-gift-box",
        "name": "Barista gift box",
        "description": "Beans, dripper, filters and a tasting guide.",
        "unit_amount": 12500,
    },
)


async def list_active_products(session: AsyncSession) -> Sequence[Product]:
    """Active products, by name then SKU (a stable order for the storefront)."""
    result = await session.scalars(
        select(Product).where(Product.active.is_(True)).order_by(Product.name, Product.sku)
    )
    return result.all()


async def products_by_sku(session: AsyncSession, skus: Iterable[str]) -> dict[str, Product]:
    wanted = set(skus)
    if not wanted:
        return {}
    result = await session.scalars(select(Product).where(Product.sku.in_(wanted)))
    return {product.sku: product for product in result}


async def upsert_product(session: AsyncSession, sku: str, data: ProductUpsert) -> tuple[Product, bool]:
    """Create or replace a product in one statement (safe under concurrent PUTs).

    Returns the product and whether it was created. Orders already placed keep their own copy of
    name and price, so editing a product never changes an existing order.
    """
    values = data.model_dump()
    stmt: Any = (
        insert(Product)
        .values(sku=sku, **values)
        .on_conflict_do_update(index_elements=[Product.sku], set_={**values, "updated_at": func.now()})
        # xmax is 0 on a freshly inserted row version, non-zero when the conflict path updated it.
        .returning(Product, literal_column("(xmax = 0)").label("inserted"))
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(stmt)).one()
    return row[0], bool(row[1])


async def seed_demo_products(session: AsyncSession) -> int:
    """Insert the demo catalog (EUR) where missing; never overwrites an operator's edits.

    Idempotent: returns how many products were inserted (0 on every call after the first).
    """
    stmt = (
        insert(Product)
        .values([{**product, "currency": "EUR", "active": True} for product in DEMO_PRODUCTS])
        .on_conflict_do_nothing(index_elements=[Product.sku])
        .returning(Product.sku)
    )
    inserted = (await session.scalars(stmt)).all()
    return len(inserted)

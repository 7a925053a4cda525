"""Catalog: the public product list and the operator's upsert."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from app.auth import RequireAdmin
from app.catalog import repository
from app.catalog.schemas import SKU_PATTERN, ProductList, ProductOut, ProductUpsert
from app.deps import DbSession
from app.openapi import error

router = APIRouter(tags=["catalog"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    422: error("Invalid SKU or product fields (unknown fields are rejected)", "validation_error"),
}


@router.get(
    "/products",
    summary="Active products, by name",
    description=(
        "Public: the catalog a storefront shows, active products only, sorted by name. Prices are in "
        "minor units (`unit_amount`) and as a decimal string (`amount`); an order is priced from here."
    ),
    response_model=ProductList,
)
async def list_products(session: DbSession) -> ProductList:
    products = await repository.list_active_products(session)
    return ProductList(items=[ProductOut.model_validate(product) for product in products])


@router.put(
    "/products/{sku}",
    summary="Create or replace a product (operator)",
    description=(
        "Upsert by SKU: 201 when the product is new, 200 when it replaced an existing one. "
        "Prices are integer minor units. Setting `active` to false hides the product and "
        "refuses new orders for it; orders already placed keep their price."
    ),
    response_model=ProductOut,
    responses={201: {"description": "Created", "model": ProductOut}, **_ERRORS},
    dependencies=[RequireAdmin],
)
async def put_product(
    sku: Annotated[
        str, Path(pattern=SKU_PATTERN, description="1-64 of A-Z a-z 0-9 . _ -", examples=["espresso-1kg"])
    ],
    body: ProductUpsert,
    session: DbSession,
    response: Response,
) -> ProductOut:
    product, created = await repository.upsert_product(session, sku, body)
    response.status_code = 201 if created else 200
    return ProductOut.model_validate(product)

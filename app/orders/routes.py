"""Orders: create (public, idempotent), read with the order's token, list for operators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from app.auth import OrderBearer, RequireAdmin
from app.db import transaction
from app.deps import DbSession, EngineDep, SessionMakerDep, SettingsDep
from app.idempotency import fingerprint_of, idempotent
from app.openapi import error
from app.orders import service
from app.orders.schemas import (
    OrderCreate,
    OrderCreated,
    OrderOut,
    OrderPage,
    OrderSummary,
    ReviewResolve,
    ReviewResolved,
    TransitionOut,
)
from app.orders.states import OrderStatus
from app.ratelimit import Limit, rate_limited
from app.validation import Text

router = APIRouter(tags=["orders"])

CREATE_SCOPE = "orders.create"

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error(
        "No such order, or the token is missing or not this order's: the same answer in every case",
        "not_found",
    )
}


@router.post(
    "/orders",
    summary="Create an order from catalog SKUs",
    description=(
        "Prices and the total come from the catalog, never from the request: unknown fields (such as "
        "`amount`, `price` or `total`) are rejected with 422. Each SKU may appear once, 1 to 50 lines, "
        "1 to `MAX_LINE_QUANTITY` units per line (10 unless configured; more is a 422 `invalid_items` "
        "naming the line); every SKU must be active and priced in `currency`. Nothing is "
        "written when the request is refused.\n\n"
        "The response carries `access_token`, returned only here: send it as "
        "`Authorization: Bearer <access_token>` to read the order and open its payment session.\n\n"
        "Send an `Idempotency-Key` (a random UUID per checkout attempt) to retry safely: the same key "
        "with the same body replays the first response, including the same order and access token "
        "(header `Idempotent-Replayed: true`); with a different body it is refused (422 "
        "`idempotency_key_reused`); while the first request is still running, 409 "
        "`idempotency_key_in_progress`."
    ),
    status_code=201,
    response_model=OrderCreated,
    responses={
        400: error(
            "Malformed JSON or an invalid Idempotency-Key", "malformed_json", "invalid_idempotency_key"
        ),
        409: error("A request with this Idempotency-Key is still in progress", "idempotency_key_in_progress"),
        422: error(
            "Invalid request, invalid items (`invalid_items`: unknown, inactive or not priced in "
            "`currency`, over MAX_LINE_QUANTITY) or the Idempotency-Key used with another body",
            "validation_error",
            "invalid_items",
            "idempotency_key_reused",
        ),
        503: error("No free order reference could be allocated; retry", "unavailable"),
    },
    dependencies=[rate_limited(Limit.ORDER_CREATE)],
)
async def create_order(
    body: OrderCreate,
    settings: SettingsDep,
    engine: EngineDep,
    sessionmaker: SessionMakerDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="1-255 printable ASCII characters; a UUID is ideal"),
    ] = None,
) -> Response:
    limit = settings.max_line_quantity
    if idempotency_key is None:
        created = await service.create_order(engine, body, max_line_quantity=limit)
        return Response(created.model_dump_json(), status_code=201, media_type="application/json")

    async def handler() -> tuple[int, dict[str, Any]]:
        created = await service.create_order_in(session, body, max_line_quantity=limit)
        return 201, created.model_dump(mode="json")

    async with transaction(sessionmaker) as session:
        status, payload, replayed = await idempotent(
            session,
            scope=CREATE_SCOPE,
            key=idempotency_key,
            fingerprint=fingerprint_of(body),
            handler=handler,
        )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code=status, headers=headers)


@router.get(
    "/orders/{order_id}",
    summary="Read an order (its access token or the operator key)",
    description=(
        "Includes the latest payment session, if any. The state history (`transitions`) is included "
        "for the operator key only."
    ),
    response_model=OrderOut,
    responses=_NOT_FOUND,
    dependencies=[rate_limited(Limit.ORDER_ACCESS)],
)
async def get_order(
    order_id: str, bearer: OrderBearer, session: DbSession, settings: SettingsDep
) -> OrderOut:
    view = await service.read_order(session, order_id, bearer, settings)
    return OrderOut.of(view.order, payment=view.payment, transitions=view.transitions)


@router.get(
    "/orders",
    summary="List orders, newest first (operator)",
    description=(
        "Summaries (no lines, customer address or payment), filtered by `status` or `reference`; page "
        "with `limit` and `cursor` (the previous page's `next_cursor`)."
    ),
    response_model=OrderPage,
    responses={
        422: error("An invalid filter or cursor", "validation_error", "invalid_cursor"),
    },
    dependencies=[RequireAdmin],
)
async def list_orders(
    session: DbSession,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this state")] = None,
    reference: Annotated[
        Annotated[str, Text(32)] | None, Query(description="Only the order with this reference")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[
        Annotated[str, Text(200)] | None, Query(description="`next_cursor` of the previous page")
    ] = None,
) -> OrderPage:
    page = await service.list_orders(session, status=status, reference=reference, limit=limit, cursor=cursor)
    return OrderPage(
        items=[OrderSummary.model_validate(order) for order in page.orders], next_cursor=page.next_cursor
    )


@router.post(
    "/orders/{order_id}/review/resolve",
    summary="Resolve an order's review (operator)",
    description=(
        "An order in `needs_review` (an amount or currency mismatch, a payment twice, a provider "
        "regression...) is moved by the operator to `paid` or `failed`, with a note. The move is "
        "recorded as a transition with source `operator` and the note, and sent to the merchant's "
        "systems as an `order.<status>` event. Of two operators resolving at once, one wins; the "
        "other gets 409 and nothing is written."
    ),
    response_model=ReviewResolved,
    responses={
        404: error("No such order", "not_found"),
        409: error("`review_not_open`: the order is not (or no longer) in needs_review", "review_not_open"),
        422: error("`to` is not `paid` or `failed`, or the note is missing or too long", "validation_error"),
    },
    dependencies=[RequireAdmin],
)
async def resolve_review(order_id: str, body: ReviewResolve, session: DbSession) -> ReviewResolved:
    order, transition = await service.resolve_review(session, order_id, OrderStatus(body.to), body.note)
    return ReviewResolved(
        order_id=order.id, status=order.status, transition=TransitionOut.model_validate(transition)
    )

"""Orders: creation priced from the catalog, access by token, the operator's list.

Services take a session and flush; the request boundary commits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth import is_admin, secrets_match
from app.config import Settings
from app.db import driver_connection
from app.errors import ApiError, NotFound
from app.models import Order, OrderTransition, PaymentSession
from app.money import format_amount
from app.orders import repository
from app.orders.schemas import AddressOut, CustomerOut, OrderCreate, OrderCreated, OrderLineOut
from app.orders.states import OrderStatus
from app.payments import repository as payments_repository
from app.payments import writer

# No 0/O, 1/I/L, U: a reference read out over the phone or copied from a bank statement stays
# unambiguous. 30^8 ~ 6.6e11 references; a collision is retried.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_PREFIX = "ORD-"
REFERENCE_LENGTH = 8
_REFERENCE_ATTEMPTS = 5
# Pricings of one order while the catalog refuses a line a read of it then accepts (it changed).
_PRICING_ATTEMPTS = 2
ACCESS_TOKEN_PREFIX = "ot_"  # noqa: S105 - a prefix, not a secret


_REFERENCE_SPACE = len(REFERENCE_ALPHABET) ** REFERENCE_LENGTH


def new_reference() -> str:
    # One draw from the whole space, written in base 30: uniform like eight separate choices, at a
    # fraction of their cost on the order hot path.
    number = secrets.randbelow(_REFERENCE_SPACE)
    digits = []
    for _ in range(REFERENCE_LENGTH):
        number, digit = divmod(number, len(REFERENCE_ALPHABET))
        digits.append(REFERENCE_ALPHABET[digit])
    return REFERENCE_PREFIX + "".join(digits)


def new_access_token() -> str:
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_access_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def create_order(engine: AsyncEngine, data: OrderCreate, *, max_line_quantity: int) -> OrderCreated:
    """Price `data` from the catalog and insert a `pending` order; returns it with its access token.

    The catalog prices, the order, its lines and its first transition are one autocommitted
    statement on a pooled driver connection: no transaction to open or close around it.

    Every problem with the items is reported at once (422 `invalid_items`, one detail per item) and
    nothing is written. A line may hold at most `max_line_quantity` units (MAX_LINE_QUANTITY).
    """
    async with driver_connection(engine) as conn:
        return await _create(conn, data, max_line_quantity, session=None)


async def create_order_in(
    session: AsyncSession, data: OrderCreate, *, max_line_quantity: int
) -> OrderCreated:
    """The same inside `session`'s open transaction, so that what else it writes (an idempotency
    key) commits or rolls back with the order."""
    raw = await (await session.connection()).get_raw_connection()
    conn = raw.driver_connection
    if conn is None or not conn.is_in_transaction():
        raise RuntimeError("create_order_in needs a session whose transaction has begun")
    return await _create(conn, data, max_line_quantity, session=session)


async def _create(
    conn: Any, data: OrderCreate, max_line_quantity: int, *, session: AsyncSession | None
) -> OrderCreated:
    token = new_access_token()
    token_hash = hash_access_token(token)
    customer = data.customer
    fields: dict[str, Any] = {
        "name": customer.name,
        "email": str(customer.email),
        "phone": customer.phone,
        "company": customer.company,
        "address": customer.address.model_dump() if customer.address else None,
    }
    if not _lines_plausible(data, max_line_quantity):
        await _refuse_invalid_items(conn, data, max_line_quantity)  # a line twice, or too many units
    wanted = [
        repository.WantedLine(position=position, sku=item.sku, quantity=item.quantity)
        for position, item in enumerate(data.items, start=1)
    ]

    async def write(reference: str) -> repository.WrittenOrder | None:
        draft = repository.OrderDraft(
            id=uuid.uuid4(),
            reference=reference,
            currency=data.currency,
            customer=fields,
            access_token_hash=token_hash,
            lines=wanted,
        )
        return await writer.create_order(conn, draft, session=session)

    for _ in range(_PRICING_ATTEMPTS):
        written = await _with_free_reference(conn, session, write)
        if written is not None:
            order, created_at, updated_at = written
            return _created(order, token, created_at, updated_at)
        # The catalog refused a line: a read of it names every problem. None found means the
        # catalog changed since the statement read it, and the order is priced again.
        await _refuse_invalid_items(conn, data, max_line_quantity)
    raise ApiError(503, "unavailable", "the catalog changed while the order was priced; retry")


async def _with_free_reference(
    conn: Any,
    session: AsyncSession | None,
    write: Callable[[str], Awaitable[repository.WrittenOrder | None]],
) -> repository.WrittenOrder | None:
    """`write(reference)` with a fresh order reference, again with another while it collides. Inside
    `session`'s transaction each attempt is a savepoint, so a collision costs a retry, not the
    request's transaction."""
    for _ in range(_REFERENCE_ATTEMPTS):
        try:
            if session is None:
                return await write(new_reference())
            async with conn.transaction():
                return await write(new_reference())
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != repository.REFERENCE_CONSTRAINT:
                raise
    raise ApiError(503, "unavailable", "could not allocate an order reference; retry")


def _lines_plausible(data: OrderCreate, max_line_quantity: int) -> bool:
    """No line over the quantity limit and no SKU twice: what can be refused without the catalog."""
    return len({item.sku for item in data.items}) == len(data.items) and all(
        item.quantity <= max_line_quantity for item in data.items
    )


async def _refuse_invalid_items(conn: Any, data: OrderCreate, max_line_quantity: int) -> None:
    """A 422 listing every problem with the items, read against the catalog; returns when there is
    none."""
    prices = await repository.catalog_prices(conn, [item.sku for item in data.items])
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(data.items):
        if item.quantity > max_line_quantity:
            problems.append(
                _problem(
                    f"body.items.{index}.quantity",
                    "quantity_too_large",
                    f"line {index + 1} ({item.sku}): {item.quantity} units, at most "
                    f"{max_line_quantity} per line",
                )
            )
        field = f"body.items.{index}.sku"
        product = prices.get(item.sku)
        if item.sku in seen:
            problems.append(
                _problem(
                    field,
                    "duplicate_sku",
                    f"SKU {item.sku!r} already appears at items.{seen[item.sku]}; "
                    "send one line per SKU with the total quantity",
                )
            )
            continue
        seen[item.sku] = index
        if product is None:
            problems.append(_problem(field, "unknown_sku", f"no product with SKU {item.sku!r}"))
        elif not product.active:
            problems.append(_problem(field, "inactive_sku", f"product {item.sku!r} is not available"))
        elif product.currency != data.currency:
            problems.append(
                _problem(
                    field,
                    "currency_mismatch",
                    f"product {item.sku!r} is priced in {product.currency}, the order is in {data.currency}",
                )
            )
    if problems:
        first = problems[0]["message"]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ApiError(422, "invalid_items", f"order items are invalid: {first}{more}", problems)


def _created(
    order: repository.NewOrder, token: str, created_at: datetime, updated_at: datetime
) -> OrderCreated:
    currency = order.currency
    customer = order.customer
    return OrderCreated(
        id=str(order.id),
        reference=order.reference,
        status=OrderStatus.PENDING,
        currency=currency,
        total_amount=order.total_amount,
        amount=format_amount(order.total_amount, currency),
        lines=[OrderLineOut.of(line, currency) for line in order.lines],
        customer=CustomerOut(
            name=customer["name"],
            email=customer["email"],
            phone=customer["phone"],
            company=customer["company"],
            address=AddressOut.model_validate(customer["address"]) if customer["address"] else None,
        ),
        payment=None,
        transitions=None,
        created_at=created_at,
        updated_at=updated_at,
        access_token=token,
    )


def _problem(field: str, kind: str, message: str) -> dict[str, Any]:
    return {"field": field, "message": message, "type": kind}


def _parse_order_id(order_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(order_id)
    except (ValueError, AttributeError, TypeError):
        return None


async def get_order_for_bearer(
    session: AsyncSession,
    order_id: str,
    bearer: str | None,
    settings: Settings,
    *,
    with_lines: bool = False,
) -> Order:
    """The order, if `bearer` is its access token or the operator key; NotFound otherwise.

    No token, a wrong token, another order's token, a malformed id and an unknown id all raise the
    same NotFound, so an id alone reveals nothing.
    """
    access = order_access(order_id, bearer, settings)
    order = await repository.get_order(session, access.order_id, with_lines=with_lines)
    if order is None:
        raise NotFound("order")
    _check_access(access, order.access_token_hash)
    return order


@dataclass(frozen=True, slots=True)
class OrderAccess:
    """A request's claim on an order, before any read: the order's id and the hash of the bearer's
    access token, or None when the bearer is the operator key (which may act on any order)."""

    order_id: uuid.UUID
    token_hash: str | None


def order_access(order_id: str, bearer: str | None, settings: Settings) -> OrderAccess:
    """The claim `bearer` makes on `order_id`; NotFound for a malformed id or no bearer, as for a
    wrong one, so that an id alone reveals nothing. Whether it holds is for the database to say
    (`authorize_order`, or a statement that checks the hash itself)."""
    parsed = _parse_order_id(order_id)
    if parsed is None or bearer is None:
        raise NotFound("order")
    return OrderAccess(parsed, None if is_admin(bearer, settings) else hash_access_token(bearer))


async def authorize_order(engine: AsyncEngine, access: OrderAccess) -> None:
    """NotFound unless the order exists and `access` holds on it, in the same cases as
    `get_order_for_bearer`. For a route that needs the right to act on the order and not the order
    itself: one autocommitted read of its token hash, no transaction."""
    async with driver_connection(engine) as conn:
        stored_hash = await repository.access_token_hash(conn, access.order_id)
    _check_access(access, stored_hash)


def _check_access(access: OrderAccess, stored_hash: str | None) -> None:
    """NotFound unless the order exists (`stored_hash`, its token's hash) and `access` holds on it:
    the operator's, or the same hash. The same answer in every case."""
    if stored_hash is None:
        raise NotFound("order")
    if access.token_hash is not None and not secrets_match(access.token_hash, stored_hash):
        raise NotFound("order")


@dataclass(frozen=True)
class OrderView:
    order: Order
    payment: PaymentSession | None
    transitions: list[OrderTransition] | None  # only for the operator


async def read_order(
    session: AsyncSession, order_id: str, bearer: str | None, settings: Settings
) -> OrderView:
    order = await get_order_for_bearer(session, order_id, bearer, settings, with_lines=True)
    payment = await payments_repository.latest_session(session, order.id)
    transitions = None
    if is_admin(bearer, settings):
        transitions = await repository.transitions_of(session, order.id)
    return OrderView(order=order, payment=payment, transitions=transitions)


@dataclass(frozen=True)
class OrderListPage:
    orders: list[Order]
    next_cursor: str | None


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, ident = raw.partition("|")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        # In UTC now, not when the query is sent: year 1 at +14:00 or year 9999 at -14:00 parse, but
        # fall outside what a datetime can hold once converted.
        return created_at.astimezone(UTC), uuid.UUID(ident)
    except (ValueError, OverflowError, UnicodeDecodeError, binascii.Error):
        raise ApiError(
            422,
            "invalid_cursor",
            "cursor is not one this API returned; start again without it",
            [{"field": "query.cursor", "message": "not a valid cursor", "type": "invalid_cursor"}],
        ) from None


async def list_orders(
    session: AsyncSession,
    *,
    status: OrderStatus | None = None,
    reference: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> OrderListPage:
    """Newest first, keyset-paginated on (created_at, id): stable while new orders arrive."""
    after = decode_cursor(cursor) if cursor is not None else None
    orders = await repository.page_of_orders(
        session, status=status, reference=reference, after=after, limit=limit + 1
    )
    next_cursor = None
    if len(orders) > limit:
        orders = orders[:limit]
        next_cursor = encode_cursor(orders[-1].created_at, orders[-1].id)
    return OrderListPage(orders=orders, next_cursor=next_cursor)


async def resolve_review(
    session: AsyncSession, order_id: str, target: OrderStatus, note: str
) -> tuple[Order, OrderTransition]:
    """An operator resolves an order's review (the payments writer's `resolve_review`): 404 for an
    unknown order, 409 `review_not_open` when it is not in `needs_review` (or no longer: another
    operator resolved it first)."""
    parsed = _parse_order_id(order_id)
    if parsed is None:
        raise NotFound("order")
    try:
        transition = await writer.resolve_review(session, parsed, target, note=note)
    except LookupError:
        raise NotFound("order") from None
    except writer.ReviewNotOpen as exc:
        raise ApiError(409, "review_not_open", f"{exc}; nothing was changed") from None
    except ValueError as exc:
        detail = {"field": "body.to", "message": str(exc), "type": "invalid_resolution"}
        raise ApiError(422, "invalid_resolution", str(exc), [detail]) from None
    order = await repository.get_order(session, parsed)
    assert order is not None
    return order, transition

"""What the console's pages show and what its actions do, over the domains' own services: the sync
is the operator API's, refunds go through the refund service, reviews through the payments
writer (`orders.service.resolve_review`), replays through the events service."""

from __future__ import annotations

import contextlib
import json
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.admin import repository
from app.config import Settings
from app.db import transaction
from app.errors import ApiError, NotFound
from app.events import repository as events_repository
from app.events import service as events_service
from app.events.schemas import InboundReplayRequest, OutboundEventOut
from app.models import Order, OrderTransition, PaymentSession, Payout, PayoutTransition, ProviderEvent, Refund
from app.orders import repository as orders_repository
from app.orders import service as orders_service
from app.orders.states import OrderStatus
from app.payments import refunds as refunds_service
from app.payments import repository as payments_repository
from app.payments import service as payments_service
from app.payouts import service as payouts_service
from app.providers.base import Provider, ProviderError

PAGE_SIZE = 50
MAX_PAGE = 200  # offset pagination, bounded: at most 10,000 rows deep
EVENTS_SHOWN = 200
RAW_BODY_SHOWN = 64 * 1024


@dataclass(frozen=True)
class InboundView:
    event: ProviderEvent
    raw: str


def raw_text(body: bytes) -> str:
    """A stored webhook body as text for a person: gunzipped when it came gzipped (bounded), bytes
    that are not UTF-8 replaced. The page escapes it."""
    if body[:2] == b"\x1f\x8b":
        with contextlib.suppress(zlib.error):  # not gzip after all: shown as it is
            body = zlib.decompressobj(wbits=31).decompress(body, RAW_BODY_SHOWN)
    text = body[:RAW_BODY_SHOWN].decode("utf-8", errors="replace")
    return text + ("\n[…]" if len(body) > RAW_BODY_SHOWN else "")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def day_range(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """[start 00:00 UTC, the day after end 00:00 UTC): both days included."""
    utc = UTC
    return (
        datetime.combine(start, time(), utc) if start else None,
        datetime.combine(end + timedelta(days=1), time(), utc) if end else None,
    )


async def list_orders(
    db: AsyncSession,
    *,
    status: OrderStatus | None,
    provider: str | None,
    reference: str | None,
    created_from: date | None,
    created_to: date | None,
    page: int,
) -> tuple[list[Order], bool]:
    """One page of orders and whether another follows."""
    start, end = day_range(created_from, created_to)
    orders = await repository.page_of_orders(
        db,
        status=status,
        provider=provider,
        reference=reference,
        created_from=start,
        created_to=end,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE + 1,
    )
    return orders[:PAGE_SIZE], len(orders) > PAGE_SIZE


@dataclass(frozen=True)
class OrderDetail:
    order: Order
    transitions: list[OrderTransition]
    sessions: list[PaymentSession]
    refunds: list[Refund]
    inbound: list[InboundView]
    outbound: list[OutboundEventOut]


async def _outbound(
    db: AsyncSession, *, order_id: uuid.UUID | None = None, payout_id: uuid.UUID | None = None
) -> list[OutboundEventOut]:
    events = await events_repository.list_events(
        db, order_id=order_id, payout_id=payout_id, limit=EVENTS_SHOWN
    )
    events.reverse()  # oldest first, like the history
    deliveries = await events_repository.deliveries_of(db, [e.id for e in events])
    return [OutboundEventOut.of(e, deliveries[e.id]) for e in events]


async def _inbound(db: AsyncSession, pairs: set[tuple[str, str]]) -> list[InboundView]:
    events = await repository.provider_events_naming(db, sorted(pairs), limit=EVENTS_SHOWN)
    return [InboundView(event=e, raw=raw_text(e.raw_body)) for e in events]


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(what) from None


async def order_currency(db: AsyncSession, order_id: uuid.UUID) -> str:
    order = await orders_repository.get_order(db, order_id)
    if order is None:
        raise NotFound("order")
    return order.currency


async def order_detail(db: AsyncSession, order_id: str) -> OrderDetail:
    order = await orders_repository.get_order(db, parse_id(order_id, "order"), with_lines=True)
    if order is None:
        raise NotFound("order")
    sessions = await repository.sessions_of(db, order.id)
    refunds = await payments_repository.refunds_of(db, order.id)
    pairs = {(s.provider, s.provider_session_id) for s in sessions if s.provider_session_id}
    pairs |= {(r.provider, r.provider_refund_id) for r in refunds if r.provider_refund_id}
    return OrderDetail(
        order=order,
        transitions=await orders_repository.transitions_of(db, order.id),
        sessions=sessions,
        refunds=refunds,
        inbound=await _inbound(db, pairs),
        outbound=await _outbound(db, order_id=order.id),
    )


async def list_payouts(
    db: AsyncSession,
    *,
    status: Any,
    reference: str | None,
    created_from: date | None,
    created_to: date | None,
    page: int,
) -> tuple[list[Payout], bool]:
    start, end = day_range(created_from, created_to)
    payouts = await repository.page_of_payouts(
        db,
        status=status,
        reference=reference,
        created_from=start,
        created_to=end,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE + 1,
    )
    return payouts[:PAGE_SIZE], len(payouts) > PAGE_SIZE


@dataclass(frozen=True)
class PayoutDetail:
    payout: Payout
    transitions: list[PayoutTransition]
    inbound: list[InboundView]
    outbound: list[OutboundEventOut]


async def payout_detail(db: AsyncSession, payout_id: str) -> PayoutDetail:
    payout, transitions = await payouts_service.read_payout(db, payout_id)
    pairs = {(payout.provider, payout.provider_payout_id)} if payout.provider_payout_id else set()
    return PayoutDetail(
        payout=payout,
        transitions=transitions,
        inbound=await _inbound(db, pairs),
        outbound=await _outbound(db, payout_id=payout.id),
    )


# --- actions -------------------------------------------------------------------------------------


async def sync_order(
    sessionmaker: async_sessionmaker[AsyncSession], order_id: uuid.UUID, providers: Mapping[str, Provider]
) -> None:
    """The operator API's "sync now": the latest session, then the open refunds, each read from the
    provider with no transaction open and applied by the writer in a short one."""
    try:
        await payments_service.sync_latest_session(sessionmaker, order_id, providers)
    except LookupError:
        raise ApiError(404, "no_payment_session", "this order has no payment session to sync") from None
    except (ProviderError, TimeoutError) as exc:
        raise ApiError(502, "provider_error", f"the provider could not answer: {exc}") from exc
    try:
        await refunds_service.sync_open_refunds(sessionmaker, order_id, providers)
    except (ProviderError, TimeoutError) as exc:
        raise ApiError(502, "provider_error", f"the provider could not answer about a refund: {exc}") from exc


async def refund(
    sessionmaker: async_sessionmaker[AsyncSession],
    order_id: uuid.UUID,
    providers: Mapping[str, Provider],
    settings: Settings,
    *,
    amount: int | None,
    reason: str | None,
    idempotency_key: str,
) -> Refund:
    created, _ = await refunds_service.create_refund(
        sessionmaker,
        order_id,
        providers,
        settings,
        refunds_service.RefundAsk(
            amount=amount, reason=reason, currency=None, idempotency_key=idempotency_key
        ),
    )
    return created


async def resolve_review(
    sessionmaker: async_sessionmaker[AsyncSession], order_id: uuid.UUID, target: OrderStatus, note: str
) -> None:
    async with transaction(sessionmaker) as db:
        await orders_service.resolve_review(db, str(order_id), target, note)


async def replay_outbound(sessionmaker: async_sessionmaker[AsyncSession], webhook_id: str) -> int:
    async with transaction(sessionmaker) as db:
        return await events_service.replay_event(db, webhook_id)


async def replay_inbound(sessionmaker: async_sessionmaker[AsyncSession], event_id: int) -> int:
    async with transaction(sessionmaker) as db:
        ids = await events_service.replay_inbound(db, InboundReplayRequest(event_ids=[event_id]))
    if not ids:
        raise ApiError(409, "event_busy", "no such provider event, or a worker is processing it right now")
    return len(ids)


async def sync_payout(
    sessionmaker: async_sessionmaker[AsyncSession], providers: Mapping[str, Provider], payout_id: str
) -> None:
    await payouts_service.sync_now(sessionmaker, providers, payout_id)

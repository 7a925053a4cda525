"""Payment sessions: open one for an order, and sync one with its provider.

Provider calls never run while this module holds an order or session row lock, except in
`open_session`, where the order lock is what turns a double click into one provider session.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import ApiError
from app.logging_setup import get_logger
from app.models import Order, PaymentSession
from app.models.payments import latest_session_of
from app.money import to_decimal
from app.orders.states import RETRYABLE, OrderStatus
from app.payments import reconcile
from app.payments.reconcile import Source
from app.providers.base import Payer, Provider, ProviderError, SessionRequest

log = get_logger(__name__)

# Sessions in these states may still receive the payer; a double click gets the same one back.
OPEN_STATUSES = (OrderStatus.AWAITING_PAYMENT.value, OrderStatus.PROCESSING.value)
# How long past a session's expiry the provider may still report it open before we expire it.
EXPIRY_GRACE = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SessionOptions:
    language: str | None = None
    bank_id: str | None = None
    payer_ip: str | None = None


def get_provider(providers: dict[str, Provider], name: str) -> Provider:
    provider = providers.get(name)
    if provider is None:
        raise ApiError(
            503,
            "provider_not_configured",
            f"payment provider {name!r} is not configured on this service",
        )
    return provider


async def open_session(
    db: AsyncSession,
    order_id: uuid.UUID,
    provider: Provider,
    settings: Settings,
    options: SessionOptions,
) -> tuple[PaymentSession, bool]:
    """The order's open session, or a new one; the flag says whether it was opened now."""
    order = await reconcile.lock_order(db, order_id)
    now = utcnow()
    open_session_row = await db.scalar(
        select(PaymentSession)
        .where(
            PaymentSession.order_id == order.id,
            PaymentSession.status.in_(OPEN_STATUSES),
            PaymentSession.expires_at > now,
        )
        .order_by(PaymentSession.created_at.desc())
        .limit(1)
    )
    if open_session_row is not None:
        return open_session_row, False
    status = OrderStatus(order.status)
    if status not in RETRYABLE and status is not OrderStatus.AWAITING_PAYMENT:
        raise ApiError(
            409, "order_not_payable", f"order is {status.value}; no new payment session can be opened"
        )

    state_token = secrets.token_urlsafe(32)
    request = SessionRequest(
        amount=to_decimal(order.total_amount, order.currency),
        currency=order.currency,
        communication=order.reference,
        state=state_token,
        redirect_uri=settings.callback_url,
        origin_uri=settings.storefront_url,
        payer=Payer(
            name=order.customer_name,
            email=order.customer_email,
            phone=order.customer_phone,
            company=order.customer_company,
            address=order.customer_address,
            ip=options.payer_ip,
        ),
        expiry_seconds=settings.payment_session_expiry_seconds,
        language=options.language,
        bank_id=options.bank_id,
    )
    try:
        created = await provider.create_session(request)
    except ProviderError as exc:
        log.warning("provider_create_session_failed", order_id=str(order.id), error=str(exc))
        raise ApiError(
            503 if exc.retryable else 502,
            "provider_unavailable" if exc.retryable else "provider_error",
            "the payment provider could not open a session; try again shortly"
            if exc.retryable
            else f"the payment provider refused the session ({exc.code or exc.http_status})",
        ) from exc

    session = PaymentSession(
        order_id=order.id,
        provider=provider.name,
        provider_session_id=created.provider_session_id,
        state_token=state_token,
        connect_url=created.connect_url,
        amount=order.total_amount,
        currency=order.currency,
        communication=order.reference,
        status=OrderStatus.AWAITING_PAYMENT.value,
        expires_at=now + timedelta(seconds=settings.payment_session_expiry_seconds),
    )
    db.add(session)
    await db.flush()
    if status is not OrderStatus.AWAITING_PAYMENT:
        reconcile.record_transition(
            db, order, OrderStatus.AWAITING_PAYMENT, source=Source.API, session=session
        )
    await db.flush()
    log.info(
        "payment_session_opened", order_id=str(order.id), provider_session_id=created.provider_session_id
    )
    return session, True


async def sync_session(
    db: AsyncSession,
    session: PaymentSession,
    providers: dict[str, Provider],
    *,
    source: str,
    expire_if_stale: bool = False,
    provider_timeout: float | None = None,
) -> reconcile.ApplyResult:
    """Ask the provider for the truth about `session` and apply it.

    Raises ProviderError when the provider cannot answer (TimeoutError past `provider_timeout`,
    which bounds the provider call only, never the database write); the caller decides.
    With `expire_if_stale`, a session the provider still calls open well past its expiry is
    expired locally (a later payment on it still moves the order to paid).
    """
    provider = get_provider(providers, session.provider)
    observed_at = utcnow()
    async with asyncio.timeout(provider_timeout):
        snapshot = await provider.get_payment(session.provider_session_id)
    override = None
    reason = None
    if (
        expire_if_stale
        and snapshot.status is OrderStatus.AWAITING_PAYMENT
        and session.expires_at + EXPIRY_GRACE < observed_at
    ):
        override, reason = OrderStatus.EXPIRED, "provider still awaiting the payer after the session expired"
    return await reconcile.apply(
        db,
        session.id,
        snapshot,
        source=source,
        observed_at=observed_at,
        override=override,
        override_reason=reason,
    )


async def find_session_by_state(db: AsyncSession, state_token: str) -> PaymentSession | None:
    return await db.scalar(select(PaymentSession).where(PaymentSession.state_token == state_token))


async def find_session_by_provider_id(
    db: AsyncSession, provider: str, provider_session_id: str
) -> PaymentSession | None:
    return await db.scalar(
        select(PaymentSession).where(
            PaymentSession.provider == provider, PaymentSession.provider_session_id == provider_session_id
        )
    )


async def latest_session(db: AsyncSession, order_id: uuid.UUID) -> PaymentSession | None:
    return await db.scalar(latest_session_of(order_id))


class CallbackRejected(Exception):
    """The redirect does not belong to a session we opened; nothing was written."""


@dataclass(frozen=True)
class CallbackOutcome:
    order_id: uuid.UUID
    status: str  # the order's status to show, or "processing" when the provider could not answer


async def handle_callback(
    db: AsyncSession,
    providers: dict[str, Provider],
    *,
    state: str | None,
    provider_session_id: str | None,
    provider_timeout: float,
) -> CallbackOutcome:
    """Bind the redirect to our session, then apply what the provider (not the query) says."""
    if not state or not provider_session_id or len(state) > 512 or len(provider_session_id) > 128:
        raise CallbackRejected("the payment link is incomplete")
    session = await find_session_by_state(db, state)
    if session is None or not secrets.compare_digest(
        session.provider_session_id.encode(), provider_session_id.encode()
    ):
        raise CallbackRejected("this payment link does not match a payment we started")
    order_id = session.order_id
    try:
        async with db.begin_nested():
            result = await sync_session(
                db, session, providers, source=Source.CALLBACK, provider_timeout=provider_timeout
            )
    except Exception as exc:  # the payer never sees a 500
        # The webhook or the sweeper finishes the job; meanwhile show what we know.
        log.warning("callback_sync_failed", session_id=str(session.id), error=f"{type(exc).__name__}: {exc}")
        order_status = await db.scalar(select(Order.status).where(Order.id == order_id))
        shown = order_status if order_status not in (*OPEN_STATUSES, OrderStatus.PENDING.value) else None
        return CallbackOutcome(order_id, shown or OrderStatus.PROCESSING.value)
    return CallbackOutcome(session.order_id, result.order_status.value)

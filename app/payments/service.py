"""Payment sessions: open one for an order, read one from its provider, and the payer's return.

No provider call runs while a transaction or a row lock is held here: every flow is a short
transaction before the call (reserve, look up), the call, and a short transaction after (apply).
That is why these functions take a sessionmaker rather than a request's session.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import request_id
from app.config import Settings
from app.db import driver_connection, transaction
from app.errors import ApiError, NotFound
from app.logging_setup import get_logger
from app.models import Order, PaymentSession, TransitionSource
from app.money import to_decimal
from app.orders.states import PAYABLE, OrderStatus
from app.payments import repository, writer
from app.payments.repository import EXPIRY_GRACE
from app.payments.schemas import PaymentSessionRequest
from app.providers.base import (
    Payer,
    PaymentSnapshot,
    PaymentStatus,
    Provider,
    ProviderError,
    SessionRequest,
)
from app.providers.registry import default_provider, return_hints, return_names, returned_state

if TYPE_CHECKING:  # the orders service imports the app's dependencies, which import this module
    from app.orders.service import OrderAccess

log = get_logger(__name__)

# How often a second click polls the reservation the first click is opening at the provider.
_RESERVATION_POLL_SECONDS = 0.05


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SessionOptions:
    language: str | None = None
    bank_id: str | None = None
    payer_ip: str | None = None


def get_provider(providers: Mapping[str, Provider], name: str) -> Provider:
    provider = providers.get(name)
    if provider is None:
        raise ApiError(
            503,
            "provider_not_configured",
            f"payment provider {name!r} is not configured on this service",
        )
    return provider


def opening_deadline(settings: Settings) -> float:
    """How long a request opening a session waits for the provider before giving up: every
    attempt (the token, then the request and its retries) may take the whole timeout."""
    return settings.provider_timeout_seconds * (settings.provider_max_retries + 2)


def reservation_timeout(settings: Settings) -> timedelta:
    """A reservation older than this was abandoned by a process that died: its opener always
    gives up on the provider after `opening_deadline`, and then records the outcome at once."""
    return timedelta(seconds=opening_deadline(settings) + 30)


def _session_request(
    order: repository.LockedOrder, state_token: str, settings: Settings, options: SessionOptions
) -> SessionRequest:
    return SessionRequest(
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


def _payable(status: OrderStatus) -> bool:
    return status in PAYABLE


def _not_payable(status: OrderStatus) -> ApiError:
    return ApiError(
        409, "order_not_payable", f"order is {status.value}; no new payment session can be opened"
    )


@dataclass(frozen=True)
class _Reserved:
    session_id: uuid.UUID
    order: repository.LockedOrder  # as read when reserving
    request: SessionRequest


async def _reserve(
    engine: AsyncEngine, access: OrderAccess, provider: Provider, settings: Settings, options: SessionOptions
) -> _Reserved | None:
    """The common case, in one statement: the bearer's payable order with no session open (or being
    opened) gets its reservation. None otherwise, with nothing written; NotFound when the order is
    not the bearer's."""
    now = utcnow()
    session_id = uuid.uuid4()
    state_token = secrets.token_urlsafe(32)
    async with driver_connection(engine) as conn:
        reservation = await writer.reserve_session(
            conn,
            access.order_id,
            token_hash=access.token_hash,
            session_id=session_id,
            provider=provider.name,
            state_token=state_token,
            now=now,
            expiry_seconds=settings.payment_session_expiry_seconds,
        )
    if reservation is None:
        raise NotFound("order")
    if not reservation.reserved:
        return None
    order = reservation.order
    return _Reserved(session_id, order, _session_request(order, state_token, settings, options))


class _Retry:
    """Nothing stands in the way of a reservation any more: try again."""


_RETRY = _Retry()


async def _find_open(
    db: AsyncSession, order_id: uuid.UUID, settings: Settings
) -> PaymentSession | _Retry | None:
    """Why no reservation was made, decided under the order's lock: the open session to answer
    with, None while another request is opening one at the provider, or `_RETRY`."""
    order = await repository.lock_order(db, order_id)
    now = utcnow()
    existing = await repository.open_session_of(db, order.id, now)
    if existing is not None and existing.status is not PaymentStatus.CREATING:
        if order.status is OrderStatus.AWAITING_PAYMENT or (
            order.status is OrderStatus.PROCESSING and existing.status is PaymentStatus.PROCESSING
        ):
            return existing  # a double click: the session the order is waiting on
        if not _payable(order.status):
            # Another session settled (or is settling) the order: never send the payer to pay twice.
            raise _not_payable(order.status)
        return existing
    if existing is not None:
        if not await repository.is_older_than(db, existing.id, reservation_timeout(settings)):
            return None
        await writer.fail_reservation(db, existing.id, "abandoned: the process opening it stopped")
    if not _payable(order.status):
        raise _not_payable(order.status)
    return _RETRY  # the session in the way has just been failed, or lapsed meanwhile


async def open_requested_session(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    providers: Mapping[str, Provider],
    access: OrderAccess,
    requested: PaymentSessionRequest,
    *,
    payer_ip: str | None,
    outbox_recorded: Callable[[], None],
) -> tuple[PaymentSession, bool]:
    """`open_session` with the options a shopper sent (valid, and naming an enabled provider or
    none): with the provider they name, or this service's default one. The route and the layer
    before it (app/payments/session_route.py) both open sessions through here."""
    name = requested.provider or default_provider(settings, providers)
    return await open_session(
        engine,
        sessionmaker,
        access,
        get_provider(providers, name or ""),
        settings,
        SessionOptions(language=requested.language, bank_id=requested.bank_id, payer_ip=payer_ip),
        outbox_recorded=outbox_recorded,
    )


async def open_session(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    access: OrderAccess,
    provider: Provider,
    settings: Settings,
    options: SessionOptions,
    *,
    outbox_recorded: Callable[[], None],
) -> tuple[PaymentSession, bool]:
    """The order's open session, or a new one; the flag says whether it was opened now.

    A double click opens one session at the provider: the first request reserves a `creating`
    row under the order's lock and commits before calling the provider; the second finds that
    reservation under the same lock, waits (holding nothing) until the first has attached the
    provider's session, and returns it. `outbox_recorded` is called once an outbound event is
    committed (the order moved). `access` is checked by the reservation itself: NotFound unless
    the bearer may act on the order.
    """
    order_id = access.order_id
    request_id.bind(order_id=str(order_id))
    deadline = time.monotonic() + reservation_timeout(settings).total_seconds()
    found: PaymentSession | _Retry | None = _RETRY
    while True:
        if found is _RETRY:
            reserved = await _reserve(engine, access, provider, settings, options)
            if reserved is not None:
                break
        # While another request opens the session, only look again: no reservation can be made.
        async with transaction(sessionmaker) as db:
            found = await _find_open(db, order_id, settings)
        if isinstance(found, PaymentSession):
            return found, False
        if time.monotonic() > deadline:
            raise ApiError(
                409,
                "payment_session_in_progress",
                "a payment session for this order is being opened; retry shortly",
            )
        if found is None:
            await asyncio.sleep(_RESERVATION_POLL_SECONDS)

    try:
        async with asyncio.timeout(opening_deadline(settings)):
            created = await provider.create_session(reserved.request)
    except TimeoutError as exc:
        log.warning("provider_create_session_timed_out", order_id=str(order_id))
        async with transaction(sessionmaker) as db:
            await writer.fail_reservation(db, reserved.session_id, "the provider did not answer in time")
        raise ApiError(
            503, "provider_unavailable", "the payment provider could not open a session; try again shortly"
        ) from exc
    except ProviderError as exc:
        log.warning("provider_create_session_failed", order_id=str(order_id), error=str(exc))
        async with transaction(sessionmaker) as db:
            await writer.fail_reservation(db, reserved.session_id, str(exc))
        raise ApiError(
            503 if exc.retryable else 502,
            "provider_unavailable" if exc.retryable else "provider_error",
            "the payment provider could not open a session; try again shortly"
            if exc.retryable
            else f"the payment provider refused the session ({exc.code or exc.http_status})",
        ) from exc
    except Exception as exc:
        async with transaction(sessionmaker) as db:
            await writer.fail_reservation(db, reserved.session_id, f"{type(exc).__name__}: {exc}")
        raise

    try:
        async with driver_connection(engine) as conn:
            attached = await writer.attach_session(conn, reserved.order, reserved.session_id, created)
    except Exception:
        log.exception(
            "payment_session_attach_failed",
            order_id=str(order_id),
            provider_session_id=created.provider_session_id,
        )
        async with transaction(sessionmaker) as db:
            await writer.fail_reservation(db, reserved.session_id, "opened at the provider but not recorded")
        raise
    if attached is None:  # declared abandoned while the provider answered
        log.warning(
            "payment_session_opened_too_late",
            order_id=str(order_id),
            provider_session_id=created.provider_session_id,
        )
        raise ApiError(503, "provider_unavailable", "the payment provider answered too late; try again")
    attached.committed()
    if attached.transition is not None:
        outbox_recorded()
    if not _payable(attached.order_status):
        # Another session settled the order while this one was opened: never send the payer to pay twice.
        raise _not_payable(attached.order_status)
    log.info(
        "payment_session_opened", order_id=str(order_id), provider_session_id=created.provider_session_id
    )
    return attached.session, True


# --- reading a session from its provider ---------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """A provider's answer about one session and when it was requested."""

    snapshot: PaymentSnapshot
    observed_at: datetime


async def observe(
    provider: Provider, provider_session_id: str, *, max_wait: float | None = None
) -> Observation:
    """Ask the provider (no transaction may be open). TimeoutError past `max_wait` seconds."""
    observed_at = utcnow()
    async with asyncio.timeout(max_wait):
        snapshot = await provider.get_payment(provider_session_id)
    return Observation(snapshot, observed_at)


async def apply_observation(
    db: AsyncSession,
    session: PaymentSession,
    observation: Observation,
    *,
    source: TransitionSource,
    expire_if_stale: bool = False,
) -> writer.ApplyResult:
    """Apply a provider's answer within the caller's (short) transaction.

    With `expire_if_stale`, a session the provider still calls open well past its expiry is
    expired locally (a later payment on it still moves the order to paid).
    """
    override = reason = None
    if (
        expire_if_stale
        and observation.snapshot.status is PaymentStatus.OPEN
        and session.expires_at + EXPIRY_GRACE < observation.observed_at
    ):
        override, reason = (
            PaymentStatus.EXPIRED,
            "provider still awaiting the payer after the session expired",
        )
    return await writer.apply(
        db,
        session.id,
        observation.snapshot,
        source=source,
        observed_at=observation.observed_at,
        override=override,
        override_reason=reason,
    )


async def load_session(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID
) -> PaymentSession:
    async with sessionmaker() as db:
        session = await repository.get_session(db, session_id)
    if session is None:
        raise LookupError(f"payment session {session_id} not found")
    return session


async def sync_session(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: PaymentSession,
    providers: Mapping[str, Provider],
    *,
    source: TransitionSource,
    expire_if_stale: bool = False,
    provider_timeout: float | None = None,
) -> writer.ApplyResult:
    """Ask the provider for the truth about `session`, then apply it.

    Raises ProviderError when the provider cannot answer (TimeoutError past `provider_timeout`,
    which bounds the provider call only, never the database write); the caller decides.
    """
    if session.provider_session_id is None:
        raise LookupError("this payment session was never opened at the provider")
    provider = get_provider(providers, session.provider)
    observation = await observe(provider, session.provider_session_id, max_wait=provider_timeout)
    async with transaction(sessionmaker) as db:
        return await apply_observation(
            db, session, observation, source=source, expire_if_stale=expire_if_stale
        )


async def sync_latest_session(
    sessionmaker: async_sessionmaker[AsyncSession], order_id: uuid.UUID, providers: Mapping[str, Provider]
) -> writer.ApplyResult:
    """The operator's "sync now": the order's latest session, read from its provider and applied."""
    async with sessionmaker() as db:
        session = await repository.latest_session(db, order_id)
    if session is None:
        raise LookupError("payment session")
    return await sync_session(sessionmaker, session, providers, source=TransitionSource.OPERATOR)


# --- the payer's return --------------------------------------------------------------------------


class CallbackRejected(Exception):
    """The redirect does not belong to a session we opened; nothing was written."""


@dataclass(frozen=True)
class CallbackOutcome:
    order_id: uuid.UUID
    status: str  # the order's status to show, or "processing" when the provider could not answer


async def handle_callback(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: Mapping[str, Provider],
    query: Mapping[str, str],
    *,
    provider_timeout: float,
) -> CallbackOutcome:
    """Bind the return to our session, then apply what the provider (not the query) says."""
    hints = return_hints(providers, query)
    state = returned_state(hints)
    if state is None:
        raise CallbackRejected("the payment link is incomplete")
    async with sessionmaker() as db:
        session = await repository.find_session_by_state(db, state)
    if session is None or not return_names(hints, session.provider, session.provider_session_id):
        raise CallbackRejected("this payment link does not match a payment we started")
    request_id.bind(order_id=str(session.order_id), payment_session_id=str(session.id))
    try:
        result = await sync_session(
            sessionmaker,
            session,
            providers,
            source=TransitionSource.CALLBACK,
            provider_timeout=provider_timeout,
        )
    except Exception as exc:  # the payer never sees a 500
        # The webhook or the sweeper finishes the job; meanwhile show what we know.
        log.warning("callback_sync_failed", session_id=str(session.id), error=f"{type(exc).__name__}: {exc}")
        return CallbackOutcome(session.order_id, await _shown_status(sessionmaker, session.order_id))
    return CallbackOutcome(session.order_id, result.order_status.value)


async def _shown_status(sessionmaker: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> str:
    try:
        async with sessionmaker() as db:
            order = await db.get(Order, order_id)
    except Exception:  # the database may be what failed
        return OrderStatus.PROCESSING.value
    if order is None or order.status in (
        OrderStatus.PENDING,
        OrderStatus.AWAITING_PAYMENT,
        OrderStatus.PROCESSING,
    ):
        return OrderStatus.PROCESSING.value
    return order.status.value

"""Operator refunds: reserve under the order's lock, ask the provider with no transaction open,
attach (or fail) in a second short transaction; read a refund back from its provider and apply it.

The total of an order's refunds never exceeds what was paid, whatever runs at once: a refund is
reserved (`creating`) under the order's row lock after counting every refund that is not failed,
cancelled or expired (reservations included), and that reservation counts from its commit on.
The provider is called only after the commit, so a slow provider holds no connection and no lock.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import transaction
from app.errors import ApiError
from app.logging_setup import get_logger
from app.models import Order, PaymentSession, Refund, TransitionSource
from app.money import format_amount, to_decimal
from app.payments import repository, writer
from app.payments.service import Observation, get_provider, observe, opening_deadline, reservation_timeout
from app.providers.base import PaymentStatus, Provider, ProviderError, RefundRequest

log = get_logger(__name__)

_RESERVATION_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class RefundAsk:
    """What the operator asked for."""

    amount: int | None  # minor units; None = the rest of what was paid
    reason: str | None
    currency: str | None
    idempotency_key: str | None


@dataclass(frozen=True)
class _Reserved:
    refund_id: uuid.UUID
    provider: Provider
    request: RefundRequest


def _not_refundable(order: Order) -> ApiError:
    return ApiError(
        409,
        "order_not_refundable",
        f"order is {order.status.value}; only a paid or partially refunded order can be refunded",
    )


def _same_request(refund: Refund, ask: RefundAsk) -> bool:
    return (ask.amount is None or ask.amount == refund.amount) and ask.reason == refund.reason


async def _reserve_or_find(
    db: AsyncSession, order_id: uuid.UUID, providers: Mapping[str, Provider], ask: RefundAsk
) -> Refund | _Reserved | None:
    """Under the order's lock: the refund this Idempotency-Key already made, a new reservation, or
    None while the request that made it is still at the provider. Raises ApiError (nothing written)
    when the refund is not possible."""
    order = await repository.lock_order(db, order_id)
    if ask.idempotency_key is not None:
        existing = await repository.refund_by_idempotency_key(db, order.id, ask.idempotency_key)
        if existing is not None:
            if not _same_request(existing, ask):
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request; use a new key",
                )
            return None if existing.status is PaymentStatus.CREATING else existing
    if ask.currency is not None and ask.currency != order.currency:
        raise ApiError(
            422,
            "currency_mismatch",
            f"the order was paid in {order.currency}, not {ask.currency}",
            [{"field": "body.currency", "message": f"must be {order.currency}", "type": "currency_mismatch"}],
        )
    if order.status not in writer.REFUNDABLE:
        raise _not_refundable(order)
    paid_id = await repository.session_that_paid(db, order.id)
    paid = await repository.get_session(db, paid_id) if paid_id is not None else None
    if paid is None or paid.provider_session_id is None:
        raise _not_refundable(order)
    provider = get_provider(providers, paid.provider)
    if not provider.capabilities.refund:
        raise ApiError(
            409,
            "not_supported",
            f"payment provider {paid.provider!r} cannot refund; refund the payer directly",
        )
    counted = await repository.refund_total(db, order.id)
    refundable = paid.amount - counted
    amount = ask.amount if ask.amount is not None else refundable
    if refundable <= 0:
        raise ApiError(
            409, "nothing_to_refund", "everything paid for this order is refunded or being refunded"
        )
    if amount > refundable:
        raise ApiError(
            409,
            "refund_exceeds_payment",
            f"at most {format_amount(refundable, paid.currency)} {paid.currency} can still be refunded "
            f"(paid {format_amount(paid.amount, paid.currency)}, refunded or being refunded "
            f"{format_amount(counted, paid.currency)})",
            [{"field": "body.amount", "message": f"at most {refundable}", "type": "refund_exceeds_payment"}],
        )
    state_token = secrets.token_urlsafe(32)
    refund = writer.reserve_refund(
        db,
        order,
        paid,
        amount=amount,
        reason=ask.reason,
        state_token=state_token,
        idempotency_key=ask.idempotency_key,
    )
    await db.flush()
    return _Reserved(refund.id, provider, _refund_request(order, paid, amount, state_token))


def _refund_request(order: Order, paid: PaymentSession, amount: int, state_token: str) -> RefundRequest:
    assert paid.provider_session_id is not None
    return RefundRequest(
        provider_session_id=paid.provider_session_id,
        amount=to_decimal(amount, paid.currency),
        currency=paid.currency,
        communication=f"REFUND {order.reference}",
        state=state_token,
    )


async def create_refund(
    sessionmaker: async_sessionmaker[AsyncSession],
    order_id: uuid.UUID,
    providers: Mapping[str, Provider],
    settings: Settings,
    ask: RefundAsk,
) -> tuple[Refund, bool]:
    """Refund (part of) an order's payment; the flag says whether it was created now (False: the
    refund this Idempotency-Key made before)."""
    deadline = time.monotonic() + reservation_timeout(settings).total_seconds()
    while True:
        async with transaction(sessionmaker) as db:
            found = await _reserve_or_find(db, order_id, providers, ask)
        if isinstance(found, Refund):
            return await _read(sessionmaker, found.id), False
        if isinstance(found, _Reserved):
            break
        if time.monotonic() > deadline:
            raise ApiError(409, "refund_in_progress", "this refund is being created; retry shortly")
        await asyncio.sleep(_RESERVATION_POLL_SECONDS)

    try:
        async with asyncio.timeout(opening_deadline(settings)):
            created = await found.provider.create_refund(found.request)
    except ProviderError as exc:
        # A 4xx answer is a refusal: nothing was created. Anything else (no answer, 5xx, an
        # unreadable answer) may have created it: it stays counted, for a person to check.
        refused = exc.http_status is not None and 400 <= exc.http_status < 500
        log.warning("provider_create_refund_failed", order_id=str(order_id), error=str(exc), refused=refused)
        async with transaction(sessionmaker) as db:
            await writer.fail_refund(db, found.refund_id, str(exc), review=not refused)
        if refused:
            raise ApiError(
                409,
                "refund_refused",
                f"the payment provider refused the refund ({exc.code or exc.http_status}): {exc.args[0]}",
            ) from exc
        raise ApiError(
            502,
            "provider_error",
            "the payment provider did not confirm the refund; it is kept for review, check the provider",
        ) from exc
    except TimeoutError as exc:
        async with transaction(sessionmaker) as db:
            await writer.fail_refund(db, found.refund_id, "the provider did not answer in time", review=True)
        raise ApiError(
            502,
            "provider_error",
            "the payment provider did not answer in time; the refund is kept for review, check the provider",
        ) from exc
    except Exception as exc:
        async with transaction(sessionmaker) as db:
            await writer.fail_refund(db, found.refund_id, f"{type(exc).__name__}: {exc}", review=True)
        raise

    async with transaction(sessionmaker) as db:
        attached = await writer.attach_refund(db, found.refund_id, created)
    if attached is None:
        log.warning("refund_created_too_late", order_id=str(order_id), refund=created.provider_refund_id)
        raise ApiError(
            502, "provider_error", "the payment provider answered too late; the refund is kept for review"
        )
    log.info("refund_created", order_id=str(order_id), provider_refund_id=created.provider_refund_id)
    return await _read(sessionmaker, attached.id), True


async def _read(sessionmaker: async_sessionmaker[AsyncSession], refund_id: uuid.UUID) -> Refund:
    """The refund as committed (every column loaded, for the response)."""
    async with sessionmaker() as db:
        refund = await repository.get_refund(db, refund_id)
    assert refund is not None
    return refund


async def list_refunds(db: AsyncSession, order_id: uuid.UUID) -> list[Refund]:
    return await repository.refunds_of(db, order_id)


# --- reading a refund back from its provider ---------------------------------------------------


async def apply_refund_observation(
    db: AsyncSession, refund_id: uuid.UUID, observation: Observation, *, source: TransitionSource
) -> writer.RefundApplyResult:
    return await writer.apply_refund(
        db, refund_id, observation.snapshot, source=source, observed_at=observation.observed_at
    )


async def sync_refund(
    sessionmaker: async_sessionmaker[AsyncSession],
    refund_id: uuid.UUID,
    providers: Mapping[str, Provider],
    *,
    source: TransitionSource,
) -> writer.RefundApplyResult:
    """Ask the provider about one refund (no transaction open), then apply it in a short one."""
    async with sessionmaker() as db:
        refund = await repository.get_refund(db, refund_id)
    if refund is None or refund.provider_refund_id is None:
        raise LookupError(f"refund {refund_id} was never created at the provider")
    provider = get_provider(providers, refund.provider)
    observation = await observe(provider, refund.provider_refund_id)
    async with transaction(sessionmaker) as db:
        return await apply_refund_observation(db, refund_id, observation, source=source)


async def sync_open_refunds(
    sessionmaker: async_sessionmaker[AsyncSession], order_id: uuid.UUID, providers: Mapping[str, Provider]
) -> int:
    """The operator's "sync now" for the order's open refunds; how many were read."""
    async with sessionmaker() as db:
        ids = await repository.open_refund_ids(db, order_id)
    for refund_id in ids:
        await sync_refund(sessionmaker, refund_id, providers, source=TransitionSource.OPERATOR)
    return len(ids)

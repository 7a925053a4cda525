"""The sweeper: the polling fallback for callbacks that never came and webhooks that were lost.

Each pass claims a batch of unsettled sessions that nobody asked about recently (the claim bumps
`last_synced_at` under FOR UPDATE SKIP LOCKED and commits at once: a lease for one period), then
asks the provider about each one with no transaction open and applies the answer in a short one.
Two service processes never claim the same session in one period. It also fails reservations
whose opener died while the provider was opening them. Open refunds are polled the same way, and
payouts still moving by their own domain (`app.payouts.sync.sweep`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.db import transaction
from app.logging_setup import get_logger
from app.models import PaymentSession, TransitionSource
from app.payments import repository, writer
from app.payments.refunds import sync_refund
from app.payments.repository import EXPIRY_GRACE
from app.payments.service import load_session, sync_session, utcnow
from app.payouts import sync as payout_sync
from app.providers.base import PaymentSnapshot, PaymentStatus, Provider, ProviderError

log = get_logger(__name__)

# Reads in a row answered 404, past the session's expiry, before the sweeper settles it.
UNKNOWN_SESSION_ATTEMPTS = 3
_SETTLE_UNKNOWN = {
    PaymentStatus.OPEN: (
        PaymentStatus.EXPIRED,
        "expired: the provider no longer knows this session (404) after its expiry",
    ),
    PaymentStatus.PROCESSING: (
        PaymentStatus.NEEDS_REVIEW,
        "the provider no longer knows this session (404) it reported processing: check the money by hand",
    ),
}


@dataclass
class SweepResult:
    claimed: int = 0
    changed: int = 0
    errors: int = 0
    abandoned: int = 0
    refunds_claimed: int = 0
    payouts_claimed: int = 0


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: Mapping[str, Provider],
    *,
    stale_after: timedelta,
    reservation_timeout: timedelta,
    batch: int = 50,
) -> SweepResult:
    result = SweepResult()
    now = utcnow()
    async with transaction(sessionmaker) as db:
        for session_id in await repository.abandoned_reservations(db, older_than=reservation_timeout):
            if await writer.fail_reservation(db, session_id, "abandoned: the process opening it stopped"):
                result.abandoned += 1
    async with transaction(sessionmaker) as db:
        claimed = await repository.claim_stale_sessions(db, now=now, stale_after=stale_after, batch=batch)
    for session_id in claimed:
        result.claimed += 1
        session: PaymentSession | None = None
        try:
            session = await load_session(sessionmaker, session_id)
            outcome = await sync_session(
                sessionmaker, session, providers, source=TransitionSource.POLL, expire_if_stale=True
            )
            result.changed += int(outcome.order_changed)
        except Exception as exc:  # one bad session must not stop the pass
            if session is not None and await _settle_unknown(sessionmaker, session, exc, result):
                continue
            result.errors += 1
            error = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
            await _record_sync_error(sessionmaker, session_id, error)
            log.warning("sweeper_sync_failed", session_id=str(session_id), error=error)
    await _sweep_refunds(
        sessionmaker,
        providers,
        result,
        stale_after=stale_after,
        reservation_timeout=reservation_timeout,
        batch=batch,
    )
    payouts = await payout_sync.sweep(
        sessionmaker, providers, stale_after=stale_after, reservation_timeout=reservation_timeout, batch=batch
    )
    result.payouts_claimed += payouts.claimed
    result.changed += payouts.changed
    result.errors += payouts.errors
    result.abandoned += payouts.abandoned
    metrics.sweep_finished(
        sessions=result.claimed,
        refunds=result.refunds_claimed,
        payouts=result.payouts_claimed,
        errors=result.errors,
    )
    return result


async def _sweep_refunds(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: Mapping[str, Provider],
    result: SweepResult,
    *,
    stale_after: timedelta,
    reservation_timeout: timedelta,
    batch: int,
) -> None:
    """Refunds like sessions: open ones polled, reservations whose requester died handed to a
    person (the request may have reached the provider: never silently uncounted)."""
    now = utcnow()
    async with transaction(sessionmaker) as db:
        for refund_id in await repository.abandoned_refund_reservations(db, older_than=reservation_timeout):
            if await writer.fail_refund(
                db,
                refund_id,
                "abandoned: the process creating it stopped during the provider call",
                review=True,
            ):
                result.abandoned += 1
    async with transaction(sessionmaker) as db:
        claimed = await repository.claim_stale_refunds(db, now=now, stale_after=stale_after, batch=batch)
    for refund_id in claimed:
        result.refunds_claimed += 1
        try:
            outcome = await sync_refund(sessionmaker, refund_id, providers, source=TransitionSource.POLL)
            result.changed += int(outcome.order_changed)
        except Exception as exc:  # one bad refund must not stop the pass
            result.errors += 1
            error = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
            async with transaction(sessionmaker) as db:
                await repository.record_refund_sync_error(db, refund_id, error)
            log.warning("sweeper_refund_sync_failed", refund_id=str(refund_id), error=error)


async def _settle_unknown(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: PaymentSession,
    exc: Exception,
    result: SweepResult,
) -> bool:
    """A session its provider answers 404 for, past its expiry, UNKNOWN_SESSION_ATTEMPTS reads in
    a row, stops being polled (else it would be asked about every period, forever).

    Never paid on a 404: an `open` one (the payer never authorised, as far as we ever heard) is
    expired, and a payment the provider reports later still moves its order to paid; a
    `processing` one (money may have moved) goes to a person as `needs_review`. False when the
    rule does not apply yet: the error is recorded as any other.
    """
    now = utcnow()
    if not (
        isinstance(exc, ProviderError)
        and exc.http_status == 404
        and session.expires_at + EXPIRY_GRACE < now
        and session.sync_attempts + 1 >= UNKNOWN_SESSION_ATTEMPTS
        and session.status in _SETTLE_UNKNOWN
    ):
        return False
    target, reason = _SETTLE_UNKNOWN[session.status]
    # Only the override counts: the rest repeats what was last heard, so nothing else changes.
    last_heard = PaymentSnapshot(
        provider=session.provider,
        provider_session_id=session.provider_session_id or "",
        status=session.status,
        raw_status=session.provider_status or "",
        transfer_state=session.transfer_state,
        amount=None,
        currency=None,
        communication=None,
    )
    async with transaction(sessionmaker) as db:
        applied = await writer.apply(
            db,
            session.id,
            last_heard,
            source=TransitionSource.POLL,
            observed_at=now,
            override=target,
            override_reason=reason,
        )
    result.changed += int(applied.order_changed)
    log.warning(
        "sweeper_session_unknown_to_provider",
        session_id=str(session.id),
        attempts=session.sync_attempts + 1,
        session_status=applied.session_status.value,
        order_status=applied.order_status.value,
    )
    return True


async def _record_sync_error(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID, error: str
) -> None:
    async with transaction(sessionmaker) as db:
        await repository.record_sync_error(db, session_id, error)

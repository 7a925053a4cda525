"""The webhook inbox: verified deliveries are stored raw, deduplicated, and processed later as hints.

Recording is one INSERT ... ON CONFLICT DO NOTHING keyed by the provider's delivery id, so a
provider retrying (or an attacker replaying) a delivery never creates a second row. Processing
claims rows with FOR UPDATE SKIP LOCKED, so several service processes can drain one inbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.logging_setup import get_logger
from app.models import ProviderEvent
from app.payments.reconcile import Source
from app.payments.service import find_session_by_provider_id, sync_session, utcnow
from app.providers.base import Provider, ProviderError, WebhookHint

log = get_logger(__name__)

MAX_BACKOFF = timedelta(minutes=30)


async def record(db: AsyncSession, provider: str, hint: WebhookHint, raw_body: bytes) -> bool:
    """Store a verified delivery; False when this delivery id was already stored."""
    statement = (
        insert(ProviderEvent)
        .values(
            provider=provider,
            delivery_id=hint.delivery_id,
            event_type=hint.event_type,
            provider_session_id=hint.provider_session_id,
            content_type=hint.content_type,
            raw_body=raw_body.decode("utf-8", errors="replace"),
            payload=dict(hint.payload),
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["provider", "delivery_id"])
        .returning(ProviderEvent.id)
    )
    inserted = (await db.execute(statement)).scalar_one_or_none()
    return inserted is not None


@dataclass
class DrainResult:
    applied: int = 0
    retried: int = 0
    gave_up: int = 0

    @property
    def handled(self) -> int:
        return self.applied + self.retried + self.gave_up


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 11)), MAX_BACKOFF)


async def process_one(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: dict[str, Provider],
    *,
    max_attempts: int,
) -> str | None:
    """Claim and process the oldest due event; returns its outcome, or None when none is due."""
    async with transaction(sessionmaker) as db:
        event = await db.scalar(
            select(ProviderEvent)
            .where(ProviderEvent.processed_at.is_(None), ProviderEvent.next_attempt_at <= utcnow())
            .order_by(ProviderEvent.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if event is None:
            return None
        event.attempts += 1
        session = None
        if event.provider_session_id:
            session = await find_session_by_provider_id(db, event.provider, event.provider_session_id)
        try:
            if session is None:
                # The webhook can overtake our own commit of the session; try again later.
                raise LookupError(f"no payment session {event.provider_session_id!r} yet")
            # A savepoint, so a failure inside still lets us record it on the event row.
            async with db.begin_nested():
                await sync_session(db, session, providers, source=Source.WEBHOOK)
        except Exception as exc:  # any failure: keep the row, back off, never block the inbox
            expected = isinstance(exc, (LookupError, ProviderError))
            event.last_error = (str(exc) if expected else f"{type(exc).__name__}: {exc}")[:500]
            if not expected:
                log.exception("webhook_event_failed", event_id=event.id)
            if event.attempts >= max_attempts:
                event.outcome = "gave_up"
                event.processed_at = utcnow()
                log.error("webhook_event_gave_up", event_id=event.id, error=event.last_error)
                return "gave_up"
            event.next_attempt_at = utcnow() + _backoff(event.attempts)
            log.warning(
                "webhook_event_retry", event_id=event.id, attempts=event.attempts, error=event.last_error
            )
            return "retried"
        event.outcome = "applied"
        event.processed_at = utcnow()
        event.last_error = None
        return "applied"


async def drain(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: dict[str, Provider],
    *,
    max_attempts: int,
    limit: int = 100,
) -> DrainResult:
    result = DrainResult()
    for _ in range(limit):
        outcome = await process_one(sessionmaker, providers, max_attempts=max_attempts)
        if outcome is None:
            break
        setattr(result, outcome, getattr(result, outcome) + 1)
    return result

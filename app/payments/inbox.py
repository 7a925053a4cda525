"""The webhook inbox: verified deliveries are stored raw, deduplicated, and processed later as hints.

Recording is one INSERT ... ON CONFLICT DO NOTHING keyed by the provider's delivery id, so a
provider retrying (or an attacker replaying) a delivery never creates a second row.

Processing never holds a transaction across a provider call: a short transaction claims due
events with a lease (`claimed_until`), grouped by the payment they are about; each group costs
one provider read, made with no transaction open; a second short transaction applies the answer
and marks the group processed. Several groups run at once (INBOX_CONCURRENCY), one worker at a
time owns a payment, and a crashed worker's leases run out so its events are processed once, later.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import pydantic_core
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import database_error_summary, is_database_unavailable, is_pool_exhausted, transaction
from app.logging_setup import get_logger
from app.models import InboxOutcome, ProviderEvent, TransitionSource
from app.payments import repository, writer
from app.payments.refunds import apply_refund_observation
from app.payments.service import Observation, observe, utcnow
from app.payouts import sync as payout_sync
from app.providers.base import Provider, ProviderError, WebhookHint

log = get_logger(__name__)

MAX_BACKOFF = timedelta(minutes=30)
_MAX_TEXT = 128  # the inbox's short text columns


async def store(engine: AsyncEngine, provider: str, hint: WebhookHint, raw_body: bytes) -> bool:
    """Store a verified delivery at once (the webhook route's path: one autocommitted INSERT, no
    session); False when this delivery id was already stored."""
    stored = await repository.store_event(
        engine,
        provider=provider,
        delivery_id=hint.delivery_id,
        event_type=hint.event_type,
        provider_session_id=hint.provider_session_id,
        content_type=hint.content_type,
        raw_body=raw_body,
        # pydantic's serialiser: a third of json.dumps' time, the same JSON value for what the
        # verifiers hand over (check_storable has refused NaN, infinities, NUL and lone surrogates).
        payload_json=pydantic_core.to_json(dict(hint.payload)).decode(),
    )
    # Committed already: the line is true when it is written.
    log.info(
        "webhook_accepted",
        provider=provider,
        event_id=hint.delivery_id,
        event_type=hint.event_type,
        provider_session_id=hint.provider_session_id,
        duplicate=not stored,
    )
    return stored


@dataclass
class DrainResult:
    applied: int = 0
    retried: int = 0
    gave_up: int = 0


class _Unusable(Exception):
    """A verified delivery that names no payment: no retry can make it useful (it stays kept)."""


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 11)), MAX_BACKOFF)


class InboxProcessor:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        providers: Mapping[str, Provider],
        *,
        max_attempts: int,
        concurrency: int,
        lease: timedelta,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.providers = providers
        self.max_attempts = max_attempts
        self.concurrency = concurrency
        self.lease = lease
        self._refill = max(1, concurrency // 4)

    async def drain(self, *, max_groups: int = 2000) -> DrainResult:
        """Process due events until none is left (or `max_groups` payments were taken up); the
        counts are per event.

        A pipeline, not rounds: up to `concurrency` payments are in flight at once, and a slot that
        frees up starts the next claimed payment at once. Claims run a batch ahead (a claim costs
        about as much as an apply): when fewer than a quarter of a batch are waiting, the next
        batch is claimed. One slow provider read holds one slot only.
        """
        result = DrainResult()
        running: set[asyncio.Task[tuple[str | None, int]]] = set()
        waiting: deque[repository.ClaimedGroup] = deque()  # claimed (leased), not started yet
        taken = 0
        exhausted = False
        try:
            while True:
                if not exhausted and len(waiting) < self._refill and taken < max_groups:
                    groups = await self._claim(min(self.concurrency, max_groups - taken))
                    taken += len(groups)
                    waiting.extend(groups)
                    exhausted = not groups  # nothing more to claim now: let the rest finish
                while waiting and len(running) < self.concurrency:
                    running.add(asyncio.create_task(self._process(waiting.popleft())))
                if not running:
                    break  # nothing claimable now; the worker loop looks again when woken or polled
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    outcome, count = task.result()
                    if outcome is not None:
                        setattr(result, outcome, getattr(result, outcome) + count)
                exhausted = False  # a slot is free: events may have arrived meanwhile
        finally:
            # Cancelled (the service is stopping): the leases of what was running or waiting run out.
            for task in running:
                task.cancel()
        return result

    async def _claim(self, max_groups: int) -> list[repository.ClaimedGroup]:
        async with transaction(self.sessionmaker) as db:
            return await repository.claim_events(db, now=utcnow(), lease=self.lease, max_groups=max_groups)

    async def _process(self, group: repository.ClaimedGroup) -> tuple[str | None, int]:
        """The outcome and how many events it settled (none when the lease was lost meanwhile)."""
        try:
            return "applied", await self._apply(group)
        except Exception as exc:  # any failure: keep the rows, back off, never block the inbox
            return await self._failed(group, exc)

    def _read_deadline(self) -> float:
        # The provider read ends well before the lease does, so a live worker keeps what it holds.
        return max(1.0, self.lease.total_seconds() * 0.8)

    async def _apply(self, group: repository.ClaimedGroup) -> int:
        provider = self.providers.get(group.provider)
        if provider is None:
            raise LookupError(f"payment provider {group.provider!r} is not configured")
        if not group.provider_session_id:
            raise _Unusable("the delivery names no payment session")
        session_id, order_id = group.payment_session_id, group.order_id
        refund = payout_id = None
        if session_id is None:
            # Not one of our payment sessions, or not committed when claimed: a refund is its own
            # session at the provider.
            async with self.sessionmaker() as db:
                session = await repository.find_session_by_provider_id(
                    db, group.provider, group.provider_session_id
                )
                if session is not None:
                    session_id, order_id = session.id, session.order_id
                else:
                    refund = await repository.find_refund_by_provider_id(
                        db, group.provider, group.provider_session_id
                    )
                    if refund is None:  # nor a refund: a payout is its own session too
                        payout_id = await payout_sync.find_payout_id(
                            db, group.provider, group.provider_session_id
                        )
        if session_id is None and refund is None and payout_id is None:
            # The webhook can overtake our own commit of the session; try again later.
            raise LookupError(f"no payment session {group.provider_session_id[:_MAX_TEXT]!r} yet")
        read = payout_sync.observe_payout if payout_id is not None else observe
        observation: Observation = await read(
            provider, group.provider_session_id, max_wait=self._read_deadline()
        )
        async with transaction(self.sessionmaker) as db:
            settled = await repository.settle_claimed_events(
                db, group.event_ids, group.claimed_until, now=utcnow()
            )
            if not settled:
                return 0  # the lease ran out and another worker owns these events now
            if session_id is not None:
                await writer.apply(
                    db,
                    session_id,
                    observation.snapshot,
                    source=TransitionSource.WEBHOOK,
                    observed_at=observation.observed_at,
                    order_id=order_id,
                )
            elif refund is not None:
                await apply_refund_observation(db, refund.id, observation, source=TransitionSource.WEBHOOK)
            elif payout_id is not None:
                await payout_sync.apply_observation(
                    db, payout_id, observation, source=TransitionSource.WEBHOOK
                )
            return settled

    async def _failed(self, group: repository.ClaimedGroup, exc: Exception) -> tuple[str | None, int]:
        if is_database_unavailable(exc) or is_pool_exhausted(exc):
            expected, error = True, database_error_summary(exc)  # an outage, not a bug: no traceback
        else:
            expected = isinstance(exc, (LookupError, ProviderError, TimeoutError, _Unusable))
            error = (str(exc) or type(exc).__name__ if expected else f"{type(exc).__name__}: {exc}")[:500]
        if not expected:
            log.error("webhook_event_failed", event_ids=list(group.event_ids), error=error, exc_info=exc)
        outcome = "retried"
        async with transaction(self.sessionmaker) as db:
            now = utcnow()
            events = await repository.lock_claimed_events(db, group.event_ids, group.claimed_until)
            if not events:
                return None, 0  # the lease ran out and another worker owns these events now
            for event in events:
                event.last_error = error
                event.claimed_until = None
                if isinstance(exc, _Unusable) or event.attempts >= self.max_attempts:
                    event.outcome = InboxOutcome.GAVE_UP
                    event.processed_at = now
                    outcome = "gave_up"
                    log.error("webhook_event_gave_up", event_id=event.id, error=error)
                else:
                    event.next_attempt_at = now + _backoff(event.attempts)
                    log.warning(
                        "webhook_event_retry", event_id=event.id, attempts=event.attempts, error=error
                    )
        return outcome, len(events)


__all__ = ["DrainResult", "InboxProcessor", "ProviderEvent", "store"]

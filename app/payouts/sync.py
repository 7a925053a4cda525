"""Reading a payout back from its provider and applying it: what the payee's return, the webhook
inbox, the sweeper and the operator's sync share.

A payout's webhook, like any other, is a hint: it says which payout to look at, never what its
status is. The provider is asked with no transaction open; the answer is applied by the payout
writer in a short transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.logging_setup import get_logger
from app.models import TransitionSource
from app.payments.service import Observation, get_provider, utcnow
from app.payouts import repository, writer
from app.providers.base import Provider, ProviderError

log = get_logger(__name__)

# A payout waiting for its payee may wait for days: the sweeper asks about it this often at most
# (webhooks remain the first channel).
PAYEE_POLL_PERIOD = timedelta(minutes=10)


async def find_payout_id(db: AsyncSession, provider: str, provider_payout_id: str) -> uuid.UUID | None:
    """The payout a provider's id names, if any (a webhook's session may be a payout)."""
    return await repository.find_id_by_provider_id(db, provider, provider_payout_id)


async def observe_payout(
    provider: Provider, provider_payout_id: str, *, max_wait: float | None = None
) -> Observation:
    """Ask the provider about a payout (no transaction may be open). TimeoutError past `max_wait`."""
    observed_at = utcnow()
    async with asyncio.timeout(max_wait):
        snapshot = await provider.get_payout(provider_payout_id)
    return Observation(snapshot, observed_at)


async def apply_observation(
    db: AsyncSession, payout_id: uuid.UUID, observation: Observation, *, source: TransitionSource
) -> writer.ApplyResult:
    """Apply a provider's answer within the caller's (short) transaction."""
    return await writer.apply(
        db, payout_id, observation.snapshot, source=source, observed_at=observation.observed_at
    )


async def sync_payout(
    sessionmaker: async_sessionmaker[AsyncSession],
    payout_id: uuid.UUID,
    providers: Mapping[str, Provider],
    *,
    source: TransitionSource,
    provider_timeout: float | None = None,
) -> writer.ApplyResult:
    """Ask the provider about one payout (no transaction open), then apply it in a short one.
    LookupError when the payout never reached the provider; ProviderError (or TimeoutError past
    `provider_timeout`) when the provider cannot answer."""
    async with sessionmaker() as db:
        payout = await repository.get_payout(db, payout_id)
    if payout is None or payout.provider_payout_id is None:
        raise LookupError(f"payout {payout_id} was never created at the provider")
    provider = get_provider(providers, payout.provider)
    observation = await observe_payout(provider, payout.provider_payout_id, max_wait=provider_timeout)
    async with transaction(sessionmaker) as db:
        return await apply_observation(db, payout_id, observation, source=source)


@dataclass
class SweepResult:
    claimed: int = 0
    changed: int = 0
    errors: int = 0
    abandoned: int = 0


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: Mapping[str, Provider],
    *,
    stale_after: timedelta,
    reservation_timeout: timedelta,
    batch: int = 50,
) -> SweepResult:
    """One sweeper pass over payouts: reservations whose requester died are handed to a person
    (the request may have reached the provider: paying again must be a person's decision), and
    payouts still moving that nobody asked about recently are read and applied."""
    result = SweepResult()
    async with transaction(sessionmaker) as db:
        for payout_id in await repository.abandoned_reservations(db, older_than=reservation_timeout):
            if await writer.fail_reservation(
                db,
                payout_id,
                "abandoned: the process creating it stopped during the provider call",
                review=True,
                source=TransitionSource.POLL,
            ):
                result.abandoned += 1
    async with transaction(sessionmaker) as db:
        claimed = await repository.claim_stale_payouts(
            db, now=utcnow(), stale_after=stale_after, payee_stale_after=PAYEE_POLL_PERIOD, batch=batch
        )
    for payout_id in claimed:
        result.claimed += 1
        try:
            outcome = await sync_payout(sessionmaker, payout_id, providers, source=TransitionSource.POLL)
            result.changed += int(outcome.changed)
        except Exception as exc:  # one bad payout must not stop the pass
            result.errors += 1
            error = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
            async with transaction(sessionmaker) as db:
                await repository.record_sync_error(db, payout_id, error)
            log.warning("sweeper_payout_sync_failed", payout_id=str(payout_id), error=error)
    return result

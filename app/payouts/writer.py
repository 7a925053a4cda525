"""The only writer of payout state.

Every status change of a payout is written here and recorded as a `payout_transitions` row naming
its source. The paths that reach it:

- `POST /payouts` -> `payouts.service.create_payout` -> `reserve` (source `api`), then `attach`
  or `fail_reservation` once the provider has answered;
- `GET /payouts/callback` (the payee's return) -> `apply` (source `callback`);
- the inbox worker, a payout's webhook -> `payouts.sync` -> `apply` (source `webhook`);
- the sweeper -> `payouts.sync.sweep` -> `apply` (source `poll`), and `fail_reservation` for
  reservations whose requester died;
- `POST /payouts/{id}/sync` -> `payouts.sync.sync_payout` -> `apply` (source `operator`).

Every move records a `payout.<status>` outbound event in the same transaction (`_move`).

Each function runs inside its caller's short transaction, never across a provider call. They lock
the payout's row, ignore answers older than the one already applied unless they move forward,
check the money against what was asked, and move forward only (`payouts.states`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import outbox
from app.logging_setup import get_logger, log_after_commit
from app.models import Payout, PayoutTransition, TransitionSource
from app.money import to_minor_units
from app.payouts import repository, states
from app.providers.base import CreatedPayout, PaymentSnapshot, PayoutDelivery, PayoutStatus

log = get_logger(__name__)


@dataclass(frozen=True)
class PayoutDraft:
    """What a new payout is made of, as checked by the service."""

    provider: str
    amount: int  # minor units
    currency: str
    reference: str
    communication: str
    state_token: str
    idempotency_key: str | None
    payee_name: str | None
    payee_email: str | None
    payee_phone: str | None
    delivery: PayoutDelivery | None  # None: a verified beneficiary, no payee step
    expires_at: datetime | None
    beneficiary_name: str | None
    beneficiary_iban: str | None
    beneficiary_bic: str | None


@dataclass(frozen=True)
class ApplyResult:
    status: PayoutStatus
    changed: bool
    stale: bool = False


def _move(
    db: AsyncSession,
    payout: Payout,
    target: PayoutStatus,
    *,
    source: TransitionSource,
    reason: str | None = None,
) -> None:
    """Move the payout, append the audit row and record the outbound event. Callers have checked
    the move is allowed."""
    previous = payout.status
    db.add(
        PayoutTransition(
            payout_id=payout.id,
            from_status=payout.status,
            to_status=target,
            source=source,
            provider_status=payout.provider_status,
            transfer_state=payout.transfer_state,
            reason=reason,
        )
    )
    payout.status = target
    if target is PayoutStatus.NEEDS_REVIEW:
        payout.review_reason = (reason or "needs review")[:500]
    log_after_commit(
        db,
        log,
        "payout_transition",
        payout_id=str(payout.id),
        provider=payout.provider,
        from_status=previous.value,
        to_status=target.value,
        source=source.value,
        reason=reason,
    )
    outbox.payout_moved(db, payout, previous, source=source, reason=reason)


def reserve(db: AsyncSession, draft: PayoutDraft) -> Payout:
    """A payout in `creating`, committed before the provider is called; its first transition says
    so. Nothing is sent anywhere yet."""
    payout = Payout(
        id=uuid.uuid4(),
        provider=draft.provider,
        provider_payout_id=None,
        state_token=draft.state_token,
        idempotency_key=draft.idempotency_key,
        amount=draft.amount,
        currency=draft.currency,
        reference=draft.reference,
        communication=draft.communication,
        payee_name=draft.payee_name,
        payee_email=draft.payee_email,
        payee_phone=draft.payee_phone,
        delivery=draft.delivery,
        expires_at=draft.expires_at,
        beneficiary_name=draft.beneficiary_name,
        beneficiary_iban=draft.beneficiary_iban,
        beneficiary_bic=draft.beneficiary_bic,
        status=PayoutStatus.CREATING,
        sync_attempts=0,
    )
    db.add(payout)
    db.add(
        PayoutTransition(
            payout_id=payout.id,
            from_status=None,
            to_status=PayoutStatus.CREATING,
            source=TransitionSource.API,
        )
    )
    return payout


async def attach(db: AsyncSession, payout_id: uuid.UUID, created: CreatedPayout) -> Payout | None:
    """The provider accepted the reserved payout: record its id, the payee's page and where it
    stands. None when the reservation is no longer `creating` (declared abandoned meanwhile)."""
    payout = await repository.lock_payout(db, payout_id)
    if payout.status is not PayoutStatus.CREATING:
        return None
    payout.provider_payout_id = created.provider_payout_id
    payout.payee_url = created.payee_url
    payout.provider_status = created.raw_status
    payout.transfer_state = created.transfer_state
    target, reason = created.status, created.review_reason
    if not states.can_move(payout.status, target):
        target, reason = PayoutStatus.NEEDS_REVIEW, f"the provider created the payout as {created.raw_status}"
    _move(db, payout, target, source=TransitionSource.API, reason=reason)
    await db.flush()
    return payout


async def fail_reservation(
    db: AsyncSession,
    payout_id: uuid.UUID,
    error: str,
    *,
    review: bool = False,
    source: TransitionSource = TransitionSource.API,
) -> bool:
    """The provider did not create the reserved payout: it is `failed`. With `review`, the request
    may have reached the provider (no answer): `needs_review`, for a person to check there before
    paying again. False when it was no longer `creating`."""
    payout = await repository.lock_payout(db, payout_id)
    if payout.status is not PayoutStatus.CREATING:
        return False
    payout.last_error = error[:500]
    if review:
        _move(
            db,
            payout,
            PayoutStatus.NEEDS_REVIEW,
            source=source,
            reason=f"the provider may have created this payout: {error}"[:500],
        )
    else:
        _move(db, payout, PayoutStatus.FAILED, source=source, reason=error[:500])
    await db.flush()
    return True


def _money_mismatch(payout: Payout, snapshot: PaymentSnapshot) -> str | None:
    """Why the provider's view of the payout differs from what we asked for, if it does."""
    if snapshot.currency is not None and snapshot.currency.upper() != payout.currency:
        return f"currency mismatch: expected {payout.currency}, provider reports {snapshot.currency}"
    if snapshot.amount is not None:
        try:
            reported = to_minor_units(Decimal(snapshot.amount), payout.currency)
        except ValueError:
            return f"amount mismatch: provider reports unparseable amount {snapshot.amount}"
        if reported != payout.amount:
            return f"amount mismatch: expected {payout.amount} minor units, provider reports {reported}"
    if snapshot.communication is not None and snapshot.communication.strip() != payout.communication:
        return "communication mismatch: the transfer does not carry the payout's communication"
    return None


async def apply(
    db: AsyncSession,
    payout_id: uuid.UUID,
    snapshot: PaymentSnapshot,
    *,
    source: TransitionSource,
    observed_at: datetime,
) -> ApplyResult:
    """Apply what the provider said about a payout (requested at `observed_at`). Flushes; the
    caller's transaction commits."""
    payout = await repository.lock_payout(db, payout_id)
    current = payout.status
    target: PayoutStatus
    reason: str | None
    if snapshot.payout_status is None:
        target, reason = PayoutStatus.NEEDS_REVIEW, "the provider does not report this payment as a payout"
    else:
        target, reason = snapshot.payout_status, snapshot.review_reason
    if target is not PayoutStatus.NEEDS_REVIEW and target not in states.STOPPED:
        mismatch = _money_mismatch(payout, snapshot)
        if mismatch:
            target, reason = PayoutStatus.NEEDS_REVIEW, mismatch

    # An answer requested before the one already applied may still carry news (its request was
    # slow): keep it only when it says the money left (or must be looked at) and that moves the
    # payout forward. An older "failed" or "expired" is superseded by the newer answer.
    stale = payout.snapshot_observed_at is not None and observed_at < payout.snapshot_observed_at
    if stale and not (
        target in (PayoutStatus.PAID, PayoutStatus.NEEDS_REVIEW)
        and states.RANK[target] > states.RANK[current]
        and states.can_move(current, target)
    ):
        return ApplyResult(current, changed=False, stale=True)

    if not stale:
        payout.provider_status = snapshot.raw_status
        payout.transfer_state = snapshot.transfer_state
        payout.snapshot_observed_at = observed_at
    payout.last_synced_at = max(observed_at, payout.last_synced_at or observed_at)
    payout.sync_attempts = 0
    payout.last_error = None

    if current is PayoutStatus.PAID and target not in (PayoutStatus.PAID, PayoutStatus.NEEDS_REVIEW):
        # The provider itself now says something other than paid about a paid payout.
        target, reason = PayoutStatus.NEEDS_REVIEW, f"provider regression after paid: {snapshot.raw_status}"
    changed = states.can_move(current, target)
    if changed:
        _move(db, payout, target, source=source, reason=reason)
    await db.flush()
    return ApplyResult(payout.status, changed)

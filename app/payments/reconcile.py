"""The only writer of payment state.

Every path that learns something about a payment (callback, webhook worker, sweeper, operator "sync
now", session opening) ends in `apply`. It locks the order and then the session row (always in that
order, so two writers never deadlock), ignores answers older than the one already applied, checks
the money against the order, moves forward only, and records each transition with its source.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Order, OrderTransition, PaymentSession
from app.models.payments import latest_session_of
from app.money import to_minor_units
from app.orders.states import RANK, OrderStatus, can_move
from app.providers.base import PaymentSnapshot

PAID_FAMILY = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})


class Source:
    API = "api"
    CALLBACK = "callback"
    WEBHOOK = "webhook"
    POLL = "poll"
    OPERATOR = "operator"
    SWEEPER = "sweeper"


@dataclass(frozen=True)
class ApplyResult:
    order_status: OrderStatus
    session_status: OrderStatus
    order_changed: bool
    stale: bool = False


async def lock_order(db: AsyncSession, order_id: uuid.UUID) -> Order:
    """The order row, locked for this transaction and re-read (another writer may just have committed)."""
    return (
        await db.execute(
            select(Order)
            .where(Order.id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def lock_order_and_session(
    db: AsyncSession, payment_session_id: uuid.UUID
) -> tuple[Order, PaymentSession]:
    order_id = await db.scalar(select(PaymentSession.order_id).where(PaymentSession.id == payment_session_id))
    if order_id is None:
        raise LookupError(f"payment session {payment_session_id} not found")
    order = await lock_order(db, order_id)
    session = (
        await db.execute(
            select(PaymentSession)
            .where(PaymentSession.id == payment_session_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return order, session


def record_transition(
    db: AsyncSession,
    order: Order,
    target: OrderStatus,
    *,
    source: str,
    session: PaymentSession | None = None,
    reason: str | None = None,
) -> None:
    """Move the order and append the audit row. Callers have checked the move is allowed."""
    db.add(
        OrderTransition(
            order_id=order.id,
            payment_session_id=session.id if session else None,
            from_status=order.status,
            to_status=target.value,
            source=source,
            provider_status=session.provider_status if session else None,
            transfer_state=session.transfer_state if session else None,
            reason=reason,
        )
    )
    order.status = target.value
    if target is OrderStatus.NEEDS_REVIEW:
        order.review_reason = reason


def _money_mismatch(session: PaymentSession, snapshot: PaymentSnapshot) -> str | None:
    """Why the provider's view of the money differs from what we asked for, if it does."""
    if snapshot.currency is not None and snapshot.currency.upper() != session.currency:
        return f"currency mismatch: expected {session.currency}, provider reports {snapshot.currency}"
    if snapshot.amount is not None:
        try:
            reported = to_minor_units(Decimal(snapshot.amount), session.currency)
        except ValueError:
            return f"amount mismatch: provider reports unparseable amount {snapshot.amount}"
        if reported != session.amount:
            return f"amount mismatch: expected {session.amount} minor units, provider reports {reported}"
    if snapshot.communication is not None and snapshot.communication.strip() != session.communication:
        return "communication mismatch: the transfer does not carry the order reference"
    return None


async def _session_that_paid(db: AsyncSession, order_id: uuid.UUID) -> uuid.UUID | None:
    return await db.scalar(
        select(OrderTransition.payment_session_id)
        .where(OrderTransition.order_id == order_id, OrderTransition.to_status == OrderStatus.PAID.value)
        .order_by(OrderTransition.id.desc())
        .limit(1)
    )


async def apply(
    db: AsyncSession,
    payment_session_id: uuid.UUID,
    snapshot: PaymentSnapshot,
    *,
    source: str,
    observed_at: datetime,
    override: OrderStatus | None = None,
    override_reason: str | None = None,
) -> ApplyResult:
    """Apply what the provider said about a session (requested at `observed_at`).

    `override` replaces the mapped status (the sweeper's local expiry); the snapshot's raw fields
    are still recorded. Flushes; the caller's transaction commits.
    """
    order, session = await lock_order_and_session(db, payment_session_id)
    current_session = OrderStatus(session.status)
    order_status = OrderStatus(order.status)

    target = override or snapshot.status
    reason = override_reason or snapshot.review_reason
    if target in (OrderStatus.PAID, OrderStatus.PROCESSING):
        mismatch = _money_mismatch(session, snapshot)
        if mismatch:
            target, reason = OrderStatus.NEEDS_REVIEW, mismatch

    # An answer requested before the one already applied may still carry news (its request was
    # slow, e.g. retried): keep it only when it moves the session strictly forward.
    stale = session.snapshot_observed_at is not None and observed_at < session.snapshot_observed_at
    if stale and not (RANK[target] > RANK[current_session] and can_move(current_session, target)):
        return ApplyResult(order_status, current_session, order_changed=False, stale=True)

    if not stale:
        session.provider_status = snapshot.raw_status
        session.transfer_state = snapshot.transfer_state
        session.snapshot_observed_at = observed_at
    session.provider_customer_id = snapshot.customer_id or session.provider_customer_id
    session.bank_provider = snapshot.bank_id or session.bank_provider
    session.last_synced_at = max(observed_at, session.last_synced_at or observed_at)
    session.sync_attempts = 0
    session.last_sync_error = None

    if (
        current_session in PAID_FAMILY
        and target not in PAID_FAMILY
        and target is not OrderStatus.NEEDS_REVIEW
    ):
        # The provider itself now says something other than paid about a paid session.
        target = OrderStatus.NEEDS_REVIEW
        reason = f"provider regression after {current_session.value}: {snapshot.raw_status}"
    if current_session is OrderStatus.EXPIRED and target is OrderStatus.AWAITING_PAYMENT:
        # Expired locally while the provider still shows the session open: stays expired (a
        # payment on it still moves to paid). Going back to awaiting is for a new session only.
        target = OrderStatus.EXPIRED

    if can_move(current_session, target):
        session.status = target.value

    if target is OrderStatus.PAID and not can_move(order_status, OrderStatus.PAID):
        paid_by = await _session_that_paid(db, order.id)
        if paid_by == session.id:
            target = order_status  # this payment is already counted
        elif order_status in PAID_FAMILY:
            target, reason = OrderStatus.NEEDS_REVIEW, "order paid twice, by two payment sessions"
        else:
            target, reason = OrderStatus.NEEDS_REVIEW, f"payment received on a {order_status.value} order"
    drives_order = target in (OrderStatus.PAID, OrderStatus.NEEDS_REVIEW) or (
        await db.scalar(latest_session_of(order.id).with_only_columns(PaymentSession.id)) == session.id
    )
    order_changed = False
    if drives_order and can_move(order_status, target):
        record_transition(db, order, target, source=source, session=session, reason=reason)
        order_changed = True
    await db.flush()
    return ApplyResult(OrderStatus(order.status), OrderStatus(session.status), order_changed)

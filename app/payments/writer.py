"""The only writer of payment and order state.

Every state change of an order, and of the payments that pay it, is written here and recorded as
an `order_transitions` row naming its source. The paths that reach it:

- `POST /orders` -> `orders.service.create_order` -> `order_created` (source `api`);
- `POST /orders/{id}/payment-session` -> `payments.service.open_session` -> `reserve_session`,
  then `attach_session` (source `api`) or `fail_reservation` once the provider has answered;
- `GET /callback` -> `payments.service.handle_callback` -> `apply` (source `callback`);
- the inbox worker -> `payments.inbox` -> `apply` (source `webhook`);
- the sweeper -> `payments.sweeper` -> `apply` (source `poll`) and `fail_reservation` for
  reservations whose opener died;
- `POST /orders/{id}/sync` -> `payments.service.sync_session` -> `apply` (source `operator`), and
  `apply_refund` for the order's open refunds;
- `POST /orders/{id}/refunds` -> `payments.refunds.create_refund` -> `reserve_refund`, then
  `attach_refund` (source `operator`) or `fail_refund` once the provider has answered;
- refunds: the inbox worker -> `apply_refund` (source `webhook`); the sweeper -> `apply_refund`
  (source `poll`) and `fail_refund` for reservations whose requester died;
- `POST /orders/{id}/review/resolve` and the operator console -> `orders.service.resolve_review`
  -> `resolve_review` (source `operator`, with the operator's note).

Every move of an order records an `order.<status>` outbound event, and every move of a refund a
`refund.<status>` one, in the same transaction (`_transition`, `_move_refund`; `attach_session`
in its own statement).

Each function runs inside its caller's short transaction (`reserve_session` and `attach_session`
are one autocommitted statement each), never across a provider call. `apply`
locks the order and then the session row (always in that order, so two writers never deadlock),
ignores answers older than the one already applied unless they move forward, checks the money
against the order, moves forward only, and derives the order's state from the payment's.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.events import outbox
from app.logging_setup import get_logger, log_after_commit
from app.models import Order, OrderTransition, PaymentSession, Refund, TransitionSource
from app.money import to_minor_units
from app.orders import repository as orders_repository
from app.orders import states as order_states
from app.orders.states import OrderStatus
from app.payments import repository
from app.payments import states as payment_states
from app.payments.states import ORDER_STATUS_FOR
from app.providers.base import CreatedRefund, CreatedSession, PaymentSnapshot, PaymentStatus

log = get_logger(__name__)

PAID_FAMILY = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})


@dataclass(frozen=True)
class ApplyResult:
    order_status: OrderStatus
    session_status: PaymentStatus
    order_changed: bool
    stale: bool = False


def _transition(
    db: AsyncSession,
    order: Order,
    target: OrderStatus,
    *,
    source: TransitionSource,
    session: PaymentSession | None = None,
    refund: Refund | None = None,
    reason: str | None = None,
    note: str | None = None,
) -> OrderTransition:
    """Move the order, append the audit row and record the outbound event. Callers have checked the
    move is allowed."""
    payment = refund or session
    previous = order.status
    session_id = refund.payment_session_id if refund else (session.id if session else None)
    transition = OrderTransition(
        order_id=order.id,
        payment_session_id=session_id,
        refund_id=refund.id if refund else None,
        from_status=order.status,
        to_status=target,
        source=source,
        provider_status=payment.provider_status if payment else None,
        transfer_state=payment.transfer_state if payment else None,
        reason=reason,
        note=note,
    )
    db.add(transition)
    order.status = target
    if target is OrderStatus.NEEDS_REVIEW:
        order.review_reason = reason
    log_after_commit(
        db,
        log,
        "order_transition",
        order_id=str(order.id),
        provider=payment.provider if payment else None,
        from_status=previous.value,
        to_status=target.value,
        source=source.value,
        payment_session_id=str(session_id) if session_id else None,
        reason=reason,
    )
    outbox.order_moved(
        db,
        order,
        previous,
        source=source,
        payment_session_id=session_id,
        refund_id=refund.id if refund else None,
        reason=reason,
    )
    metrics.transition_recorded(
        db,
        provider=payment.provider if payment else None,
        from_state=previous.value,
        to_state=target.value,
        source=source.value,
    )
    return transition


async def create_order(
    conn: Any, draft: orders_repository.OrderDraft, *, session: AsyncSession | None
) -> orders_repository.WrittenOrder | None:
    """A new order starts `pending`, and its first transition says so: both written, with its lines
    priced from the catalog, by one statement on the driver connection `conn`, autocommitted unless
    `conn` is `session`'s, inside its transaction. Returns the order as written and its
    (created_at, updated_at); None, with nothing written, when the catalog refuses a line."""
    written = await orders_repository.insert_order(conn, draft)
    if written is None:
        return None
    line = {
        "order_id": str(draft.id),
        "provider": None,
        "from_status": None,
        "to_status": OrderStatus.PENDING.value,
        "source": TransitionSource.API.value,
    }
    if session is None:
        log.info("order_transition", **line)  # committed already
    else:
        log_after_commit(session, log, "order_transition", **line)
    return written


# --- opening a payment session: written for the driver -------------------------------------------
# Every checkout opens one, so its reservation and its attachment are each one autocommitted
# statement on the pool's asyncpg connection `conn`. The reservation is the database function
# `reserve_payment_session` (migration 0007): it locks the order, checks the bearer and reserves,
# one fresh snapshot per step, as a transaction would. The attachment locks the order itself and
# records what `_transition` records: the audit row and the outbound event in its statement; the
# log line and the metric once committed (`SessionAttached.committed`).

# Statuses go in and out as text: a parameter or column of an enum type makes the driver look the
# type up on each new connection (a costly catalog query, planned afresh on every connection).
_RESERVE_SESSION_SQL = """
SELECT reserved, order_status::text AS order_status, order_reference, order_total_amount,
       order_currency, order_customer_name, order_customer_email, order_customer_phone,
       order_customer_company, order_customer_address
FROM reserve_payment_session($1, $2, $3::text[]::order_status[], $4, $5, $6, $7,
                             $8::text[]::payment_status[], $9)
"""

_OPEN_STATUSES = [status.value for status in payment_states.OPEN]
_PAYABLE_STATUSES = [status.value for status in order_states.PAYABLE]


@dataclass(frozen=True, slots=True)
class Reservation:
    """The order as read under its lock, and whether a `creating` session was reserved for it."""

    order: repository.LockedOrder
    reserved: bool


async def reserve_session(
    conn: Any,
    order_id: uuid.UUID,
    *,
    token_hash: str | None,
    session_id: uuid.UUID,
    provider: str,
    state_token: str,
    now: datetime,
    expiry_seconds: int,
) -> Reservation | None:
    """A local session in `creating`, made under the order's lock before the provider is called.

    One autocommitted statement on the driver connection `conn` (no transaction open on it). It is
    what a second click finds (and waits on) while the first is at the provider. The order does not
    move until the provider has opened the session (`attach_session`). `token_hash` is the hash of
    the bearer's access token, or None once the caller has checked the operator key.

    None when there is no such order or the token is not its own: nothing locked, nothing written.
    `reserved` is False, with nothing written, when the order cannot be paid or has a session that
    may still receive the payer or is being opened: the caller decides what that means
    (`payments.service`).
    """
    row = await conn.fetchrow(
        _RESERVE_SESSION_SQL,
        order_id,
        token_hash,
        _PAYABLE_STATUSES,
        session_id,
        provider,
        state_token,
        now + timedelta(seconds=expiry_seconds),
        _OPEN_STATUSES,
        now,
    )
    if row is None:
        return None
    address = row["order_customer_address"]
    order = repository.LockedOrder(
        order_id,
        OrderStatus(row["order_status"]),
        row["order_reference"],
        row["order_total_amount"],
        row["order_currency"],
        row["order_customer_name"],
        row["order_customer_email"],
        row["order_customer_phone"],
        row["order_customer_company"],
        json.loads(address) if address is not None else None,
    )
    return Reservation(order, bool(row["reserved"]))


# One statement, autocommitted, locking as every writer does, the order first: `locked` is read
# (FOR UPDATE) before `attached` may lock the session row, as `attached` waits on it. The order's
# status is therefore its latest, and cannot change before the statement ends: the transition's
# `from_status` and the event's `previous_status` are taken from it. The rest of the event (amount,
# reference...) never changes after an order is created, and is built in Python (outbox).
_ATTACH_SESSION_SQL = """
WITH locked AS MATERIALIZED (
    SELECT status FROM orders WHERE id = $2 FOR UPDATE
), attached AS (
    UPDATE payment_sessions
    SET provider_session_id = $3, connect_url = $4, status = 'open', updated_at = now()
    WHERE id = $1 AND order_id = $2 AND status = 'creating' AND EXISTS (SELECT FROM locked)
    RETURNING id, provider, provider_status, transfer_state, expires_at
), moved AS (
    UPDATE orders SET status = $5::text::order_status, updated_at = now()
    WHERE id = $2 AND status = ANY($6::text[]::order_status[]) AND EXISTS (SELECT FROM attached)
    RETURNING id
), audit AS (
    INSERT INTO order_transitions (order_id, payment_session_id, from_status, to_status, source,
                                   provider_status, transfer_state)
    SELECT $2, attached.id, locked.status, $5::text::order_status, $7::text::transition_source,
           attached.provider_status, attached.transfer_state
    FROM attached, moved, locked
), event AS (
    INSERT INTO outbound_events (webhook_id, type, stream, order_id, data)
    SELECT $8, $9, $10, $2, jsonb_set($11::jsonb, '{previous_status}', to_jsonb(locked.status::text))
    FROM moved, locked
)
SELECT attached.provider, attached.expires_at, locked.status::text AS order_status,
       EXISTS (SELECT FROM moved) AS moved
FROM attached, locked
"""

_MOVES_TO_AWAITING_PAYMENT = [
    status.value for status in OrderStatus if order_states.can_move(status, OrderStatus.AWAITING_PAYMENT)
]


@dataclass(frozen=True, slots=True)
class SessionAttached:
    """The attached session as the payer is sent to it, and what the order became."""

    session: PaymentSession  # not in any ORM session: what the API answers with
    order_status: OrderStatus
    transition: dict[str, Any] | None  # the move's log fields, when the order moved

    def committed(self) -> None:
        """The statement committed: log and count the move, as `_transition` does for the ORM."""
        if self.transition is not None:
            log.info("order_transition", **self.transition)
            fields = self.transition
            metrics.transition_committed(
                provider=fields["provider"],
                from_state=fields["from_status"],
                to_state=fields["to_status"],
                source=fields["source"],
            )


async def attach_session(
    conn: Any,
    order: repository.LockedOrder,
    session_id: uuid.UUID,
    created: CreatedSession,
) -> SessionAttached | None:
    """The provider opened the reserved session: record its id and page, and the order awaits payment.

    One autocommitted statement on the driver connection `conn` (no transaction open on it).
    `order` is the reservation's order as read then; its status is read again under the lock. The
    order's status comes back with the session: an earlier session may have settled the order
    while this one was being opened (the id is recorded all the same, so a payment on it is seen).
    None when the reservation is no longer `creating` (declared abandoned meanwhile).
    """
    target = OrderStatus.AWAITING_PAYMENT
    source = TransitionSource.API
    event = outbox.order_event(
        order.id,
        reference=order.reference,
        status=target.value,
        previous=order.status.value,  # replaced by the statement with the status under the lock
        amount=order.total_amount,
        currency=order.currency,
        source=source,
        payment_session_id=session_id,
        refund_id=None,
        reason=None,
    )
    row = await conn.fetchrow(
        _ATTACH_SESSION_SQL,
        session_id,
        order.id,
        created.provider_session_id,
        created.connect_url,
        target.value,
        _MOVES_TO_AWAITING_PAYMENT,
        source.value,
        event.webhook_id,
        event.type,
        event.stream,
        json.dumps(event.data),
    )
    if row is None:
        return None
    session = PaymentSession(
        id=session_id,
        order_id=order.id,
        provider=row["provider"],
        provider_session_id=created.provider_session_id,
        connect_url=created.connect_url,
        status=PaymentStatus.OPEN,
        expires_at=row["expires_at"],
    )
    previous = OrderStatus(row["order_status"])
    if not row["moved"]:
        return SessionAttached(session, previous, None)
    transition = {
        "order_id": str(order.id),
        "provider": row["provider"],
        "from_status": previous.value,
        "to_status": target.value,
        "source": source.value,
        "payment_session_id": str(session_id),
        "reason": None,
    }
    return SessionAttached(session, target, transition)


async def fail_reservation(db: AsyncSession, session_id: uuid.UUID, error: str) -> bool:
    """The provider did not open the reserved session (refused, unreachable, or its opener died).

    The order is untouched: no payment ever existed. False when it was no longer `creating`.
    """
    session = await repository.lock_session(db, session_id)
    if session.status is not PaymentStatus.CREATING:
        return False
    session.status = PaymentStatus.FAILED
    session.last_sync_error = error[:500]
    await db.flush()
    return True


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


async def apply(
    db: AsyncSession,
    payment_session_id: uuid.UUID,
    snapshot: PaymentSnapshot,
    *,
    source: TransitionSource,
    observed_at: datetime,
    override: PaymentStatus | None = None,
    override_reason: str | None = None,
    order_id: uuid.UUID | None = None,
) -> ApplyResult:
    """Apply what the provider said about a session (requested at `observed_at`).

    `override` replaces the mapped status (the sweeper's local expiry); the snapshot's raw fields
    are still recorded. `order_id`, when the caller already knows the session's order, saves a
    look-up (a session never changes order). Flushes; the caller's transaction commits.
    """
    if order_id is None:
        order_id = await repository.order_id_of_session(db, payment_session_id)
    if order_id is None:
        raise LookupError(f"payment session {payment_session_id} not found")
    order = await repository.lock_order(db, order_id)
    session = await repository.lock_session(db, payment_session_id)
    current = session.status
    order_status = order.status

    target = override or snapshot.status
    reason = override_reason or snapshot.review_reason
    if target in (PaymentStatus.SUCCEEDED, PaymentStatus.PROCESSING):
        mismatch = _money_mismatch(session, snapshot)
        if mismatch:
            target, reason = PaymentStatus.NEEDS_REVIEW, mismatch

    # An answer requested before the one already applied may still carry news (its request was
    # slow, e.g. retried): keep it only when it says money moved (or must be looked at) and that
    # moves the session forward. An older "failed" or "expired" is superseded by the newer answer.
    stale = session.snapshot_observed_at is not None and observed_at < session.snapshot_observed_at
    if stale and not (
        target in (PaymentStatus.SUCCEEDED, PaymentStatus.NEEDS_REVIEW)
        and payment_states.RANK[target] > payment_states.RANK[current]
        and payment_states.can_move(current, target)
    ):
        return ApplyResult(order_status, current, order_changed=False, stale=True)

    if not stale:
        session.provider_status = snapshot.raw_status
        session.transfer_state = snapshot.transfer_state
        session.snapshot_observed_at = observed_at
    session.provider_customer_id = snapshot.customer_id or session.provider_customer_id
    session.bank_provider = snapshot.bank_id or session.bank_provider
    session.last_synced_at = max(observed_at, session.last_synced_at or observed_at)
    session.sync_attempts = 0
    session.last_sync_error = None

    if current is PaymentStatus.SUCCEEDED and target not in (
        PaymentStatus.SUCCEEDED,
        PaymentStatus.NEEDS_REVIEW,
    ):
        # The provider itself now says something other than paid about a paid session.
        target = PaymentStatus.NEEDS_REVIEW
        reason = f"provider regression after {ORDER_STATUS_FOR[current].value}: {snapshot.raw_status}"
    if current is PaymentStatus.EXPIRED and target is PaymentStatus.OPEN:
        # Expired locally while the provider still shows the session open: stays expired (a
        # payment on it still moves to paid). Going back to awaiting is for a new session only.
        target = PaymentStatus.EXPIRED

    if payment_states.can_move(current, target):
        session.status = target

    order_target = ORDER_STATUS_FOR[target]
    if order_target is OrderStatus.PAID and not order_states.can_move(order_status, OrderStatus.PAID):
        paid_by = await repository.session_that_paid(db, order.id)
        if paid_by == session.id:
            order_target = order_status  # this payment is already counted
        elif order_status in PAID_FAMILY:
            order_target, reason = OrderStatus.NEEDS_REVIEW, "order paid twice, by two payment sessions"
        else:
            order_target, reason = (
                OrderStatus.NEEDS_REVIEW,
                f"payment received on a {order_status.value} order",
            )
    drives_order = order_target in (OrderStatus.PAID, OrderStatus.NEEDS_REVIEW) or (
        await repository.latest_session_id(db, order.id) == session.id
    )
    if order_target is OrderStatus.NEEDS_REVIEW and session.status is current:
        # Nothing new about this payment: what it showed already sent the order to review (a review
        # an operator may since have resolved, which a repeat of the same answer must not reopen).
        drives_order = False
    order_changed = False
    if drives_order and order_states.can_move(order_status, order_target):
        _transition(db, order, order_target, source=source, session=session, reason=reason)
        order_changed = True
    await db.flush()
    return ApplyResult(order.status, session.status, order_changed)


# --- an operator's review ------------------------------------------------------------------------


class ReviewNotOpen(Exception):
    """The order is not (or no longer) in `needs_review`: someone resolved it first, or it never was."""

    def __init__(self, status: OrderStatus) -> None:
        super().__init__(f"order is {status.value}, not needs_review")
        self.status = status


async def resolve_review(
    db: AsyncSession, order_id: uuid.UUID, target: OrderStatus, *, note: str
) -> OrderTransition:
    """An operator resolves the order's review to `target` (`order_states.REVIEW_RESOLUTIONS`).

    Under the order's lock, so of two operators resolving at once exactly one wins; the other gets
    ReviewNotOpen. The transition names the payment session the review was about, so a repeat of
    that payment is recognised as already counted. LookupError for an unknown order, ValueError for
    a target no review resolves to or an empty note. Flushes; the caller's transaction commits.
    """
    if target not in order_states.REVIEW_RESOLUTIONS:
        raise ValueError(f"a review resolves to one of: {', '.join(sorted(order_states.REVIEW_RESOLUTIONS))}")
    if not note.strip():
        raise ValueError("a review is resolved with a note")
    try:
        order = await repository.lock_order(db, order_id)
    except NoResultFound:
        raise LookupError(f"order {order_id} not found") from None
    if order.status is not OrderStatus.NEEDS_REVIEW:
        raise ReviewNotOpen(order.status)
    session_id = await repository.session_under_review(db, order.id)
    session = await repository.get_session(db, session_id) if session_id else None
    transition = _transition(
        db,
        order,
        target,
        source=TransitionSource.OPERATOR,
        session=session,
        reason=f"review resolved by an operator: {order.review_reason or 'needs review'}",
        note=note,
    )
    await db.flush()
    return transition


# --- refunds -------------------------------------------------------------------------------------

REFUNDABLE = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})


def _move_refund(
    db: AsyncSession, refund: Refund, target: PaymentStatus, *, review_reason: str | None = None
) -> None:
    """Move a refund and record the outbound event. Callers have checked the move is allowed."""
    previous = refund.status
    refund.status = target
    if review_reason is not None:
        refund.review_reason = review_reason
    outbox.refund_moved(db, refund, previous)


def reserve_refund(
    db: AsyncSession,
    order: Order,
    paid: PaymentSession,
    *,
    amount: int,
    reason: str | None,
    state_token: str,
    idempotency_key: str | None,
) -> Refund:
    """A refund in `creating`, made under the order's lock before the provider is called; it counts
    against what was paid from now on, so concurrent requests can never refund more. The caller
    has checked the order is refundable and the amount fits. The order does not move."""
    refund = Refund(
        id=uuid.uuid4(),
        order_id=order.id,
        payment_session_id=paid.id,
        provider=paid.provider,
        provider_refund_id=None,
        state_token=state_token,
        idempotency_key=idempotency_key,
        amount=amount,
        currency=paid.currency,
        reason=reason,
        status=PaymentStatus.CREATING,
        sync_attempts=0,
    )
    db.add(refund)
    return refund


async def attach_refund(db: AsyncSession, refund_id: uuid.UUID, created: CreatedRefund) -> Refund | None:
    """The provider accepted the reserved refund: record its id and where it stands. None when the
    reservation is no longer `creating` (declared abandoned meanwhile)."""
    order_id = await repository.order_id_of_refund(db, refund_id)
    if order_id is None:
        return None
    order = await repository.lock_order(db, order_id)
    refund = await repository.lock_refund(db, refund_id)
    if refund.status is not PaymentStatus.CREATING:
        return None
    refund.provider_refund_id = created.provider_refund_id
    refund.provider_status = created.raw_status
    target = created.status if created.status is not PaymentStatus.CREATING else PaymentStatus.OPEN
    if payment_states.can_move(refund.status, target):
        _move_refund(db, refund, target)
    else:  # a refund can only become open or processing on creation; anything else: a person looks
        _move_refund(
            db,
            refund,
            PaymentStatus.NEEDS_REVIEW,
            review_reason=f"provider created the refund as {created.raw_status}",
        )
    await _order_after_refund(db, order, refund, source=TransitionSource.OPERATOR)
    await db.flush()
    return refund


async def fail_refund(db: AsyncSession, refund_id: uuid.UUID, error: str, *, review: bool = False) -> bool:
    """The provider did not create the reserved refund: it is `failed` and no longer counts. With
    `review`, the request may have reached the provider (no answer): it stays counted, as
    `needs_review`, for a person to check at the provider. False when it was no longer `creating`."""
    refund = await repository.lock_refund(db, refund_id)
    if refund.status is not PaymentStatus.CREATING:
        return False
    refund.last_error = error[:500]
    _move_refund(
        db,
        refund,
        PaymentStatus.NEEDS_REVIEW if review else PaymentStatus.FAILED,
        review_reason=f"the provider may have created this refund: {error}"[:500] if review else None,
    )
    await db.flush()
    return True


@dataclass(frozen=True)
class RefundApplyResult:
    order_status: OrderStatus
    refund_status: PaymentStatus
    order_changed: bool
    stale: bool = False


def _refund_mismatch(refund: Refund, paid: PaymentSession, snapshot: PaymentSnapshot) -> str | None:
    """Why the provider's view of the refund differs from what we asked for, if it does."""
    if snapshot.refunded_session_id is not None and snapshot.refunded_session_id != paid.provider_session_id:
        return "refund mismatch: the provider reports it against another payment"
    if snapshot.currency is not None and snapshot.currency.upper() != refund.currency:
        return f"refund currency mismatch: expected {refund.currency}, provider reports {snapshot.currency}"
    if snapshot.amount is not None:
        try:
            reported = to_minor_units(Decimal(snapshot.amount), refund.currency)
        except ValueError:
            return f"refund amount mismatch: provider reports unparseable amount {snapshot.amount}"
        if reported != refund.amount:
            return (
                f"refund amount mismatch: expected {refund.amount} minor units, provider reports {reported}"
            )
    return None


async def apply_refund(
    db: AsyncSession,
    refund_id: uuid.UUID,
    snapshot: PaymentSnapshot,
    *,
    source: TransitionSource,
    observed_at: datetime,
) -> RefundApplyResult:
    """Apply what the provider said about a refund (requested at `observed_at`): the refund moves
    forward only, the money is checked, and the order moves `paid` -> `partially_refunded` ->
    `refunded` as refunds succeed. Locks the order, then the refund. Flushes."""
    order_id = await repository.order_id_of_refund(db, refund_id)
    if order_id is None:
        raise LookupError(f"refund {refund_id} not found")
    order = await repository.lock_order(db, order_id)
    refund = await repository.lock_refund(db, refund_id)
    paid = await repository.get_session(db, refund.payment_session_id)
    assert paid is not None
    current = refund.status
    order_status = order.status

    target, reason = snapshot.status, snapshot.review_reason
    if target in (PaymentStatus.SUCCEEDED, PaymentStatus.PROCESSING):
        mismatch = _refund_mismatch(refund, paid, snapshot)
        if mismatch:
            target, reason = PaymentStatus.NEEDS_REVIEW, mismatch

    stale = refund.snapshot_observed_at is not None and observed_at < refund.snapshot_observed_at
    if stale and not (
        target in (PaymentStatus.SUCCEEDED, PaymentStatus.NEEDS_REVIEW)
        and payment_states.RANK[target] > payment_states.RANK[current]
        and payment_states.can_move(current, target)
    ):
        return RefundApplyResult(order_status, current, order_changed=False, stale=True)
    if not stale:
        refund.provider_status = snapshot.raw_status
        refund.transfer_state = snapshot.transfer_state
        refund.snapshot_observed_at = observed_at
    refund.last_synced_at = max(observed_at, refund.last_synced_at or observed_at)
    refund.sync_attempts = 0
    refund.last_error = None

    if current is PaymentStatus.SUCCEEDED and target not in (
        PaymentStatus.SUCCEEDED,
        PaymentStatus.NEEDS_REVIEW,
    ):
        target, reason = (
            PaymentStatus.NEEDS_REVIEW,
            f"provider regression after the refund succeeded: {snapshot.raw_status}",
        )
    if (
        current not in payment_states.REFUND_COUNTED
        and target in payment_states.REFUND_COUNTED
        and payment_states.can_move(current, target)
    ):
        # A refund we stopped counting comes back to life: it must still fit in what was paid.
        others = await repository.refund_total(db, order.id, excluding=refund.id)
        if others + refund.amount > paid.amount:
            target, reason = (
                PaymentStatus.NEEDS_REVIEW,
                "a refund no longer counted came back: refunds exceed the payment",
            )
    if payment_states.can_move(current, target):
        _move_refund(
            db, refund, target, review_reason=reason if target is PaymentStatus.NEEDS_REVIEW else None
        )
    changed = await _order_after_refund(db, order, refund, source=source)
    await db.flush()
    return RefundApplyResult(order.status, refund.status, changed)


async def _order_after_refund(
    db: AsyncSession, order: Order, refund: Refund, *, source: TransitionSource
) -> bool:
    """Derive the order's state from its refunds: `partially_refunded` once a refund succeeded,
    `refunded` once they add up to what was paid; `needs_review` when a refund needs a person."""
    if refund.status is PaymentStatus.NEEDS_REVIEW:
        target, reason = OrderStatus.NEEDS_REVIEW, f"refund: {refund.review_reason or 'needs review'}"
    elif refund.status is PaymentStatus.SUCCEEDED:
        refunded = await repository.refund_total(db, order.id, frozenset({PaymentStatus.SUCCEEDED}))
        paid = await repository.get_session(db, refund.payment_session_id)
        assert paid is not None
        if refunded > paid.amount:
            target, reason = OrderStatus.NEEDS_REVIEW, "refunds exceed the payment"
        elif refunded == paid.amount:
            target, reason = OrderStatus.REFUNDED, None
        else:
            target, reason = OrderStatus.PARTIALLY_REFUNDED, None
    else:
        return False
    if not order_states.can_move(order.status, target):
        return False
    _transition(db, order, target, source=source, refund=refund, reason=reason)
    return True

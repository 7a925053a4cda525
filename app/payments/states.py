"""The payment state machine (a pay-in session here; refunds and payouts use the same statuses),
and what each payment status means for the order it pays.

It mirrors the order machine on purpose: a session's moves are the order's moves seen from one
payment, so the writer can apply both with the same forward-only rule.
"""

from __future__ import annotations

from app.orders.states import OrderStatus
from app.providers.base import PaymentStatus

# What a pay-in's status means for its order (`creating` never reaches an order).
ORDER_STATUS_FOR: dict[PaymentStatus, OrderStatus] = {
    PaymentStatus.OPEN: OrderStatus.AWAITING_PAYMENT,
    PaymentStatus.PROCESSING: OrderStatus.PROCESSING,
    PaymentStatus.SUCCEEDED: OrderStatus.PAID,
    PaymentStatus.FAILED: OrderStatus.FAILED,
    PaymentStatus.CANCELLED: OrderStatus.CANCELLED,
    PaymentStatus.EXPIRED: OrderStatus.EXPIRED,
    PaymentStatus.NEEDS_REVIEW: OrderStatus.NEEDS_REVIEW,
}

# Payments in these states may still receive the payer; a double click gets the same one back.
OPEN = frozenset({PaymentStatus.CREATING, PaymentStatus.OPEN, PaymentStatus.PROCESSING})

# Refunds in these states count against what was paid: money gone, going, reserved for a request
# at the provider, or a person deciding. Failed, cancelled and expired refunds moved nothing.
REFUND_COUNTED = frozenset(
    {
        PaymentStatus.CREATING,
        PaymentStatus.OPEN,
        PaymentStatus.PROCESSING,
        PaymentStatus.SUCCEEDED,
        PaymentStatus.NEEDS_REVIEW,
    }
)

# Refunds the sweeper and the operator's sync ask the provider about.
REFUND_OPEN = frozenset({PaymentStatus.OPEN, PaymentStatus.PROCESSING})

# Forward-only rank, used to keep a slow (older) answer only when it moves the payment forward.
RANK: dict[PaymentStatus, int] = {
    PaymentStatus.CREATING: 0,
    PaymentStatus.OPEN: 1,
    PaymentStatus.PROCESSING: 2,
    PaymentStatus.FAILED: 3,
    PaymentStatus.EXPIRED: 4,
    PaymentStatus.CANCELLED: 5,
    PaymentStatus.SUCCEEDED: 5,
    PaymentStatus.NEEDS_REVIEW: 8,
}

ALLOWED: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    # A reservation: opened at the provider, refused, or (a refund whose request may have reached
    # the provider without an answer) handed to a person.
    PaymentStatus.CREATING: frozenset(
        {PaymentStatus.OPEN, PaymentStatus.PROCESSING, PaymentStatus.FAILED, PaymentStatus.NEEDS_REVIEW}
    ),
    PaymentStatus.OPEN: frozenset(
        {
            PaymentStatus.PROCESSING,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELLED,
            PaymentStatus.EXPIRED,
            PaymentStatus.NEEDS_REVIEW,
        }
    ),
    PaymentStatus.PROCESSING: frozenset(
        {
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELLED,
            PaymentStatus.EXPIRED,
            PaymentStatus.NEEDS_REVIEW,
        }
    ),
    # A rejected payment can still succeed on the same session (provider-side retries).
    PaymentStatus.FAILED: frozenset(
        {
            PaymentStatus.OPEN,
            PaymentStatus.PROCESSING,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.CANCELLED,
            PaymentStatus.EXPIRED,
            PaymentStatus.NEEDS_REVIEW,
        }
    ),
    PaymentStatus.EXPIRED: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.NEEDS_REVIEW}),
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.NEEDS_REVIEW}),
    PaymentStatus.CANCELLED: frozenset({PaymentStatus.NEEDS_REVIEW}),
    PaymentStatus.NEEDS_REVIEW: frozenset(),
}


def can_move(current: PaymentStatus, target: PaymentStatus) -> bool:
    """True when `current` -> `target` is a real move (never a self-move)."""
    return target in ALLOWED[current]

"""The order state machine, pure: which moves are allowed and which states are final.

Providers never see these names: they map their statuses to a provider-neutral payment status, and
the payments writer derives the order's state from its payments (`app/payments/states.py`).
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """Where an order stands; moves are forward-only (README, Order states)."""

    PENDING = "pending"  # created, no payment session yet
    AWAITING_PAYMENT = "awaiting_payment"  # session open, payer at the provider or bank
    PROCESSING = "processing"  # bank accepted, outcome not known yet: do not ship
    PAID = "paid"
    FAILED = "failed"  # rejected; a late success on the same session may still arrive
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    NEEDS_REVIEW = "needs_review"  # amount/currency mismatch, partial or over-payment, regression


FINAL = frozenset({OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.REFUNDED, OrderStatus.NEEDS_REVIEW})

# States from which the shopper may open a new payment session.
RETRYABLE = frozenset({OrderStatus.PENDING, OrderStatus.FAILED, OrderStatus.EXPIRED})
# States in which a payment session may be opened or handed back (a double click, a return to it).
PAYABLE = RETRYABLE | {OrderStatus.AWAITING_PAYMENT}

# Forward-only rank for payment progress, used to spot a provider regressing after payment.
# ALLOWED below is the authority on moves: it goes up in rank except for three moves back,
# failed -> awaiting_payment / processing and expired -> awaiting_payment (a new session, or the
# provider retrying the same one).
RANK: dict[OrderStatus, int] = {
    OrderStatus.PENDING: 0,
    OrderStatus.AWAITING_PAYMENT: 1,
    OrderStatus.PROCESSING: 2,
    OrderStatus.FAILED: 3,
    OrderStatus.EXPIRED: 4,
    OrderStatus.CANCELLED: 5,
    OrderStatus.PAID: 5,
    OrderStatus.PARTIALLY_REFUNDED: 6,
    OrderStatus.REFUNDED: 7,
    OrderStatus.NEEDS_REVIEW: 8,
}

ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {
            OrderStatus.AWAITING_PAYMENT,
            OrderStatus.PROCESSING,
            OrderStatus.PAID,
            OrderStatus.FAILED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.NEEDS_REVIEW,
        }
    ),
    OrderStatus.AWAITING_PAYMENT: frozenset(
        {
            OrderStatus.PROCESSING,
            OrderStatus.PAID,
            OrderStatus.FAILED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.NEEDS_REVIEW,
        }
    ),
    OrderStatus.PROCESSING: frozenset(
        {
            OrderStatus.PAID,
            OrderStatus.FAILED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.NEEDS_REVIEW,
        }
    ),
    # A rejected payment can still succeed later on the same session (provider-side retries), and
    # the shopper may start a new session (back to awaiting_payment).
    OrderStatus.FAILED: frozenset(
        {
            OrderStatus.AWAITING_PAYMENT,
            OrderStatus.PROCESSING,
            OrderStatus.PAID,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.NEEDS_REVIEW,
        }
    ),
    OrderStatus.EXPIRED: frozenset(
        {OrderStatus.AWAITING_PAYMENT, OrderStatus.PAID, OrderStatus.NEEDS_REVIEW}
    ),
    OrderStatus.PAID: frozenset(
        {OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.NEEDS_REVIEW}
    ),
    OrderStatus.PARTIALLY_REFUNDED: frozenset({OrderStatus.REFUNDED, OrderStatus.NEEDS_REVIEW}),
    OrderStatus.CANCELLED: frozenset({OrderStatus.NEEDS_REVIEW}),
    OrderStatus.REFUNDED: frozenset(),
    OrderStatus.NEEDS_REVIEW: frozenset(),
}


# An operator's way out of `needs_review` (the writer's `resolve_review`), never a writer's own move:
# `paid` accepts the money as it came, `failed` keeps none of it (the shopper may pay again).
REVIEW_RESOLUTIONS = frozenset({OrderStatus.PAID, OrderStatus.FAILED})


def can_move(current: OrderStatus | str, target: OrderStatus | str) -> bool:
    """True when `current` -> `target` is a real move the machine allows (never a self-move)."""
    return OrderStatus(target) in ALLOWED[OrderStatus(current)]

"""The payout state machine: the statuses a payout moves through, the moves allowed between them,
and which payouts are still moving at the provider.

A payout without a verified beneficiary first waits for its payee (`awaiting_payee`), who gives an
account on the provider's page (`account_received`); then, as with a verified beneficiary from the
start, the transfer is created (`initiated`) and executed (`paid`). Moves are forward only, with one
exception borrowed from pay-ins: a `failed` payout may still go ahead, because a provider may retry
it on the same payout. `needs_review` is final: a person decides.
"""

from __future__ import annotations

from app.providers.base import PayoutStatus

# Forward-only rank, used to keep a slow (older) answer only when it moves the payout forward.
RANK: dict[PayoutStatus, int] = {
    PayoutStatus.CREATING: 0,
    PayoutStatus.AWAITING_PAYEE: 1,
    PayoutStatus.ACCOUNT_RECEIVED: 2,
    PayoutStatus.INITIATED: 3,
    PayoutStatus.FAILED: 4,
    PayoutStatus.EXPIRED: 5,
    PayoutStatus.CANCELLED: 6,
    PayoutStatus.PAID: 6,
    PayoutStatus.NEEDS_REVIEW: 8,
}

_AFTER_INITIATED = frozenset(
    {
        PayoutStatus.PAID,
        PayoutStatus.FAILED,
        PayoutStatus.CANCELLED,
        PayoutStatus.EXPIRED,
        PayoutStatus.NEEDS_REVIEW,
    }
)

ALLOWED: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    # A reservation: created at the provider (waiting for the payee, or already under way), refused,
    # or (the request may have reached the provider without an answer) handed to a person.
    PayoutStatus.CREATING: frozenset(
        {
            PayoutStatus.AWAITING_PAYEE,
            PayoutStatus.ACCOUNT_RECEIVED,
            PayoutStatus.INITIATED,
            PayoutStatus.PAID,
            PayoutStatus.FAILED,
            PayoutStatus.NEEDS_REVIEW,
        }
    ),
    PayoutStatus.AWAITING_PAYEE: _AFTER_INITIATED | {PayoutStatus.ACCOUNT_RECEIVED, PayoutStatus.INITIATED},
    PayoutStatus.ACCOUNT_RECEIVED: _AFTER_INITIATED | {PayoutStatus.INITIATED},
    PayoutStatus.INITIATED: _AFTER_INITIATED,
    # Refused by the bank or the provider, which may retry on the same payout (the payee may give
    # another account): it can still go ahead.
    PayoutStatus.FAILED: frozenset(
        {
            PayoutStatus.AWAITING_PAYEE,
            PayoutStatus.ACCOUNT_RECEIVED,
            PayoutStatus.INITIATED,
            PayoutStatus.PAID,
            PayoutStatus.CANCELLED,
            PayoutStatus.EXPIRED,
            PayoutStatus.NEEDS_REVIEW,
        }
    ),
    PayoutStatus.EXPIRED: frozenset({PayoutStatus.PAID, PayoutStatus.NEEDS_REVIEW}),
    PayoutStatus.PAID: frozenset({PayoutStatus.NEEDS_REVIEW}),
    PayoutStatus.CANCELLED: frozenset({PayoutStatus.NEEDS_REVIEW}),
    PayoutStatus.NEEDS_REVIEW: frozenset(),
}

assert set(ALLOWED) == set(PayoutStatus) == set(RANK)

# Payouts still moving at the provider: the sweeper and the operator's sync ask about them.
OPEN = frozenset({PayoutStatus.AWAITING_PAYEE, PayoutStatus.ACCOUNT_RECEIVED, PayoutStatus.INITIATED})

# Outcomes in which no money left and none will: the money check does not apply to them.
STOPPED = frozenset({PayoutStatus.FAILED, PayoutStatus.CANCELLED, PayoutStatus.EXPIRED})


def can_move(current: PayoutStatus, target: PayoutStatus) -> bool:
    """True when `current` -> `target` is a real move (never a self-move)."""
    return target in ALLOWED[current]

"""Fintecture session statuses and transfer states mapped onto `PaymentStatus` (a payout's onto
`PayoutStatus`), one table per kind of session.

Source: contracts/fintecture.md §6. The session status is the primary signal; the transfer state
decides whether a validated payment has actually moved money, and flags the cases an operator must
look at. Anything undocumented lands in `needs_review`, never in `succeeded`.
"""

from __future__ import annotations

from typing import TypeVar

from app.providers.base import PaymentStatus, PayoutStatus

# --- Documented session statuses (§6) -----------------------------------------------------------
SESSION_INITIATED = "session_initiated"
PROVIDER_REQUIRED = "provider_required"
SCA_REQUIRED = "sca_required"
PAYMENT_WAITING = "payment_waiting"
PAYMENT_PENDING = "payment_pending"
PAYMENT_CREATED = "payment_created"
PAYMENT_UNSUCCESSFUL = "payment_unsuccessful"
PAYMENT_CANCELLED = "payment_cancelled"
PAYMENT_EXPIRED = "payment_expired"
PAYMENT_PARTIAL = "payment_partial"
PAYMENT_ERROR = "payment_error"
PAYMENT_UNKNOWN = "payment_unknown"
ORDER_CREATED = "order_created"
IBAN_REQUIRED = "iban_required"
IBAN_RECEIVED = "iban_received"

SESSION_STATUSES: tuple[str, ...] = (
    SESSION_INITIATED,
    PROVIDER_REQUIRED,
    SCA_REQUIRED,
    PAYMENT_WAITING,
    PAYMENT_PENDING,
    PAYMENT_CREATED,
    PAYMENT_UNSUCCESSFUL,
    PAYMENT_CANCELLED,
    PAYMENT_EXPIRED,
    PAYMENT_PARTIAL,
    PAYMENT_ERROR,
    PAYMENT_UNKNOWN,
    ORDER_CREATED,
    IBAN_REQUIRED,
    IBAN_RECEIVED,
)

# --- Documented transfer states (§6) ------------------------------------------------------------
COMPLETED = "completed"
SENT = "sent"
RECEIVED = "received"
PROCESSING = "processing"
PENDING = "pending"
AUTHORIZED = "authorized"
ACCEPTED = "accepted"
INITIATED = "initiated"
OVERPAID = "overpaid"
INSUFFICIENT = "insufficient"
BLOCKED = "blocked"
MULTI_SIGNATURE = "multi-signature"
REJECTED = "rejected"
CANCELLED = "cancelled"

TRANSFER_STATES: tuple[str, ...] = (
    COMPLETED,
    SENT,
    RECEIVED,
    PROCESSING,
    PENDING,
    AUTHORIZED,
    ACCEPTED,
    INITIATED,
    OVERPAID,
    INSUFFICIENT,
    BLOCKED,
    MULTI_SIGNATURE,
    REJECTED,
    CANCELLED,
)

# Transfer-state groups the table is written in.
SETTLED = frozenset({COMPLETED, SENT, RECEIVED})  # money has left the payer (or reached Fintecture)
IN_FLIGHT = frozenset({PROCESSING, PENDING, AUTHORIZED, ACCEPTED, INITIATED})  # not executed yet
STOPPED = frozenset({REJECTED, CANCELLED})  # the transfer will not happen

# Transfer states that need a human whatever the session says (§6 "needs review").
_REVIEW_TRANSFER: dict[str, str] = {
    OVERPAID: "overpaid: more than the amount due was received",
    INSUFFICIENT: "insufficient: less than the amount due was received",
    BLOCKED: "transfer blocked by the provider (AML review)",
    MULTI_SIGNATURE: "transfer waiting for a multi-signature approval",
}

Outcome = tuple[PaymentStatus, str | None]

_OPEN: Outcome = (PaymentStatus.OPEN, None)
_PROCESSING: Outcome = (PaymentStatus.PROCESSING, None)
_SUCCEEDED: Outcome = (PaymentStatus.SUCCEEDED, None)
_FAILED: Outcome = (PaymentStatus.FAILED, None)

# THE table. One row per documented session status:
#   default       -> outcome when the transfer state is absent or in-flight
#   settled       -> outcome when the transfer state is completed / sent / received
#   stopped       -> outcome when the transfer state is rejected / cancelled
# The four review transfer states (overpaid, insufficient, blocked, multi-signature) give
# needs_review on every row (see map_status), because each means money moved or is held in a way
# the shop cannot settle automatically.
_TABLE: dict[str, dict[str, Outcome]] = {
    # Payer has not authorised anything yet. A settled transfer state cannot precede the session
    # status in a consistent answer; if it does, money may be moving: do not ship, keep polling.
    SESSION_INITIATED: {"default": _OPEN, "settled": _PROCESSING, "stopped": _OPEN},
    PROVIDER_REQUIRED: {"default": _OPEN, "settled": _PROCESSING, "stopped": _OPEN},
    SCA_REQUIRED: {"default": _OPEN, "settled": _PROCESSING, "stopped": _OPEN},
    PAYMENT_WAITING: {"default": _OPEN, "settled": _PROCESSING, "stopped": _OPEN},
    # Payout sessions: waiting for the payee's IBAN, then executing.
    IBAN_REQUIRED: {"default": _OPEN, "settled": _PROCESSING, "stopped": _OPEN},
    IBAN_RECEIVED: {"default": _PROCESSING, "settled": _PROCESSING, "stopped": _PROCESSING},
    # Bank is processing, outcome unknown: do not ship. A stopped transfer is followed by a final
    # session status (unsuccessful), which is what moves the payment.
    PAYMENT_PENDING: {"default": _PROCESSING, "settled": _PROCESSING, "stopped": _PROCESSING},
    # Documented as intermediate ("waiting for the bank or Fintecture"): the poller keeps asking.
    # Mapped to processing rather than needs_review because needs_review hands the order to a person
    # and this status usually resolves on its own; nothing ships while processing.
    PAYMENT_UNKNOWN: {"default": _PROCESSING, "settled": _PROCESSING, "stopped": _PROCESSING},
    # Validated by the bank. Succeeded only once the transfer is executed (completed/sent) or funds are
    # on the Fintecture account (received); before that: processing. A rejected or cancelled
    # transfer after a validated session contradicts it: an operator decides (never auto-fail,
    # the shopper could pay twice).
    PAYMENT_CREATED: {
        "default": _PROCESSING,
        "settled": _SUCCEEDED,
        "stopped": (PaymentStatus.NEEDS_REVIEW, "transfer stopped after the bank validated the payment"),
    },
    # BNPL: the cover is set up, the merchant is paid by the BNPL partner.
    ORDER_CREATED: {
        "default": _SUCCEEDED,
        "settled": _SUCCEEDED,
        "stopped": (PaymentStatus.NEEDS_REVIEW, "transfer stopped on a BNPL order"),
    },
    # Rejected by payer or bank. Soft failure: with provider-side retries a later payment_created
    # can arrive on the same session. Settled money on a failed session is a contradiction.
    PAYMENT_UNSUCCESSFUL: {
        "default": _FAILED,
        "settled": (PaymentStatus.NEEDS_REVIEW, "funds moved on an unsuccessful session"),
        "stopped": _FAILED,
    },
    PAYMENT_ERROR: {
        "default": _FAILED,
        "settled": (PaymentStatus.NEEDS_REVIEW, "funds moved on a session in error"),
        "stopped": _FAILED,
    },
    # Cancelled by the merchant / expiry reached; money arriving anyway must be looked at.
    PAYMENT_CANCELLED: {
        "default": (PaymentStatus.CANCELLED, None),
        "settled": (PaymentStatus.NEEDS_REVIEW, "funds moved on a cancelled session"),
        "stopped": (PaymentStatus.CANCELLED, None),
    },
    PAYMENT_EXPIRED: {
        "default": (PaymentStatus.EXPIRED, None),
        "settled": (PaymentStatus.NEEDS_REVIEW, "funds moved on an expired session"),
        "stopped": (PaymentStatus.EXPIRED, None),
    },
    # Smart Transfer: less than expected received so far (more may come). A person decides.
    PAYMENT_PARTIAL: {
        "default": (PaymentStatus.NEEDS_REVIEW, "partial payment received"),
        "settled": (PaymentStatus.NEEDS_REVIEW, "partial payment received"),
        "stopped": (PaymentStatus.NEEDS_REVIEW, "partial payment received"),
    },
}

assert set(_TABLE) == set(SESSION_STATUSES)


def _normalise(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def map_status(session_status: str, transfer_state: str | None) -> Outcome:
    """Normalised status and, for needs_review, the reason. Total: never raises, never guesses succeeded."""
    return _lookup(_TABLE, session_status, transfer_state, PaymentStatus.NEEDS_REVIEW)


# --- Refunds (§9) --------------------------------------------------------------------------------
# A refund is its own session (`type=Refund`), read like a payment. Its creation answers
# `refund_accepted` (a payment account: executed at once) or `refund_waiting` (an external account:
# the merchant completes it from the Console, a "reverse PIS" with their own SCA); after that the
# refund session's own statuses apply, `payment_created` when the money went back.
REFUND_ACCEPTED = "refund_accepted"
REFUND_WAITING = "refund_waiting"

REFUND_CREATION_STATUSES: tuple[str, ...] = (REFUND_ACCEPTED, REFUND_WAITING)

_NEEDS_MERCHANT: Outcome = _OPEN  # waiting for the merchant to act (reverse PIS, SCA)

# THE refund table, in the same shape as the payment table. A refund never succeeds before the
# provider says the money moved; a transfer stopped after validation is a person's call (counting it
# as failed would let the operator refund the same money again).
_REFUND_TABLE: dict[str, dict[str, Outcome]] = {
    REFUND_WAITING: {"default": _NEEDS_MERCHANT, "settled": _PROCESSING, "stopped": _NEEDS_MERCHANT},
    REFUND_ACCEPTED: {"default": _PROCESSING, "settled": _PROCESSING, "stopped": _PROCESSING},
    # "initiated, pending execution" (§6): for an external account, the merchant still has to act.
    SESSION_INITIATED: {"default": _NEEDS_MERCHANT, "settled": _PROCESSING, "stopped": _NEEDS_MERCHANT},
    PROVIDER_REQUIRED: {"default": _NEEDS_MERCHANT, "settled": _PROCESSING, "stopped": _NEEDS_MERCHANT},
    SCA_REQUIRED: {"default": _NEEDS_MERCHANT, "settled": _PROCESSING, "stopped": _NEEDS_MERCHANT},
    PAYMENT_WAITING: {"default": _NEEDS_MERCHANT, "settled": _PROCESSING, "stopped": _NEEDS_MERCHANT},
    PAYMENT_PENDING: {"default": _PROCESSING, "settled": _PROCESSING, "stopped": _PROCESSING},
    PAYMENT_UNKNOWN: {"default": _PROCESSING, "settled": _PROCESSING, "stopped": _PROCESSING},
    # Done (§9: "status payment_created when done"); a transfer still in flight is processing.
    PAYMENT_CREATED: {
        "default": _SUCCEEDED,
        "settled": _SUCCEEDED,
        "stopped": (PaymentStatus.NEEDS_REVIEW, "refund transfer stopped after the bank validated it"),
    },
    PAYMENT_UNSUCCESSFUL: {
        "default": _FAILED,
        "settled": (PaymentStatus.NEEDS_REVIEW, "funds moved on an unsuccessful refund"),
        "stopped": _FAILED,
    },
    PAYMENT_ERROR: {
        "default": _FAILED,
        "settled": (PaymentStatus.NEEDS_REVIEW, "funds moved on a refund in error"),
        "stopped": _FAILED,
    },
    # Cancelled refunds are not counted (§9).
    PAYMENT_CANCELLED: {
        "default": (PaymentStatus.CANCELLED, None),
        "settled": (PaymentStatus.NEEDS_REVIEW, "funds moved on a cancelled refund"),
        "stopped": (PaymentStatus.CANCELLED, None),
    },
    PAYMENT_EXPIRED: {
        "default": (PaymentStatus.EXPIRED, None),
        "settled": (PaymentStatus.NEEDS_REVIEW, "funds moved on an expired refund"),
        "stopped": (PaymentStatus.EXPIRED, None),
    },
    # Pay-in and payout statuses a refund never documents.
    PAYMENT_PARTIAL: {
        key: (PaymentStatus.NEEDS_REVIEW, "partial status on a refund")
        for key in ("default", "settled", "stopped")
    },
    ORDER_CREATED: {
        key: (PaymentStatus.NEEDS_REVIEW, "BNPL status on a refund")
        for key in ("default", "settled", "stopped")
    },
    IBAN_REQUIRED: {
        key: (PaymentStatus.NEEDS_REVIEW, "payout status on a refund")
        for key in ("default", "settled", "stopped")
    },
    IBAN_RECEIVED: {
        key: (PaymentStatus.NEEDS_REVIEW, "payout status on a refund")
        for key in ("default", "settled", "stopped")
    },
}

assert set(_REFUND_TABLE) == set(SESSION_STATUSES) | set(REFUND_CREATION_STATUSES)


def map_refund_status(status: str, transfer_state: str | None) -> Outcome:
    """A refund's normalised status (and the review reason), from its creation answer or its
    session's status. Total: never raises, never guesses succeeded."""
    return _lookup(_REFUND_TABLE, status, transfer_state, PaymentStatus.NEEDS_REVIEW)


# --- Payouts (§8 and the Verified Payout guide) -----------------------------------------------
# A request for payout is its own session (`type=RequestForPayout`). Without a verified beneficiary
# it waits for the payee's IBAN (`iban_required`), then `iban_received`, then `payment_created`;
# with one it is created at once. The transfer state says whether the money has left: a payout is
# paid once the transfer is executed (completed / sent; received is read the same way), and only
# after `payment_created`.
PayoutOutcome = tuple[PayoutStatus, str | None]

_AWAITING_PAYEE: PayoutOutcome = (PayoutStatus.AWAITING_PAYEE, None)
_ACCOUNT_RECEIVED: PayoutOutcome = (PayoutStatus.ACCOUNT_RECEIVED, None)
_INITIATED: PayoutOutcome = (PayoutStatus.INITIATED, None)
_PAID: PayoutOutcome = (PayoutStatus.PAID, None)
_PAYOUT_FAILED: PayoutOutcome = (PayoutStatus.FAILED, None)


def _payout_review(reason: str) -> dict[str, PayoutOutcome]:
    return {key: (PayoutStatus.NEEDS_REVIEW, reason) for key in ("default", "settled", "stopped")}


# THE payout table, in the same shape as the payment table. A settled transfer state before
# `payment_created` is read as "on its way" (never paid before the provider validated it); a
# transfer stopped after `payment_created` is a person's call (the money may have left: calling it
# failed would invite paying the payee twice).
_PAYOUT_TABLE: dict[str, dict[str, PayoutOutcome]] = {
    # Waiting for the payee: their IBAN, or (a verified payout) their bank and its SCA.
    IBAN_REQUIRED: {"default": _AWAITING_PAYEE, "settled": _INITIATED, "stopped": _AWAITING_PAYEE},
    PROVIDER_REQUIRED: {"default": _AWAITING_PAYEE, "settled": _INITIATED, "stopped": _AWAITING_PAYEE},
    SCA_REQUIRED: {"default": _AWAITING_PAYEE, "settled": _INITIATED, "stopped": _AWAITING_PAYEE},
    PAYMENT_WAITING: {"default": _AWAITING_PAYEE, "settled": _INITIATED, "stopped": _AWAITING_PAYEE},
    IBAN_RECEIVED: {"default": _ACCOUNT_RECEIVED, "settled": _INITIATED, "stopped": _ACCOUNT_RECEIVED},
    # "For refunds/payouts: initiated, pending execution" (§6).
    SESSION_INITIATED: {"default": _INITIATED, "settled": _INITIATED, "stopped": _INITIATED},
    # The bank is executing; a stopped transfer is followed by a final session status.
    PAYMENT_PENDING: {"default": _INITIATED, "settled": _INITIATED, "stopped": _INITIATED},
    PAYMENT_UNKNOWN: {"default": _INITIATED, "settled": _INITIATED, "stopped": _INITIATED},
    PAYMENT_CREATED: {
        "default": _INITIATED,
        "settled": _PAID,
        "stopped": (PayoutStatus.NEEDS_REVIEW, "payout transfer stopped after the provider created it"),
    },
    PAYMENT_UNSUCCESSFUL: {
        "default": _PAYOUT_FAILED,
        "settled": (PayoutStatus.NEEDS_REVIEW, "funds moved on an unsuccessful payout"),
        "stopped": _PAYOUT_FAILED,
    },
    PAYMENT_ERROR: {
        "default": _PAYOUT_FAILED,
        "settled": (PayoutStatus.NEEDS_REVIEW, "funds moved on a payout in error"),
        "stopped": _PAYOUT_FAILED,
    },
    PAYMENT_CANCELLED: {
        "default": (PayoutStatus.CANCELLED, None),
        "settled": (PayoutStatus.NEEDS_REVIEW, "funds moved on a cancelled payout"),
        "stopped": (PayoutStatus.CANCELLED, None),
    },
    # Expiry reached before the payee gave an account (a payout link lasts `expiry`).
    PAYMENT_EXPIRED: {
        "default": (PayoutStatus.EXPIRED, None),
        "settled": (PayoutStatus.NEEDS_REVIEW, "funds moved on an expired payout"),
        "stopped": (PayoutStatus.EXPIRED, None),
    },
    # Pay-in statuses a payout never documents.
    PAYMENT_PARTIAL: _payout_review("partial-payment status on a payout"),
    ORDER_CREATED: _payout_review("BNPL status on a payout"),
}

assert set(_PAYOUT_TABLE) == set(SESSION_STATUSES)


def map_payout_status(status: str, transfer_state: str | None) -> PayoutOutcome:
    """A payout's normalised status (and the review reason), from its session's status and
    transfer state. Total: never raises, never guesses paid."""
    return _lookup(_PAYOUT_TABLE, status, transfer_state, PayoutStatus.NEEDS_REVIEW)


_S = TypeVar("_S", PaymentStatus, PayoutStatus)


def _lookup(
    table: dict[str, dict[str, tuple[_S, str | None]]],
    session_status: str,
    transfer_state: str | None,
    review: _S,
) -> tuple[_S, str | None]:
    status = _normalise(session_status)
    transfer = _normalise(transfer_state)
    row = table.get(status or "")
    if row is None:
        return review, f"unknown provider status {session_status!r}"
    if transfer is None or transfer in IN_FLIGHT:
        return row["default"]
    if transfer in SETTLED:
        return row["settled"]
    if transfer in STOPPED:
        return row["stopped"]
    if transfer in _REVIEW_TRANSFER:
        return review, _REVIEW_TRANSFER[transfer]
    return review, f"unknown provider transfer state {transfer_state!r}"

"""Powens payment states mapped onto `PaymentStatus`, in one table (contracts/powens.md §4).

| state                           | payment status | why                                                  |
|---------------------------------|----------------|------------------------------------------------------|
| `created`, `validating`         | open           | the payer has not validated at the bank yet          |
| `pending` (also `cancelling`)   | processing     | validated, execution not confirmed: do not ship      |
| `done`                          | succeeded      | executed and confirmed by the bank                   |
| `accepted`                      | processing     | NOT paid, see below                                  |
| `rejected` (any `error_code`)   | failed         | the payer may try again with a new session           |
| `expired`                       | expired        | final: no status N days after execution              |
| `partial`                       | needs_review   | "partial payment" (bulk only; we never create bulk)  |
| anything else                   | needs_review   | the raw value in the reason; never paid              |

Choices made on purpose:

- **`accepted` is processing, not succeeded.** The payment passed the bank's checks but the bank
  will not report its execution, and it can still fail later (e.g. insufficient funds at execution
  time). Powens calls it final and sends no further updates; the order keeps waiting (nothing
  ships) and the sweeper keeps reading it, so an operator sees an order stuck in processing and
  decides. Treating it as paid would be "accepting the risks" on the merchant's behalf.
- **`rejected` is failed whatever its `error_code`, cancellation codes included.**
  `CancelledByUser` is the payer backing out, who may open a new session, while `cancelled` is
  final for the order; and the docs' own example of a merchant's API cancel answers
  `cancelledByUser`, so the code cannot tell the payer's cancel from the merchant's. A failed
  payment can still move to cancelled or succeeded later; a cancelled one cannot. The error code
  is kept: the adapter reports it as the snapshot's `transfer_state`.
- `state_detail: cancelling` (a cancellation awaiting the payer's consent) does not change the
  mapping: the payment may still execute.
- States are compared case-insensitively after trimming; unknown states never succeed.
"""

from __future__ import annotations

from app.providers.base import PaymentStatus

# --- Documented payment states (§4) -------------------------------------------------------------
CREATED = "created"
VALIDATING = "validating"
PENDING = "pending"
DONE = "done"
ACCEPTED = "accepted"
REJECTED = "rejected"
EXPIRED = "expired"
PARTIAL = "partial"

STATES: tuple[str, ...] = (CREATED, VALIDATING, PENDING, DONE, ACCEPTED, REJECTED, EXPIRED, PARTIAL)

# Documented `state_detail` values.
CANCELLING = "cancelling"

# Documented PaymentErrorCode values (§2); the list is open and compared case-insensitively.
ERROR_CODES: tuple[str, ...] = (
    "invalidEmitter",
    "insufficientFunds",
    "invalidAmount",
    "invalidCurrency",
    "invalidDate",
    "invalidBeneficiary",
    "invalidLabel",
    "invalidReferenceId",
    "regulatoryReason",
    "authenticationFailed",
    "noAnswerFromCustomer",
    "noSpecifiedReason",
    "CancelledByUser",
    "CancelledByClient",
    "confirmationRefused",
    "bankMessage",
    "invalidValue",
    "websiteUnavailable",
    "bug",
)

Outcome = tuple[PaymentStatus, str | None]

# THE table.
_TABLE: dict[str, Outcome] = {
    CREATED: (PaymentStatus.OPEN, None),
    VALIDATING: (PaymentStatus.OPEN, None),
    PENDING: (PaymentStatus.PROCESSING, None),
    DONE: (PaymentStatus.SUCCEEDED, None),
    ACCEPTED: (PaymentStatus.PROCESSING, None),
    REJECTED: (PaymentStatus.FAILED, None),
    EXPIRED: (PaymentStatus.EXPIRED, None),
    PARTIAL: (PaymentStatus.NEEDS_REVIEW, "partial payment"),
}

assert set(_TABLE) == set(STATES)


def map_status(state: str, state_detail: str | None = None, error_code: str | None = None) -> Outcome:
    """Normalised status and, for needs_review, the reason. Total: never raises, never guesses succeeded.

    `state_detail` and `error_code` are accepted for the record; neither changes the outcome (see
    the module docstring).
    """
    key = (state or "").strip().lower()
    outcome = _TABLE.get(key)
    if outcome is None:
        return PaymentStatus.NEEDS_REVIEW, f"unknown provider status {state!r}"
    return outcome

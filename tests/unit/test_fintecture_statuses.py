"""The Fintecture status table against every documented session status and transfer state."""

from __future__ import annotations

import pytest

from app.providers.base import PaymentStatus
from app.providers.fintecture import statuses
from app.providers.fintecture.statuses import map_status
from tests.support.fintecture_contract import SESSION_STATUSES, TRANSFER_STATES

DOCUMENTED_SESSION_STATUSES = set(SESSION_STATUSES)
DOCUMENTED_TRANSFER_STATES = set(TRANSFER_STATES)

A, P, S, F, C, E, R = (
    PaymentStatus.OPEN,
    PaymentStatus.PROCESSING,
    PaymentStatus.SUCCEEDED,
    PaymentStatus.FAILED,
    PaymentStatus.CANCELLED,
    PaymentStatus.EXPIRED,
    PaymentStatus.NEEDS_REVIEW,
)
LETTERS = {"A": A, "P": P, "$": S, "F": F, "C": C, "E": E, "R": R}

COLUMNS = (
    None,
    "completed",
    "sent",
    "received",
    "processing",
    "pending",
    "authorized",
    "accepted",
    "initiated",
    "overpaid",
    "insufficient",
    "blocked",
    "multi-signature",
    "rejected",
    "cancelled",
)
# A=open P=processing $=succeeded F=failed C=cancelled E=expired R=needs_review
#                         -   cmp snt rcv prc pnd aut acc ini ovp ins blk msg rej cnc
GRID = {
    "session_initiated":    "A   P   P   P   A   A   A   A   A   R   R   R   R   A   A",
    "provider_required":    "A   P   P   P   A   A   A   A   A   R   R   R   R   A   A",
    "sca_required":         "A   P   P   P   A   A   A   A   A   R   R   R   R   A   A",
    "payment_waiting":      "A   P   P   P   A   A   A   A   A   R   R   R   R   A   A",
    "iban_required":        "A   P   P   P   A   A   A   A   A   R   R   R   R   A   A",
    "iban_received":        "P   P   P   P   P   P   P   P   P   R   R   R   R   P   P",
    "payment_pending":      "P   P   P   P   P   P   P   P   P   R   R   R   R   P   P",
    "payment_unknown":      "P   P   P   P   P   P   P   P   P   R   R   R   R   P   P",
    "payment_created":      "P   $   $   $   P   P   P   P   P   R   R   R   R   R   R",
    "order_created":        "$   $   $   $   $   $   $   $   $   R   R   R   R   R   R",
    "payment_unsuccessful": "F   R   R   R   F   F   F   F   F   R   R   R   R   F   F",
    "payment_error":        "F   R   R   R   F   F   F   F   F   R   R   R   R   F   F",
    "payment_cancelled":    "C   R   R   R   C   C   C   C   C   R   R   R   R   C   C",
    "payment_expired":      "E   R   R   R   E   E   E   E   E   R   R   R   R   E   E",
    "payment_partial":      "R   R   R   R   R   R   R   R   R   R   R   R   R   R   R",
}  # fmt: skip

CASES = [
    (status, transfer, LETTERS[letter])
    for status, row in GRID.items()
    for transfer, letter in zip(COLUMNS, row.split(), strict=True)
]


def test_constants_list_every_documented_status_and_transfer_state() -> None:
    assert set(statuses.SESSION_STATUSES) == DOCUMENTED_SESSION_STATUSES
    assert set(statuses.TRANSFER_STATES) == DOCUMENTED_TRANSFER_STATES
    assert set(GRID) == DOCUMENTED_SESSION_STATUSES
    assert set(COLUMNS) - {None} == DOCUMENTED_TRANSFER_STATES


@pytest.mark.parametrize(("session_status", "transfer_state", "expected"), CASES)
def test_every_documented_combination(
    session_status: str, transfer_state: str | None, expected: PaymentStatus
) -> None:
    status, reason = map_status(session_status, transfer_state)
    assert status is expected
    # A reason exactly when a person has to look.
    assert (reason is not None) == (status is PaymentStatus.NEEDS_REVIEW)


def test_succeeded_only_for_a_validated_payment_with_money_moved_or_bnpl() -> None:
    succeeded = {(s, t) for s, t, expected in CASES if expected is PaymentStatus.SUCCEEDED}
    assert {s for s, _ in succeeded} == {"payment_created", "order_created"}
    assert {t for s, t in succeeded if s == "payment_created"} == {"completed", "sent", "received"}


@pytest.mark.parametrize(
    ("transfer_state", "word"),
    [("overpaid", "overpaid"), ("insufficient", "insufficient"), ("blocked", "blocked"),
     ("multi-signature", "multi-signature")],
)  # fmt: skip
def test_review_reasons_name_the_transfer_state(transfer_state: str, word: str) -> None:
    status, reason = map_status("payment_created", transfer_state)
    assert status is PaymentStatus.NEEDS_REVIEW
    assert reason is not None and word in reason


def test_partial_payment_reason() -> None:
    assert map_status("payment_partial", "insufficient")[0] is PaymentStatus.NEEDS_REVIEW
    assert map_status("payment_partial", None) == (PaymentStatus.NEEDS_REVIEW, "partial payment received")


@pytest.mark.parametrize(
    "raw", ["payment_completed", "payment_rejected", "refund_accepted", "", "  ", "PAID"]
)
def test_unknown_session_status_needs_review_never_succeeded(raw: str) -> None:
    status, reason = map_status(raw, "completed")
    assert status is PaymentStatus.NEEDS_REVIEW
    assert reason == f"unknown provider status {raw!r}"


def test_unknown_transfer_state_needs_review_even_on_a_created_payment() -> None:
    status, reason = map_status("payment_created", "teleported")
    assert status is PaymentStatus.NEEDS_REVIEW
    assert reason == "unknown provider transfer state 'teleported'"


def test_case_and_spaces_are_tolerated() -> None:
    assert map_status(" Payment_Created ", "COMPLETED") == (PaymentStatus.SUCCEEDED, None)
    assert map_status("payment_created", "") == (PaymentStatus.PROCESSING, None)

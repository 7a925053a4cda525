"""The Powens status table against every documented payment state (contracts/powens.md §4)."""

from __future__ import annotations

import pytest

from app.providers.base import PaymentStatus
from app.providers.powens import statuses
from app.providers.powens.statuses import map_status

# Written from the contract's state table, not from the module under test.
DOCUMENTED_STATES = {"created", "validating", "pending", "done", "accepted", "rejected", "expired", "partial"}

EXPECTED: dict[str, PaymentStatus] = {
    "created": PaymentStatus.OPEN,
    "validating": PaymentStatus.OPEN,
    "pending": PaymentStatus.PROCESSING,
    "done": PaymentStatus.SUCCEEDED,
    # Passed the bank's checks, execution never confirmed: not paid, the order keeps waiting.
    "accepted": PaymentStatus.PROCESSING,
    "rejected": PaymentStatus.FAILED,
    "expired": PaymentStatus.EXPIRED,
    "partial": PaymentStatus.NEEDS_REVIEW,
}


def test_the_table_covers_exactly_the_documented_states() -> None:
    assert set(statuses.STATES) == DOCUMENTED_STATES
    assert set(EXPECTED) == DOCUMENTED_STATES


@pytest.mark.parametrize("state", sorted(DOCUMENTED_STATES))
def test_every_documented_state(state: str) -> None:
    status, reason = map_status(state)
    assert status is EXPECTED[state]
    if status is PaymentStatus.NEEDS_REVIEW:
        assert reason
    else:
        assert reason is None


@pytest.mark.parametrize("state", ["DONE", " done ", "Pending", "REJECTED"])
def test_states_are_read_case_insensitively(state: str) -> None:
    assert map_status(state)[0] is EXPECTED[state.strip().lower()]


def test_partial_payment_goes_to_review() -> None:
    assert map_status("partial") == (PaymentStatus.NEEDS_REVIEW, "partial payment")


def test_a_pending_cancellation_is_still_processing() -> None:
    # The payer has not consented to the cancel yet: the transfer may still execute.
    assert map_status("pending", "cancelling") == (PaymentStatus.PROCESSING, None)


def test_accepted_is_never_paid() -> None:
    status, _ = map_status("accepted")
    assert status is PaymentStatus.PROCESSING
    assert status is not PaymentStatus.SUCCEEDED


@pytest.mark.parametrize(
    "error_code",
    [None, "CancelledByUser", "cancelledByUser", "CancelledByClient", "insufficientFunds", "bug", "newCode"],
)
def test_rejected_fails_whatever_the_error_code(error_code: str | None) -> None:
    # A cancellation code is not `cancelled` (final for the order): the payer may try again.
    assert map_status("rejected", None, error_code) == (PaymentStatus.FAILED, None)


@pytest.mark.parametrize("state", ["refunded", "paid", "", "   ", "done!", "succeeded", "cancelled"])
def test_unknown_states_need_review_with_the_raw_value(state: str) -> None:
    status, reason = map_status(state)
    assert status is PaymentStatus.NEEDS_REVIEW
    assert reason is not None and repr(state) in reason


def test_error_codes_listed_are_the_documented_ones() -> None:
    assert "CancelledByUser" in statuses.ERROR_CODES
    assert len(statuses.ERROR_CODES) == 19

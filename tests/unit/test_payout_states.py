"""The payout state machine: forward only, one move per step of a verified payout, and every status a
provider table can report reachable from a reservation."""

from __future__ import annotations

import pytest

from app.payouts import states
from app.providers.base import PAYMENT_STATUS_OF_PAYOUT, PaymentStatus, PayoutStatus
from app.providers.fintecture.statuses import map_payout_status
from tests.support.fintecture_contract import SESSION_STATUSES, TRANSFER_STATES

W, A, T, S = (
    PayoutStatus.AWAITING_PAYEE,
    PayoutStatus.ACCOUNT_RECEIVED,
    PayoutStatus.INITIATED,
    PayoutStatus.PAID,
)


def test_the_machine_moves_forward_only() -> None:
    assert set(states.ALLOWED) == set(PayoutStatus) == set(states.RANK)
    assert states.ALLOWED[PayoutStatus.NEEDS_REVIEW] == frozenset()  # a person decides
    assert states.ALLOWED[PayoutStatus.PAID] == {PayoutStatus.NEEDS_REVIEW}
    for current, targets in states.ALLOWED.items():
        assert current not in targets
        assert PayoutStatus.CREATING not in targets
        if current is not PayoutStatus.FAILED:  # a provider may retry a failed payout
            assert all(states.RANK[target] > states.RANK[current] for target in targets), current
    assert frozenset({W, A, T}) == states.OPEN


def test_each_step_of_a_verified_payout_is_one_move() -> None:
    for current, target in ((PayoutStatus.CREATING, W), (W, A), (A, T), (T, S), (PayoutStatus.CREATING, T)):
        assert states.can_move(current, target), (current, target)
    # Read in any other order (a late webhook, a slow poll), nothing goes back.
    for later, earlier in ((S, T), (S, A), (S, W), (T, A), (T, W), (A, W)):
        assert not states.can_move(later, earlier)


@pytest.mark.parametrize("status", SESSION_STATUSES)
@pytest.mark.parametrize("transfer", [None, *TRANSFER_STATES])
def test_whatever_the_provider_reports_can_be_reached(status: str, transfer: str | None) -> None:
    outcome, _ = map_payout_status(status, transfer)
    assert any(states.can_move(current, outcome) for current in states.OPEN | {PayoutStatus.CREATING})


def test_a_payout_is_a_payment_of_its_own_kind() -> None:
    assert set(PAYMENT_STATUS_OF_PAYOUT) == set(PayoutStatus)
    assert PAYMENT_STATUS_OF_PAYOUT[S] is PaymentStatus.SUCCEEDED
    assert PAYMENT_STATUS_OF_PAYOUT[W] is PaymentStatus.OPEN

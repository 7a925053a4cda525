"""The order state machine: forward-only, finals stay final, the documented exceptions and no others."""

from __future__ import annotations

import itertools

import pytest

from app.orders.states import ALLOWED, FINAL, RANK, RETRYABLE, OrderStatus, can_move

S = OrderStatus
ALL = list(OrderStatus)
MOVES = [(a, b) for a, b in itertools.product(ALL, ALL)]


def test_every_state_has_a_rank_and_a_row() -> None:
    assert set(RANK) == set(ALL)
    assert set(ALLOWED) == set(ALL)


@pytest.mark.parametrize("state", ALL)
def test_no_self_moves(state: OrderStatus) -> None:
    assert not can_move(state, state)


def test_nothing_returns_to_pending() -> None:
    assert [a for a in ALL if can_move(a, S.PENDING)] == []


def test_moves_go_up_in_rank_except_retries_and_late_progress() -> None:
    downward = {(a, b) for a, b in MOVES if can_move(a, b) and RANK[b] <= RANK[a]}
    assert downward == {
        # The shopper opens a new session after a failure or an expiry.
        (S.FAILED, S.AWAITING_PAYMENT),
        (S.EXPIRED, S.AWAITING_PAYMENT),
        # A rejected payment may still progress on the same session (provider-side retries).
        (S.FAILED, S.PROCESSING),
    }


def test_the_happy_path() -> None:
    path = [S.PENDING, S.AWAITING_PAYMENT, S.PROCESSING, S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED]
    assert all(can_move(a, b) for a, b in itertools.pairwise(path))


def test_final_states() -> None:
    assert {s for s in ALL if s in FINAL} == FINAL == {S.PAID, S.CANCELLED, S.REFUNDED, S.NEEDS_REVIEW}
    # A final state only moves to refunds (after paid) or to review.
    assert ALLOWED[S.PAID] == {S.PARTIALLY_REFUNDED, S.REFUNDED, S.NEEDS_REVIEW}
    assert ALLOWED[S.CANCELLED] == {S.NEEDS_REVIEW}
    assert ALLOWED[S.REFUNDED] == set()
    assert ALLOWED[S.NEEDS_REVIEW] == set()


def test_paid_never_goes_back_to_an_unpaid_state() -> None:
    unpaid = {S.PENDING, S.AWAITING_PAYMENT, S.PROCESSING, S.FAILED, S.EXPIRED, S.CANCELLED}
    assert not any(can_move(S.PAID, s) for s in unpaid)
    assert not any(can_move(S.PARTIALLY_REFUNDED, s) for s in unpaid | {S.PAID})


def test_every_state_except_the_dead_ends_can_go_to_review() -> None:
    assert {s for s in ALL if can_move(s, S.NEEDS_REVIEW)} == set(ALL) - {S.REFUNDED, S.NEEDS_REVIEW}


def test_a_late_success_is_still_accepted_after_failure_or_expiry() -> None:
    assert can_move(S.FAILED, S.PAID)
    assert can_move(S.EXPIRED, S.PAID)


def test_retryable_states_can_open_a_new_session() -> None:
    assert {S.PENDING, S.FAILED, S.EXPIRED} == RETRYABLE
    assert all(can_move(s, S.AWAITING_PAYMENT) for s in RETRYABLE)
    assert not any(can_move(s, S.AWAITING_PAYMENT) for s in set(ALL) - RETRYABLE)


def test_accepts_plain_strings_and_rejects_unknown_names() -> None:
    assert can_move("pending", "awaiting_payment")
    assert OrderStatus("paid") in FINAL
    with pytest.raises(ValueError):
        can_move("pending", "shipped")
    with pytest.raises(ValueError):
        OrderStatus("PAID")

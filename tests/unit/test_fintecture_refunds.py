"""Fintecture refunds: the refund status table (every documented status and transfer state), the
refund request on the wire and both documented answer shapes (contract §9, §6)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.providers.base import PaymentStatus, ProviderError, RefundRequest
from app.providers.fintecture import statuses
from app.providers.fintecture.payloads import payment_read, refund_request, refund_result
from app.providers.fintecture.statuses import map_refund_status
from tests.support.fintecture_contract import SESSION_STATUSES, TRANSFER_STATES

W, P, S, F, C, E, R = (
    PaymentStatus.OPEN,
    PaymentStatus.PROCESSING,
    PaymentStatus.SUCCEEDED,
    PaymentStatus.FAILED,
    PaymentStatus.CANCELLED,
    PaymentStatus.EXPIRED,
    PaymentStatus.NEEDS_REVIEW,
)


@pytest.mark.parametrize(
    ("status", "transfer", "expected"),
    [
        ("refund_waiting", None, W),  # an external account: the merchant confirms it (reverse PIS)
        ("refund_accepted", None, P),  # a payment account: executed by the provider
        ("REFUND_ACCEPTED ", None, P),
        ("session_initiated", None, W),
        ("session_initiated", "completed", P),
        ("sca_required", None, W),
        ("payment_pending", None, P),
        ("payment_unknown", "pending", P),
        ("payment_created", None, S),
        ("payment_created", "completed", S),
        ("payment_created", "received", S),
        ("payment_created", "sent", S),
        ("payment_created", "processing", S),
        ("payment_created", "rejected", R),
        ("payment_created", "blocked", R),
        ("payment_unsuccessful", None, F),
        ("payment_unsuccessful", "rejected", F),
        ("payment_unsuccessful", "completed", R),
        ("payment_error", None, F),
        ("payment_cancelled", None, C),
        ("payment_cancelled", "completed", R),
        ("payment_expired", None, E),
        ("payment_partial", None, R),
        ("iban_required", None, R),
        ("refund_done", None, R),  # undocumented
        ("payment_created", "teleported", R),
    ],
)
def test_refund_status_table(status: str, transfer: str | None, expected: PaymentStatus) -> None:
    outcome, reason = map_refund_status(status, transfer)
    assert outcome is expected
    assert (reason is not None) == (expected is R)


@pytest.mark.parametrize("status", [*SESSION_STATUSES, *statuses.REFUND_CREATION_STATUSES])
@pytest.mark.parametrize("transfer", [None, *TRANSFER_STATES])
def test_every_documented_pair_is_mapped_and_never_succeeds_without_payment_created(
    status: str, transfer: str | None
) -> None:
    outcome, _ = map_refund_status(status, transfer)
    assert isinstance(outcome, PaymentStatus)
    assert outcome is not PaymentStatus.CREATING
    if outcome is S:
        assert status == "payment_created"


def test_refund_request_on_the_wire() -> None:
    query, body = refund_request(
        RefundRequest(
            provider_session_id="b2bca2bcd3b64a32a7e5d6d9b0c1e2f3",
            amount=Decimal("10"),
            currency="EUR",
            communication="REFUND ORD-1",
            state="st-1",
        )
    )
    assert query == [("state", "st-1")]
    assert body == {
        "meta": {"session_id": "b2bca2bcd3b64a32a7e5d6d9b0c1e2f3"},
        "data": {"attributes": {"amount": "10.00", "communication": "REFUND ORD-1"}},
    }
    with pytest.raises(ValueError):
        refund_request(
            RefundRequest(
                provider_session_id="../x", amount=Decimal(1), currency="EUR", communication="c", state="s"
            )
        )


@pytest.mark.parametrize(
    "body",
    [
        {"meta": {"status": "refund_accepted", "session_id": "r1", "refunded_session_id": "p1"}},
        {"meta": {"status": 200, "code": "refund_accepted", "session_id": "r1"}},
    ],
)
def test_both_answer_shapes(body: dict[str, object]) -> None:
    assert refund_result(body) == ("r1", "refund_accepted")


@pytest.mark.parametrize("body", [{}, {"meta": {"status": "refund_waiting"}}, {"meta": {"session_id": "r1"}}])
def test_an_unusable_answer_is_a_provider_error(body: dict[str, object]) -> None:
    with pytest.raises(ProviderError):
        refund_result(body)


def test_a_refund_session_read_says_what_it_refunds() -> None:
    read = payment_read(
        {
            "meta": {
                "session_id": "r1",
                "status": "payment_created",
                "type": "Refund",
                "refunded_session_id": "p1",
            },
            "data": {
                "id": "r1",
                "transfer_state": "completed",
                "attributes": {"amount": "10.00", "currency": "EUR"},
            },
        },
        "r1",
    )
    assert (read.is_refund, read.refunded_session_id, read.amount) == (True, "p1", Decimal("10.00"))
    plain = payment_read(
        {"meta": {"session_id": "p1", "status": "payment_created", "type": "PayByBank"}}, "p1"
    )
    assert (plain.is_refund, plain.refunded_session_id) == (False, None)

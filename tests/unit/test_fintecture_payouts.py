"""Fintecture payouts: the payout status table against every documented session status and transfer
state, and the request for payout on the wire with both answer shapes of the Verified Payout guide
(contract §8, §6)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.providers.base import (
    Beneficiary,
    PayoutDelivery,
    PayoutRequest,
    PayoutStatus,
    ProviderError,
)
from app.providers.fintecture import statuses
from app.providers.fintecture.payloads import PAYOUT_TYPE, payment_read, payout_request, payout_result
from app.providers.fintecture.statuses import map_payout_status
from tests.support.fintecture_contract import SESSION_STATUSES, TRANSFER_STATES

W, A, T, S, F, C, E, R = (
    PayoutStatus.AWAITING_PAYEE,
    PayoutStatus.ACCOUNT_RECEIVED,
    PayoutStatus.INITIATED,
    PayoutStatus.PAID,
    PayoutStatus.FAILED,
    PayoutStatus.CANCELLED,
    PayoutStatus.EXPIRED,
    PayoutStatus.NEEDS_REVIEW,
)
LETTERS = {"W": W, "A": A, "T": T, "$": S, "F": F, "C": C, "E": E, "R": R}

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
# W=awaiting_payee A=account_received T=initiated (transfer on its way) $=paid
# F=failed C=cancelled E=expired R=needs_review
#                         -   cmp snt rcv prc pnd aut acc ini ovp ins blk msg rej cnc
GRID = {
    "iban_required":        "W   T   T   T   W   W   W   W   W   R   R   R   R   W   W",
    "provider_required":    "W   T   T   T   W   W   W   W   W   R   R   R   R   W   W",
    "sca_required":         "W   T   T   T   W   W   W   W   W   R   R   R   R   W   W",
    "payment_waiting":      "W   T   T   T   W   W   W   W   W   R   R   R   R   W   W",
    "iban_received":        "A   T   T   T   A   A   A   A   A   R   R   R   R   A   A",
    "session_initiated":    "T   T   T   T   T   T   T   T   T   R   R   R   R   T   T",
    "payment_pending":      "T   T   T   T   T   T   T   T   T   R   R   R   R   T   T",
    "payment_unknown":      "T   T   T   T   T   T   T   T   T   R   R   R   R   T   T",
    "payment_created":      "T   $   $   $   T   T   T   T   T   R   R   R   R   R   R",
    "payment_unsuccessful": "F   R   R   R   F   F   F   F   F   R   R   R   R   F   F",
    "payment_error":        "F   R   R   R   F   F   F   F   F   R   R   R   R   F   F",
    "payment_cancelled":    "C   R   R   R   C   C   C   C   C   R   R   R   R   C   C",
    "payment_expired":      "E   R   R   R   E   E   E   E   E   R   R   R   R   E   E",
    "payment_partial":      "R   R   R   R   R   R   R   R   R   R   R   R   R   R   R",
    "order_created":        "R   R   R   R   R   R   R   R   R   R   R   R   R   R   R",
}  # fmt: skip

CASES = [
    (status, transfer, LETTERS[letter])
    for status, row in GRID.items()
    for transfer, letter in zip(COLUMNS, row.split(), strict=True)
]


def test_the_grid_covers_every_documented_status_and_transfer_state() -> None:
    assert set(GRID) == set(SESSION_STATUSES) == set(statuses.SESSION_STATUSES)
    assert set(COLUMNS) - {None} == set(TRANSFER_STATES) == set(statuses.TRANSFER_STATES)


@pytest.mark.parametrize(("session_status", "transfer_state", "expected"), CASES)
def test_every_documented_combination(
    session_status: str, transfer_state: str | None, expected: PayoutStatus
) -> None:
    outcome, reason = map_payout_status(session_status, transfer_state)
    assert outcome is expected
    assert (reason is not None) == (expected is R)  # a person always learns why
    if outcome is S:
        assert session_status == "payment_created"  # never paid before the provider created it


def test_the_verified_payout_progression() -> None:
    """iban_required -> iban_received -> payment_created (transfer initiated) -> transfer completed."""
    steps = [("iban_required", None), ("iban_received", None), ("payment_created", "initiated")]
    steps.append(("payment_created", "completed"))
    assert [map_payout_status(status, transfer)[0] for status, transfer in steps] == [W, A, T, S]


@pytest.mark.parametrize(
    ("status", "transfer"),
    [("IBAN_RECEIVED ", None), ("payment_created", " Completed ")],
)
def test_case_and_spaces_do_not_matter(status: str, transfer: str | None) -> None:
    assert map_payout_status(status, transfer)[0] in (A, S)


@pytest.mark.parametrize(("status", "transfer"), [("payout_done", None), ("payment_created", "teleported")])
def test_anything_undocumented_needs_a_person(status: str, transfer: str | None) -> None:
    outcome, reason = map_payout_status(status, transfer)
    assert outcome is R and reason and "unknown" in reason


def _request(**fields: Any) -> PayoutRequest:
    values: dict[str, Any] = {
        "amount": Decimal("26.99"),
        "currency": "EUR",
        "communication": "MyShop REFUND from Order 123",
        "state": "st-1",
        "redirect_uri": "https://shop.example/payouts/callback",
        "expiry_seconds": 604800,
        "payee_name": "John Doe",
        "payee_email": "john@example.com",
    }
    values.update(fields)
    return PayoutRequest(**values)


def test_scenario_1_request_on_the_wire() -> None:
    query, headers, body = payout_request(_request())
    assert query == [("state", "st-1"), ("redirect_uri", "https://shop.example/payouts/callback")]
    assert headers == {"x-language": "en"}
    assert body == {
        "meta": {"psu_name": "John Doe", "psu_email": "john@example.com", "expiry": 604800, "method": "link"},
        "data": {
            "type": "payments",
            "attributes": {
                "amount": "26.99",
                "currency": "EUR",
                "communication": "MyShop REFUND from Order 123",
            },
        },
    }
    _, headers, sms = payout_request(
        _request(delivery=PayoutDelivery.SMS, payee_phone="+33612345678", language="FR")
    )
    assert headers == {"x-language": "fr"}
    assert (sms["meta"]["method"], sms["meta"]["psu_phone"]) == ("sms", "+33612345678")
    with pytest.raises(ValueError, match="SMS"):
        payout_request(_request(delivery=PayoutDelivery.SMS))
    with pytest.raises(ValueError, match="email"):
        payout_request(_request(delivery=PayoutDelivery.EMAIL, payee_email=None))


def test_scenario_2_request_on_the_wire() -> None:
    beneficiary = Beneficiary(name="John Doe", iban="FR1420041010050500013M02606", bic="BNPAFRPPXXX")
    _, _, body = payout_request(_request(payee_email=None, payee_name=None, beneficiary=beneficiary))
    assert body["meta"] == {"psu_name": "John Doe"}  # no link: no method, no expiry
    assert body["data"]["attributes"]["beneficiary"] == {
        "name": "John Doe",
        "iban": "FR1420041010050500013M02606",
        "swift_bic": "BNPAFRPPXXX",
    }


# The two answers of the Verified Payout guide, verbatim.
SCENARIO_1_ANSWER = {
    "meta": {
        "code": 201,
        "session_id": "23e8f09e2cab4752b8c4c3f00bf9f45c",
        "method": "link",
        "url": "https://connect.fintecture.com/v2/gff0f101-601d-4c2c-96f9-f6d7a6089578",
    }
}
SCENARIO_2_ANSWER = {
    "meta": {
        "status": "payment_created",
        "session_id": "ecec9f13407f4c2cb5f1591255e8f815",
        "type": "RequestForPayout",
    },
    "data": {
        "id": "ecec9f13407f4c2cb5f1591255e8f815",
        "type": "payments",
        "attributes": {
            "amount": "273.00",
            "currency": "EUR",
            "scheme": "INSTANT_SEPA",
            "communication": "B34970692",
            "end_to_end_id": "23e8f09e2cab4752b8c4c3f00bf9f45c",
            "execution_date": "2024-06-13",
            "transfer_state": "completed",
            "debtor": {"bank_account_id": "dc5b0048-2a80-4a22-b2f9-fad7d72f074d"},
            "beneficiary": {
                "name": "Julien Lefebre",
                "iban": "FR1420041010050500013M02606",
                "swift_bic": "BANKFRXXXXX",
            },
        },
    },
}


def test_both_answer_shapes() -> None:
    link = payout_result(SCENARIO_1_ANSWER, production=True)
    assert (link.session_id, link.raw_status) == ("23e8f09e2cab4752b8c4c3f00bf9f45c", None)
    assert link.url == SCENARIO_1_ANSWER["meta"]["url"]
    verified = payout_result(SCENARIO_2_ANSWER, production=True)
    assert (verified.session_id, verified.url) == ("ecec9f13407f4c2cb5f1591255e8f815", None)
    assert (verified.raw_status, verified.transfer_state) == ("payment_created", "completed")
    assert map_payout_status(verified.raw_status, verified.transfer_state)[0] is S


@pytest.mark.parametrize(
    ("body", "production"),
    [
        ({}, False),
        ({"meta": {"session_id": "../x", "url": "https://connect.example/v2/1"}}, False),
        ({"meta": {"session_id": "abc123"}}, False),  # neither a link nor a status
        ({"meta": {"session_id": "abc123", "url": "http://connect.example/v2/1"}}, True),
        ({"meta": {"session_id": "abc123", "url": "javascript:alert(1)"}}, False),
    ],
)
def test_an_unusable_answer_is_a_provider_error(body: dict[str, Any], production: bool) -> None:
    with pytest.raises(ProviderError):
        payout_result(body, production=production)


def test_a_payout_session_read_is_a_payout() -> None:
    # The guide's GET /pis/v2/payments/{session_id} answer for a payout.
    read = payment_read(
        {
            "meta": {
                "session_id": "34f00841780445d4981be9ea2f8aafae",
                "status": "payment_created",
                "type": "RequestForPayout",
                "customer_id": "4621eacaccd04fa772638dec70da323c",
            },
            "data": {
                "id": "44f00841780445d4981be9ea2f8aafae",
                "type": "payments",
                "attributes": {
                    "amount": "273",
                    "currency": "EUR",
                    "communication": "B34970692",
                    "end_to_end_id": "44f00841780445d4981be9ea2f8aafae",
                    "execution_date": "2021-02-28",
                    "payment_scheme": "SEPA",
                    "transfer_state": "completed",
                },
            },
        },
        "34f00841780445d4981be9ea2f8aafae",
    )
    assert (read.session_type, read.is_refund, read.amount) == (PAYOUT_TYPE, False, Decimal("273"))
    assert map_payout_status(read.raw_status, read.transfer_state) == (S, None)

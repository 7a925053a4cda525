"""Request for payout (contract §8) and refunds (contract §9)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.simulator.conftest import REDIRECT_URI, START, Harness, Merchant, SimFactory
from tests.simulator.contract import verify_webhook
from tests.simulator.test_oauth import assert_error

PAYOUT = {
    "meta": {"psu_name": "John Doe", "psu_email": "john@example.com", "expiry": 604800, "method": "link"},
    "data": {
        "type": "payments",
        "attributes": {"amount": "26.99", "currency": "EUR", "communication": "MyShop REFUND from Order 123"},
    },
}
PAYEE = {"name": "John Doe", "iban": "FR1420041010050500013M02606", "swift_bic": "BNPAFRPPXXX"}


async def payout(sim: Harness, body: dict[str, Any], **params: str) -> Any:
    query = {"state": "payout-1", "redirect_uri": REDIRECT_URI, **params}
    return await sim.api(
        "POST",
        "/pis/v2/request-for-payout",
        sim.lenient,
        json=body,
        params=query,
        headers={"x-language": "fr"},
    )


async def test_payout_without_beneficiary_collects_an_iban_then_pays(sim: Harness) -> None:
    response = await payout(sim, PAYOUT)
    assert response.status_code == 201
    meta = response.json()["meta"]
    assert (meta["code"], meta["method"]) == (201, "link")
    session_id = meta["session_id"]
    payment = await sim.payment(session_id)
    assert (payment["meta"]["status"], payment["meta"]["type"]) == ("iban_required", "RequestForPayout")

    page = await sim.client.get(meta["url"])
    assert page.status_code == 200 and "IBAN" in page.text
    form = await sim.client.post(
        meta["url"],
        data={"outcome": "confirm", "name": "John Doe", "iban": "FR76 3000 6000 0112 3456 7890 189"},
    )
    assert form.status_code == 303
    query = parse_qs(urlsplit(form.headers["location"]).query)
    assert query["session_id"] == [session_id] and query["status"] == ["payment_created"]
    assert query["state"] == ["payout-1"]

    payment = await sim.payment(session_id)
    attributes = payment["data"]["attributes"]
    assert (payment["meta"]["status"], attributes["transfer_state"]) == ("payment_created", "completed")
    assert attributes["beneficiary"]["iban"] == "FR7630006000011234567890189"
    assert attributes["payment_scheme"] == "INSTANT_SEPA"
    await sim.flush()
    events = [d["event"] for d in await sim.deliveries(session_id=session_id)]
    assert events == ["payment_session.status.iban_received", "payment_session.status.payment_created"]


async def test_payout_with_verified_beneficiary_is_paid_at_once(sim: Harness) -> None:
    body = {
        **PAYOUT,
        "data": {"type": "payments", "attributes": {**PAYOUT["data"]["attributes"], "beneficiary": PAYEE}},
    }
    response = await payout(sim, body)
    assert response.status_code == 200
    result = response.json()
    assert result["meta"]["status"] == "payment_created" and result["meta"]["type"] == "RequestForPayout"
    attributes = result["data"]["attributes"]
    assert attributes["scheme"] == "INSTANT_SEPA" and attributes["transfer_state"] == "completed"
    assert attributes["beneficiary"] == PAYEE and attributes["debtor"]["bank_account_id"]
    assert attributes["amount"] == "26.99"
    await sim.flush()
    [received] = sim.receiver.received
    webhook = verify_webhook(
        received.headers,
        received.body,
        app_id=sim.lenient.app_id,
        private_key=sim.lenient.private_key,
        now=START,
    )
    assert (webhook.fields["type"], webhook.fields["status"]) == ("RequestForPayout", "payment_created")


async def test_payout_needs_state_and_language(sim: Harness) -> None:
    no_language = await sim.api(
        "POST", "/pis/v2/request-for-payout", sim.lenient, json=PAYOUT, params={"state": "s"}
    )
    assert no_language.status_code == 400
    assert_error(no_language.json(), 400, "bad_request", "mandatory_field_missing")
    no_state = await sim.api(
        "POST", "/pis/v2/request-for-payout", sim.lenient, json=PAYOUT, headers={"x-language": "fr"}
    )
    assert no_state.status_code == 400
    assert "state" in no_state.json()["errors"][0]["detail"]
    bad_iban = {
        **PAYOUT,
        "data": {
            "attributes": {**PAYOUT["data"]["attributes"], "beneficiary": {"name": "J", "iban": "nope"}}
        },
    }
    assert (await payout(sim, bad_iban)).status_code == 400
    assert (await sim.control("GET", "/sessions"))["sessions"] == []


async def test_a_payout_transfer_can_take_time_on_the_clock(make_sim: SimFactory) -> None:
    async with make_sim(payout_transfer_seconds=60) as sim:
        body = {
            **PAYOUT,
            "data": {
                "type": "payments",
                "attributes": {**PAYOUT["data"]["attributes"], "beneficiary": PAYEE},
            },
        }
        result = (await payout(sim, body)).json()
        assert (result["meta"]["status"], result["data"]["attributes"]["transfer_state"]) == (
            "payment_created",
            "initiated",
        )
        session_id = result["meta"]["session_id"]
        await sim.advance(59)
        assert (await sim.payment(session_id))["data"]["attributes"]["transfer_state"] == "initiated"
        await sim.advance(1)
        payment = await sim.payment(session_id)
        assert (payment["meta"]["status"], payment["data"]["attributes"]["transfer_state"]) == (
            "payment_created",
            "completed",
        )
        await sim.flush()
        events = [d["event"] for d in await sim.deliveries(session_id=session_id)]
        assert events == [
            "payment_session.status.payment_created",
            "payment_session.transfer_states.completed",
        ]

        # Through the payee's page: iban_required -> iban_received -> payment_created, then the transfer.
        linked = (await payout(sim, PAYOUT, state="payout-2")).json()["meta"]
        await sim.client.post(linked["url"], data={"outcome": "confirm", "name": "John Doe"})
        await sim.advance(60)
        await sim.flush()
        steps = [d["event"] for d in await sim.deliveries(session_id=linked["session_id"])]
        assert steps == [
            "payment_session.status.iban_received",
            "payment_session.status.payment_created",
            "payment_session.transfer_states.completed",
        ]


async def test_a_payout_link_sent_by_email_or_sms_needs_the_address(sim: Harness) -> None:
    by_email = {**PAYOUT, "meta": {**PAYOUT["meta"], "method": "email"}}
    assert (await payout(sim, by_email)).status_code == 201
    no_email = {**PAYOUT, "meta": {"psu_name": "John Doe", "method": "email"}}
    refused = await payout(sim, no_email)
    assert refused.status_code == 400
    assert_error(refused.json(), 400, "bad_request", "mandatory_field_missing")
    no_phone = {**PAYOUT, "meta": {**PAYOUT["meta"], "method": "sms"}}
    assert (await payout(sim, no_phone)).status_code == 400
    by_sms = {**PAYOUT, "meta": {**PAYOUT["meta"], "method": "sms", "psu_phone": "+33612345678"}}
    created = await payout(sim, by_sms)
    assert created.status_code == 201 and created.json()["meta"]["method"] == "sms"


async def refund(
    sim: Harness, merchant: Merchant, session_id: str, amount: str | None = None, state: str = "refund-1"
) -> Any:
    attributes = {"communication": "REFUND ORDER-1"} | ({"amount": amount} if amount else {})
    return await sim.api(
        "POST",
        "/pis/v2/refund",
        merchant,
        json={"meta": {"session_id": session_id}, "data": {"attributes": attributes}},
        params={"state": state},
    )


async def test_partial_refunds_up_to_the_original_amount(sim: Harness) -> None:
    session_id = (await sim.connect(amount="273.00"))["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    first = await refund(sim, sim.lenient, session_id, "100.00")
    assert first.status_code == 200
    # An external account: the refund waits for the merchant to complete it.
    assert first.json()["meta"]["status"] == "refund_waiting"
    assert first.json()["meta"]["refunded_session_id"] == session_id
    assert (await refund(sim, sim.lenient, session_id, "173.00")).status_code == 200
    over = await refund(sim, sim.lenient, session_id, "0.01")
    assert over.status_code == 400
    assert_error(over.json(), 400, "bad_request", "refund_aborted")

    listed = (await sim.api("GET", f"/pis/v2/payments/{session_id}/refunds", sim.lenient)).json()
    assert listed["meta"]["count"] == 2 and listed["meta"]["refunded_amount"] == "273.00"
    assert [item["attributes"]["amount"] for item in listed["data"]] == ["100.00", "173.00"]

    # A cancelled refund no longer counts toward the total.
    cancelled = listed["data"][0]["id"]
    await sim.set_status(cancelled, status="payment_cancelled")
    again = await refund(sim, sim.lenient, session_id, "100.00")
    assert again.status_code == 200


async def test_full_refund_when_no_amount_is_given(sim: Harness) -> None:
    session_id = (await sim.connect(amount="42.50"))["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    response = await refund(sim, sim.lenient, session_id)
    refund_id = response.json()["meta"]["session_id"]
    refund_payment = await sim.payment(refund_id)
    assert refund_payment["meta"]["type"] == "Refund"
    assert refund_payment["data"]["attributes"]["amount"] == "42.50"
    assert (await refund(sim, sim.lenient, session_id, "0.01")).status_code == 400


async def test_only_a_created_payment_can_be_refunded(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    response = await refund(sim, sim.lenient, session_id, "1.00")
    assert response.status_code == 400
    assert_error(response.json(), 400, "bad_request", "refund_aborted")
    await sim.complete(session_id, "pending")
    assert (await refund(sim, sim.lenient, session_id, "1.00")).status_code == 400
    unknown = await refund(sim, sim.lenient, "f" * 32, "1.00")
    assert_error(unknown.json(), 400, "bad_request", "session_id_invalid_or_expired")
    theirs = await refund(sim, sim.merchants["acquiring"], session_id, "1.00")
    assert_error(theirs.json(), 400, "bad_request", "session_id_invalid_or_expired")


async def test_payment_account_refunds_need_received_funds_and_are_immediate(sim: Harness) -> None:
    merchant = sim.merchants["acquiring"]
    completed = (await sim.connect(merchant))["meta"]["session_id"]
    await sim.complete(completed, "confirm")
    not_yet = await refund(sim, merchant, completed, "10.00")
    assert_error(not_yet.json(), 400, "bad_request", "refund_aborted")

    received = (await sim.connect(merchant))["meta"]["session_id"]
    await sim.complete(received, "confirm_received")
    response = await refund(sim, merchant, received, "10.00", state="refund-state")
    assert response.status_code == 200
    meta = response.json()["meta"]
    assert meta["status"] == "refund_accepted"
    refund_payment = await sim.payment(meta["session_id"], merchant)
    assert (refund_payment["meta"]["status"], refund_payment["meta"]["type"]) == ("payment_created", "Refund")
    await sim.flush()
    refund_webhook = [r for r in sim.receiver.received if b"type=Refund" in r.body]
    assert len(refund_webhook) == 1
    fields = verify_webhook(
        refund_webhook[0].headers,
        refund_webhook[0].body,
        app_id=merchant.app_id,
        private_key=merchant.private_key,
        now=START,
    ).fields
    assert fields["refunded_session_id"] == received
    assert (fields["session_id"], fields["amount"], fields["state"]) == (
        meta["session_id"],
        "10.00",
        "refund-state",
    )


async def test_refund_amount_is_validated(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    for amount in ("0", "1.001", "-5"):
        response = await refund(sim, sim.lenient, session_id, amount)
        assert response.status_code == 400
        assert_error(response.json(), 400, "bad_request", "invalid_field")

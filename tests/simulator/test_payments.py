"""GET/PATCH /pis/v2/payments (contract §5): the official shape, visibility, listing, cancelling."""

from __future__ import annotations

from tests.simulator.conftest import Harness
from tests.simulator.test_oauth import assert_error


async def test_payment_has_the_full_official_shape(sim: Harness) -> None:
    created = await sim.connect(amount="273", headers={"x-provider": "ftecfr"})
    session_id = created["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    body = await sim.payment(session_id)

    meta = body["meta"]
    assert set(meta) >= {
        "session_id",
        "status",
        "code",
        "provider",
        "is_accepted",
        "has_settlement_completed",
        "type",
        "initial_type",
        "customer_id",
    }
    assert meta["session_id"] == session_id
    assert (meta["status"], meta["code"], meta["provider"]) == ("payment_created", 200, "ftecfr")
    assert meta["is_accepted"] is True and meta["has_settlement_completed"] is True
    assert meta["type"] == meta["initial_type"] == "PayByBank"
    assert len(meta["customer_id"]) == 32

    data = body["data"]
    assert (data["id"], data["type"], data["transfer_state"]) == (session_id, "payments", "completed")
    attributes = data["attributes"]
    assert attributes["amount"] == "273"  # a string, exactly as sent
    assert attributes["currency"] == "EUR"
    assert attributes["communication"] == "ORDER-1"
    assert attributes["end_to_end_id"] == session_id
    assert attributes["execution_date"] == "2026-03-02"
    assert attributes["payment_scheme"] == "SEPA"
    assert attributes["transfer_state"] == "completed"
    assert attributes["account_type"] == "external"
    assert attributes["bank_account_id"]
    assert set(attributes["beneficiary"]) >= {"name", "iban", "swift_bic"}
    assert attributes["debtor"]["bank_account_id"]


async def test_fresh_session_is_provider_required_and_not_accepted(sim: Harness) -> None:
    created = await sim.connect()
    meta = (await sim.payment(created["meta"]["session_id"]))["meta"]
    assert meta["status"] == "provider_required"
    assert meta["is_accepted"] is False and meta["has_settlement_completed"] is False
    assert meta["provider"] is None


async def test_virtual_beneficiary_on_request(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    plain = await sim.payment(session_id)
    assert "virtual_beneficiary" not in plain["data"]["attributes"]
    response = await sim.api(
        "GET", f"/pis/v2/payments/{session_id}", sim.lenient, params={"with_virtualbeneficiary": "true"}
    )
    assert set(response.json()["data"]["attributes"]["virtual_beneficiary"]) >= {"name", "iban", "swift_bic"}


async def test_a_session_is_invisible_to_other_applications(sim: Harness) -> None:
    session_id = (await sim.connect(sim.lenient))["meta"]["session_id"]
    other = sim.merchants["acquiring"]
    response = await sim.api("GET", f"/pis/v2/payments/{session_id}", other)
    assert response.status_code == 404
    assert_error(response.json(), 404, "not_found", "not_found")
    cancel = await sim.api(
        "PATCH", f"/pis/v2/payments/{session_id}", other, json={"meta": {"status": "payment_cancelled"}}
    )
    assert cancel.status_code == 404
    assert (await sim.payment(session_id))["meta"]["status"] == "provider_required"


async def test_malformed_and_unknown_session_ids(sim: Harness) -> None:
    malformed = await sim.api("GET", "/pis/v2/payments/not-a-session", sim.lenient)
    assert malformed.status_code == 400
    assert_error(malformed.json(), 400, "bad_request", "session_id_invalid_or_expired")
    unknown = await sim.api("GET", "/pis/v2/payments/" + "0" * 32, sim.lenient)
    assert unknown.status_code == 404


async def test_list_shows_only_the_applications_own_sessions_and_filters_by_status(sim: Harness) -> None:
    first = (await sim.connect(state="a"))["meta"]["session_id"]
    second = (await sim.connect(state="b"))["meta"]["session_id"]
    await sim.connect(sim.merchants["acquiring"])
    await sim.complete(second, "confirm")

    listed = (await sim.api("GET", "/pis/v2/payments", sim.lenient)).json()
    assert listed["meta"]["count"] == 2
    assert {item["meta"]["session_id"] for item in listed["data"]} == {first, second}
    assert all(item["attributes"]["currency"] == "EUR" for item in listed["data"])

    paid = await sim.api("GET", "/pis/v2/payments", sim.lenient, params={"filter[status]": "payment_created"})
    assert [item["id"] for item in paid.json()["data"]] == [second]
    later = await sim.api("GET", "/pis/v2/payments", sim.lenient, params={"filter[from]": "2026-03-03"})
    assert later.json()["data"] == []


async def test_patch_cancels_an_open_payment_and_emits_one_webhook(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    response = await sim.api(
        "PATCH", f"/pis/v2/payments/{session_id}", sim.lenient, json={"meta": {"status": "payment_cancelled"}}
    )
    assert response.status_code == 200
    assert response.json()["meta"]["status"] == "payment_cancelled"
    await sim.flush()
    assert [d["event"] for d in await sim.deliveries(session_id=session_id)] == [
        "payment_session.status.payment_cancelled"
    ]


async def test_patch_refuses_a_paid_payment_and_other_statuses(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    other_status = await sim.api(
        "PATCH", f"/pis/v2/payments/{session_id}", sim.lenient, json={"meta": {"status": "payment_created"}}
    )
    assert other_status.status_code == 400
    assert_error(other_status.json(), 400, "bad_request", "invalid_field")
    await sim.complete(session_id, "confirm")
    paid = await sim.api(
        "PATCH", f"/pis/v2/payments/{session_id}", sim.lenient, json={"meta": {"status": "payment_cancelled"}}
    )
    assert paid.status_code == 400
    assert (await sim.payment(session_id))["meta"]["status"] == "payment_created"

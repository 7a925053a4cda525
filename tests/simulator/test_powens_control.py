"""The /_sim/powens control API: knobs for states the test connector cannot reach, the raw view,
and reset."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.simulator.conftest import POWENS_CLIENTS, POWENS_REDIRECT, Harness
from tests.simulator.test_oauth import assert_error


@pytest.mark.parametrize(
    ("change", "state", "error_code", "instruction_state"),
    [
        ({"state": "accepted"}, "accepted", None, "accepted"),
        ({"state": "partial"}, "partial", None, "accepted"),
        ({"state": "expired"}, "expired", None, None),
        ({"state": "done"}, "done", None, "done"),
        ({"state": "rejected"}, "rejected", "noSpecifiedReason", "rejected"),
        (
            {"state": "rejected", "error_code": "CancelledByClient"},
            "rejected",
            "CancelledByClient",
            "rejected",
        ),
        ({"state": "rejected", "error_code": "somethingNew"}, "rejected", "somethingNew", "rejected"),
    ],
)
async def test_knobs_reach_any_state_with_its_webhook(
    sim: Harness, change: dict[str, Any], state: str, error_code: str | None, instruction_state: str | None
) -> None:
    payment_id = (await sim.powens.create())["id"]
    result = await sim.powens.set_state(payment_id, **change)
    assert result["payment"]["state"] == state and result["payment"]["error_code"] == error_code
    assert result["webhook"]["event"] == "PAYMENT_STATE_UPDATED"
    assert result["webhook"]["fields"]["state"] == state
    body = await sim.powens.payment(payment_id)
    assert (body["state"], body["error_code"]) == (state, error_code)
    assert body["instructions"][0]["state"] == instruction_state
    assert result["payment"]["history"][-1]["source"] == "control"


async def test_a_knob_drops_what_is_left_of_the_label_scenario(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="pdng/rjct - x", execution_date_type="instant"))["id"]
    await sim.powens.complete(payment_id)
    await sim.powens.set_state(payment_id, state="accepted")
    await sim.advance(60)
    assert (await sim.powens.payment(payment_id))["state"] == "accepted"


async def test_knobs_may_move_out_of_a_final_state_to_test_monotonic_receivers(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="done - x"))["id"]
    await sim.powens.complete(payment_id)
    result = await sim.powens.set_state(payment_id, state="pending")
    assert result["payment"]["state"] == "pending" and result["webhook"] is not None


async def test_knob_input_is_validated(sim: Harness) -> None:
    payment_id = (await sim.powens.create())["id"]
    refused = await sim.client.post(f"/_sim/powens/payments/{payment_id}/state", json={"state": "paid"})
    assert refused.status_code == 400
    assert_error(refused.json(), 400, "bad_request", "invalid_field")
    await sim.powens.control(
        "POST", f"/payments/{payment_id}/state", {"state": "pending", "state_detail": "odd"}, expect=400
    )
    await sim.powens.control("POST", f"/payments/{payment_id}/state", {"state": "x", "extra": 1}, expect=400)
    # A state Powens does not document, for forward-compatibility tests, when asked for.
    unknown = await sim.powens.set_state(payment_id, state="onHold", allow_unknown=True)
    assert unknown["payment"]["state"] == "onHold"
    assert (await sim.powens.payment(payment_id))["state"] == "onHold"
    await sim.powens.control("POST", "/payments/1/state", {"state": "done"}, expect=404)
    await sim.powens.control("GET", "/payments/1", expect=404)


async def test_the_raw_view_has_the_scenario_the_webview_url_and_the_history(sim: Harness) -> None:
    identity = {"kind": "individual", "first_name": "Germaine", "last_name": "Michu"}
    payment_id = (await sim.powens.create(label="pdng - x", payer_identity=identity))["id"]
    raw = await sim.powens.control("GET", f"/payments/{payment_id}")
    assert raw["client_id"] == POWENS_CLIENTS["shop"].client_id
    assert raw["payer_identity"] == identity  # sensitive fields included
    assert raw["webview_url"] is None and raw["scenario"] == []
    scoped = await sim.powens.scoped_token(payment_id)
    link = (await sim.powens.control("GET", f"/payments/{payment_id}"))["webview_url"]
    query = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    assert link.startswith("http://sim.test/powens/webview/en/payment?")
    assert query == {
        "domain": "shop-sandbox.biapi.pro",
        "client_id": POWENS_CLIENTS["shop"].client_id,
        "redirect_uri": POWENS_REDIRECT,
        "code": scoped["token"],
        "payment_id": str(payment_id),
        "state": "order-1",
    }
    assert (await sim.client.get(link)).status_code == 200
    completed = await sim.powens.complete(payment_id)
    assert completed["redirect_url"] == (
        f"{POWENS_REDIRECT}?state=order-1&id_payment={payment_id}&payment_state=pending"
    )
    raw = completed["payment"]
    assert [step["code"] for step in raw["scenario"]] == ["pdng", "done"]
    assert [(h["state"], h["source"]) for h in raw["history"]] == [
        ("created", "created"),
        ("validating", "payer"),
        ("pending", "bank"),
    ]
    listed = (await sim.powens.control("GET", "/payments"))["payments"]
    assert [p["id"] for p in listed] == [payment_id]


async def test_reset_forgets_powens_payments_and_tokens(sim: Harness) -> None:
    token = await sim.powens.token()
    payment_id = (await sim.powens.create())["id"]
    await sim.powens.set_state(payment_id, state="done")
    await sim.control("POST", "/reset")
    assert (await sim.powens.control("GET", "/payments"))["payments"] == []
    assert await sim.deliveries() == []
    assert (await sim.powens.api("GET", "/payments", token=token)).status_code == 401
    # Ids are not reused after a reset.
    sim.powens._tokens.clear()
    assert (await sim.powens.create())["id"] != payment_id

"""Every documented status and transfer state (contract §6) is reachable, and the redirect contract (§7)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from simulator.fintecture.sessions import SESSION_STATUSES, TRANSFER_STATES
from tests.simulator.conftest import ORIGIN_URI, REDIRECT_URI, Harness
from tests.simulator.contract import verify_webhook
from tests.support import fintecture_contract as documented

# Contract §6, written out in tests/support, so a status dropped from the simulator fails here.
DOCUMENTED_STATUSES = list(documented.SESSION_STATUSES)
DOCUMENTED_TRANSFER_STATES = list(documented.TRANSFER_STATES)


def test_the_simulator_knows_every_documented_value() -> None:
    assert sorted(SESSION_STATUSES) == sorted(DOCUMENTED_STATUSES)
    assert sorted(TRANSFER_STATES) == sorted(DOCUMENTED_TRANSFER_STATES)


@pytest.mark.parametrize("status", [s for s in DOCUMENTED_STATUSES if s != "provider_required"])
async def test_control_api_reaches_each_status_with_one_webhook(sim: Harness, status: str) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    changed = await sim.set_status(session_id, status=status)
    assert changed["webhook"]["event"] == f"payment_session.status.{status}"
    assert (await sim.payment(session_id))["meta"]["status"] == status
    await sim.flush()
    [received] = sim.receiver.received
    webhook = verify_webhook(
        received.headers,
        received.body,
        app_id=sim.lenient.app_id,
        private_key=sim.lenient.private_key,
        now=sim.clock.now(),
    )
    assert webhook.fields["status"] == status
    assert webhook.fields["event"] == f"payment_session.status.{status}"


@pytest.mark.parametrize("transfer_state", DOCUMENTED_TRANSFER_STATES)
async def test_control_api_reaches_each_transfer_state(sim: Harness, transfer_state: str) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.set_status(session_id, status="payment_created", transfer_state="processing")
    if transfer_state == "processing":
        await sim.set_status(session_id, status="payment_created", transfer_state="completed")
    changed = await sim.set_status(session_id, status="payment_created", transfer_state=transfer_state)
    # Only the transfer state moved: still one webhook, named after the transfer state.
    assert changed["webhook"]["event"] == f"payment_session.transfer_states.{transfer_state}"
    payment = await sim.payment(session_id)
    assert payment["data"]["attributes"]["transfer_state"] == transfer_state
    assert payment["data"]["transfer_state"] == transfer_state


async def test_no_change_no_webhook(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    assert (await sim.set_status(session_id, status="provider_required"))["webhook"] is None
    await sim.flush()
    assert sim.receiver.received == []


async def test_received_amount_for_partial_payments(sim: Harness) -> None:
    session_id = (await sim.connect(amount="100.00"))["meta"]["session_id"]
    await sim.set_status(
        session_id, status="payment_partial", transfer_state="insufficient", received_amount="40.00"
    )
    await sim.flush()
    assert sim.receiver.received[0].body.decode().count("received_amount=40.00") == 1
    assert (await sim.payment(session_id))["data"]["attributes"]["received_amount"] == "40.00"


OUTCOMES = [
    ("confirm", "payment_created", "completed"),
    ("confirm_received", "payment_created", "received"),
    ("pending", "payment_pending", "pending"),
    ("reject", "payment_unsuccessful", "rejected"),
]


@pytest.mark.parametrize(("outcome", "status", "transfer_state"), OUTCOMES)
async def test_hosted_page_outcomes(sim: Harness, outcome: str, status: str, transfer_state: str) -> None:
    session_id = (await sim.connect(state="order-42"))["meta"]["session_id"]
    result = await sim.complete(session_id, outcome, bank="fteces")
    payment = await sim.payment(session_id)
    assert (payment["meta"]["status"], payment["data"]["attributes"]["transfer_state"]) == (
        status,
        transfer_state,
    )
    redirect = urlsplit(result["redirect_url"])
    assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == REDIRECT_URI
    query = {name: values[0] for name, values in parse_qs(redirect.query).items()}
    assert query == {
        "session_id": session_id,
        "status": status,
        "provider": "fteces",
        "customer_id": payment["meta"]["customer_id"],
        "state": "order-42",
    }
    await sim.flush()
    assert len(sim.receiver.received) == 1


async def test_pending_settles_on_the_clock(make_sim) -> None:  # type: ignore[no-untyped-def]
    async with make_sim(pending_settle_seconds=120) as sim:
        session_id = (await sim.connect())["meta"]["session_id"]
        await sim.complete(session_id, "pending")
        await sim.advance(119)
        assert (await sim.payment(session_id))["meta"]["status"] == "payment_pending"
        await sim.advance(1)
        payment = await sim.payment(session_id)
        assert (payment["meta"]["status"], payment["data"]["transfer_state"]) == (
            "payment_created",
            "completed",
        )
        await sim.flush()
        events = [d["event"] for d in await sim.deliveries(session_id=session_id)]
        assert events == ["payment_session.status.payment_pending", "payment_session.status.payment_created"]


async def test_rejected_payer_may_try_again_until_expiry(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.complete(session_id, "reject")
    await sim.complete(session_id, "confirm")
    assert (await sim.payment(session_id))["meta"]["status"] == "payment_created"
    again = await sim.client.post(f"/_sim/sessions/{session_id}/complete", json={"outcome": "confirm"})
    assert again.status_code == 409


async def test_abandon_goes_back_to_origin_uri_and_changes_nothing(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    result = await sim.complete(session_id, "abandon")
    assert result["redirect_url"] == ORIGIN_URI
    assert (await sim.payment(session_id))["meta"]["status"] == "provider_required"
    await sim.flush()
    assert sim.receiver.received == []


async def test_html_form_posts_redirect_the_browser_with_303(sim: Harness) -> None:
    created = await sim.connect(state="order-7")
    url = created["meta"]["url"]
    response = await sim.client.post(url, data={"bank": "ftecit", "outcome": "confirm"})
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    query = parse_qs(location.query)
    assert query["status"] == ["payment_created"] and query["provider"] == ["ftecit"]
    assert query["state"] == ["order-7"]
    assert query["session_id"] == [created["meta"]["session_id"]]
    # The page now says it is done instead of offering banks again.
    page = await sim.client.get(url)
    assert "payment_created" in page.text and "Demo Bank" not in page.text

    other = await sim.connect(state="order-8")
    back = await sim.client.post(other["meta"]["url"], data={"outcome": "abandon"})
    assert (back.status_code, back.headers["location"]) == (303, ORIGIN_URI)


async def test_expiry_on_the_clock(sim: Harness) -> None:
    body = {"meta": {"expiry": 600}, "data": {"attributes": {"amount": "10.00", "currency": "EUR"}}}
    created = await sim.connect(body=body)
    session_id = created["meta"]["session_id"]
    await sim.advance(599)
    assert (await sim.client.get(created["meta"]["url"])).status_code == 200
    await sim.advance(1)
    assert (await sim.payment(session_id))["meta"]["status"] == "payment_expired"
    page = await sim.client.get(created["meta"]["url"])
    assert page.status_code == 410 and "expired" in page.text
    late = await sim.client.post(f"/_sim/sessions/{session_id}/complete", json={"outcome": "confirm"})
    assert late.status_code == 410
    form = await sim.client.post(created["meta"]["url"], data={"outcome": "confirm", "bank": "ftecfr"})
    assert form.status_code == 410
    await sim.flush()
    assert [d["event"] for d in await sim.deliveries()] == ["payment_session.status.payment_expired"]


async def test_paid_sessions_do_not_expire(sim: Harness) -> None:
    body = {"meta": {"expiry": 60}, "data": {"attributes": {"amount": "10.00", "currency": "EUR"}}}
    session_id = (await sim.connect(body=body))["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    await sim.advance(3000)
    assert (await sim.payment(session_id))["meta"]["status"] == "payment_created"


async def test_a_rejected_payer_cannot_retry_after_expiry(sim: Harness) -> None:
    body = {"meta": {"expiry": 60}, "data": {"attributes": {"amount": "10.00", "currency": "EUR"}}}
    created = await sim.connect(body=body)
    session_id = created["meta"]["session_id"]
    await sim.complete(session_id, "reject")
    await sim.advance(60)
    late = await sim.client.post(f"/_sim/sessions/{session_id}/complete", json={"outcome": "confirm"})
    assert late.status_code == 410
    assert (await sim.client.get(created["meta"]["url"])).status_code == 410
    assert (await sim.payment(session_id))["meta"]["status"] == "payment_unsuccessful"

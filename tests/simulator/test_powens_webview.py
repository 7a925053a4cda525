"""The Powens webview (contract §3) and the test connector's label grammar on the clock (§7)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from simulator.config import PowensPhaseSeconds
from tests.simulator.conftest import (
    POWENS_CLIENTS,
    POWENS_REDIRECT,
    Harness,
    SimFactory,
)

WEBVIEW = "http://sim.test/powens/webview"
CANCEL_REDIRECT = "https://shop.example/powens/cancelled"


async def webview_params(sim: Harness, for_payment: int, **changes: Any) -> dict[str, Any]:
    """The webview URL's parameters as the merchant builds them (seed guide)."""
    scoped = await sim.powens.scoped_token(for_payment)
    params: dict[str, Any] = {
        "domain": "shop-sandbox.biapi.pro",
        "client_id": POWENS_CLIENTS["shop"].client_id,
        "redirect_uri": POWENS_REDIRECT,
        "state": "order-1",
        "code": scoped["token"],
        "payment_id": for_payment,
    }
    params.update(changes)
    return {name: value for name, value in params.items() if value is not None}


def webview_url(params: dict[str, Any], lang: str = "fr") -> str:
    return f"{WEBVIEW}/{lang}/payment?{urlencode(params)}"


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


async def states(sim: Harness, payment_id: int) -> list[str]:
    history = (await sim.powens.control("GET", f"/payments/{payment_id}"))["history"]
    return [step["state"] for step in history]


async def test_the_webview_shows_the_payment_and_the_test_connector(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="pdng/rjct - ORDER-1", amount=50.9))["id"]
    page = await sim.client.get(webview_url(await webview_params(sim, payment_id)))
    assert page.status_code == 200, page.text
    assert "50.90 EUR" in page.text and "Powens Test Bank" in page.text
    assert "pdng → rjct" in page.text and "15 min" in page.text
    # The merchant may also send domain without .biapi.pro, and no language.
    params = await webview_params(sim, payment_id, domain="shop-sandbox")
    assert (await sim.client.get(f"{WEBVIEW}/payment?{urlencode(params)}")).status_code == 200


async def test_validating_in_the_webview_redirects_to_the_client_redirect_uri(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="ORDER-1", state="order-1"))["id"]
    url = webview_url(await webview_params(sim, payment_id))
    answer = await sim.client.post(url, data={"outcome": "validate", "scenario": ""})
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(POWENS_REDIRECT + "?")
    assert query_of(location) == [
        ("state", "order-1"),
        ("id_payment", str(payment_id)),
        ("payment_state", "pending"),
    ]
    body = await sim.powens.payment(payment_id)
    assert body["state"] == "pending" and body["connector_uuid"] == "338178e6-3d01-564f-9a7b-52ca442459bf"
    assert body["instructions"][0]["state"] == "pending"
    assert await states(sim, payment_id) == ["created", "validating", "pending"]
    # The link cannot be used twice.
    again = await sim.client.get(url)
    assert again.status_code == 409 and "pending" in again.text


async def test_cancelling_in_the_webview(sim: Harness) -> None:
    payment_id = (await sim.powens.create(state="order-9"))["id"]
    url = webview_url(await webview_params(sim, payment_id, redirect_uri=CANCEL_REDIRECT))
    answer = await sim.client.post(url, data={"outcome": "cancel"})
    assert answer.status_code == 303
    assert answer.headers["location"] == (
        f"{CANCEL_REDIRECT}?state=order-9&id_payment={payment_id}&error=cancelled&error_code=CancelledByUser"
    )
    body = await sim.powens.payment(payment_id)
    assert (body["state"], body["error_code"]) == ("rejected", "CancelledByUser")


async def test_without_client_state_the_callback_has_no_state(sim: Harness) -> None:
    payment_id = (await sim.powens.create(state=None, label="done - x"))["id"]
    result = await sim.powens.complete(payment_id)
    assert query_of(result["redirect_url"]) == [("id_payment", str(payment_id)), ("payment_state", "done")]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"client_id": None}, 400),
        ({"code": None}, 400),
        ({"payment_id": None}, 400),
        ({"domain": None}, 400),
        ({"redirect_uri": None}, 400),
        ({"client_id": "99999"}, 400),
        ({"client_id": POWENS_CLIENTS["gzip"].client_id}, 400),  # another client: not its domain
        ({"domain": "other-sandbox.biapi.pro"}, 400),
        ({"redirect_uri": "https://evil.example/steal"}, 400),
        ({"code": "made-up"}, 401),
    ],
)
async def test_the_webview_checks_every_parameter(sim: Harness, changes: dict[str, Any], status: int) -> None:
    payment_id = (await sim.powens.create())["id"]
    url = webview_url(await webview_params(sim, payment_id, **changes))
    assert (await sim.client.get(url)).status_code == status
    assert (await sim.client.post(url, data={"outcome": "validate"})).status_code == status
    assert (await sim.powens.payment(payment_id))["state"] == "created"


async def test_the_code_must_be_this_payments_validate_token(sim: Harness) -> None:
    first = (await sim.powens.create())["id"]
    second = (await sim.powens.create())["id"]
    first_code = (await sim.powens.scoped_token(first))["token"]
    wrong_payment = await webview_params(sim, second, code=first_code)
    assert (await sim.client.get(webview_url(wrong_payment))).status_code == 403
    read_only = await sim.powens.api(
        "POST", f"/payments/{second}/scopedtoken", json={"scope": ["payments:read-only"]}
    )
    no_validate = await webview_params(sim, second, code=read_only.json()["token"])
    assert (await sim.client.get(webview_url(no_validate))).status_code == 403
    admin = await webview_params(sim, second, code=await sim.powens.token())
    assert (await sim.client.get(webview_url(admin))).status_code == 403
    assert (
        await sim.client.get(webview_url(await webview_params(sim, second), lang="fra"))
    ).status_code == 404


async def test_scoped_tokens_expire_after_seven_days(sim: Harness) -> None:
    payment_id = (await sim.powens.create())["id"]
    url = webview_url(await webview_params(sim, payment_id))
    await sim.advance(604_799)
    assert (await sim.client.get(url)).status_code == 200
    await sim.advance(1)
    assert (await sim.client.get(url)).status_code == 401


# The label grammar (§7), on the simulator's clock


@pytest.mark.parametrize(
    ("label", "execution_date_type", "expected"),
    [
        # label, type, [(seconds after validation, state, error_code)]
        ("done - ORDER-1", "first_open_day", [(0, "done", None)]),
        ("pdng - ORDER-1", "first_open_day", [(0, "pending", None), (900, "done", None)]),
        (
            "pdng/rjct - ORDER-1",
            "first_open_day",
            [(0, "pending", None), (900, "rejected", "noSpecifiedReason")],
        ),
        ("pdng/rjct - ORDER-1", "instant", [(0, "pending", None), (15, "rejected", "noSpecifiedReason")]),
        ("canc - ORDER-1", "instant", [(0, "rejected", "CancelledByUser")]),
        ("rjct - ORDER-1", "instant", [(0, "rejected", "noSpecifiedReason")]),
        ("err - ORDER-1", "instant", [(0, "rejected", "invalidAmount")]),
        ("bug - ORDER-1", "instant", [(0, "rejected", "bug")]),
        ("pdng/pdng/canc - x", "instant", [(0, "pending", None), (30, "rejected", "CancelledByUser")]),
        ("pdng/pdng - x", "instant", [(0, "pending", None), (30, "done", None)]),
        ("PDNG / DONE - upper case", "instant", [(0, "pending", None), (15, "done", None)]),
        ("done/rjct - a final state ends it", "instant", [(0, "done", None)]),
        ("ORDER-1 (no codes)", "instant", [(0, "pending", None), (15, "done", None)]),
        ("pdng/nope - unknown code", "instant", [(0, "pending", None), (15, "done", None)]),
        ("pdng/pdng/pdng/rjct - four codes", "instant", [(0, "pending", None), (15, "done", None)]),
    ],
)
async def test_the_label_scenario_runs_on_the_clock(
    sim: Harness, label: str, execution_date_type: str, expected: list[tuple[int, str, str | None]]
) -> None:
    payment_id = (await sim.powens.create(label=label, execution_date_type=execution_date_type))["id"]
    elapsed, previous = 0, "created"
    for at, state, error_code in expected:
        if at == 0:
            await sim.powens.complete(payment_id)
        else:  # a second early, nothing has moved yet
            await sim.advance(at - elapsed - 1)
            assert (await sim.powens.payment(payment_id))["state"] == previous
            await sim.advance(1)
            elapsed = at
        body = await sim.powens.payment(payment_id)
        assert (body["state"], body["error_code"]) == (state, error_code)
        previous = state
    await sim.advance(10_000)  # and nothing moves after that
    assert (await sim.powens.control("GET", f"/payments/{payment_id}"))["state"] == previous


async def test_every_state_change_is_one_webhook_in_order(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="pdng/pdng/rjct - x", execution_date_type="instant"))["id"]
    await sim.powens.complete(payment_id)
    await sim.advance(15)
    await sim.advance(15)
    await sim.flush()
    deliveries = await sim.deliveries(session_id=str(payment_id))
    assert [d["fields"]["state"] for d in deliveries] == ["validating", "pending", "rejected"]
    assert deliveries[0]["fields"]["action"] == "redirect" and deliveries[0]["fields"]["validate_uri"]
    assert deliveries[2]["fields"]["error_code"] == "noSpecifiedReason"
    assert await states(sim, payment_id) == ["created", "validating", "pending", "rejected"]


async def test_a_bug_redirects_from_the_webview_without_reaching_the_bank(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="bug - x"))["id"]
    url = webview_url(await webview_params(sim, payment_id, redirect_uri=CANCEL_REDIRECT))
    answer = await sim.client.post(url, data={"outcome": "validate"})
    assert query_of(answer.headers["location"]) == [
        ("state", "order-1"),
        ("id_payment", str(payment_id)),
        ("error_code", "bug"),
    ]
    assert answer.headers["location"].startswith(CANCEL_REDIRECT)
    assert await states(sim, payment_id) == ["created", "rejected"]


async def test_a_rejection_at_the_bank_comes_back_with_its_error_code(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="canc - x"))["id"]
    result = await sim.powens.complete(payment_id)
    assert query_of(result["redirect_url"]) == [
        ("state", "order-1"),
        ("id_payment", str(payment_id)),
        ("payment_state", "rejected"),
        ("error_code", "CancelledByUser"),
    ]


async def test_the_payer_may_pick_a_scenario_other_than_the_labels(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="pdng - x"))["id"]
    url = webview_url(await webview_params(sim, payment_id))
    answer = await sim.client.post(url, data={"outcome": "validate", "scenario": "done"})
    assert dict(query_of(answer.headers["location"]))["payment_state"] == "done"


async def test_phase_durations_are_configurable(make_sim: SimFactory) -> None:
    async with make_sim(powens_phase_seconds=PowensPhaseSeconds(first_open_day=60, instant=2)) as sim:
        slow = (await sim.powens.create(label="pdng - x"))["id"]
        fast = (await sim.powens.create(label="pdng - x", execution_date_type="instant"))["id"]
        await sim.powens.complete(slow)
        await sim.powens.complete(fast)
        await sim.advance(2)
        assert (await sim.powens.payment(fast))["state"] == "done"
        assert (await sim.powens.payment(slow))["state"] == "pending"
        await sim.advance(58)
        assert (await sim.powens.payment(slow))["state"] == "done"
        scenario = (await sim.powens.control("GET", f"/payments/{slow}"))["scenario"]
        assert [(step["code"], step["due"]) for step in scenario] == [
            ("pdng", "2026-03-02T09:00:00+00:00"),
            ("done", "2026-03-02T09:01:00+00:00"),
        ]


async def test_complete_outcomes_are_validated(sim: Harness) -> None:
    payment_id = (await sim.powens.create())["id"]
    await sim.powens.control("POST", f"/payments/{payment_id}/complete", {"outcome": "teleport"}, expect=400)
    await sim.powens.control(
        "POST", f"/payments/{payment_id}/complete", {"outcome": "validate", "scenario": "soon"}, expect=400
    )
    await sim.powens.control(
        "POST", f"/payments/{payment_id}/complete", {"outcome": "refuse_cancel"}, expect=409
    )
    assert (await sim.powens.complete(payment_id, "abandon"))["redirect_url"] is None
    assert (await sim.powens.payment(payment_id))["state"] == "created"
    await sim.powens.complete(payment_id, "validate", scenario="done")
    await sim.powens.control("POST", f"/payments/{payment_id}/complete", {"outcome": "validate"}, expect=409)
    await sim.powens.control("POST", "/payments/1/complete", {"outcome": "validate"}, expect=404)

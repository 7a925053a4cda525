"""Verified payouts end to end: service -> simulator (POST /pis/v2/request-for-payout, the payee's
page, the payout session and its webhooks) -> callback / inbox / sweeper / sync -> the payout
writer -> PostgreSQL, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
from sqlalchemy import select

from app.models import Payout, PayoutTransition, ProviderEvent
from tests.e2e.conftest import APP_ID, Stack, StackFactory, query_of
from tests.support.fintecture import build_delivery, public_key_from_pem

PAYEE = {"name": "John Doe", "email": "john@example.com"}
# Spaces and lower case on purpose: the service sends the electronic form.
BENEFICIARY = {"name": "Julien Lefebre", "iban": "FR14 2004 1010 0505 0001 3M02 606", "bic": "psstfrppxxx"}
IBAN = "FR1420041010050500013M02606"
PAYOUT_PATH = "/pis/v2/request-for-payout"
# A verified payout's transfer takes this long on the simulator's clock.
TRANSFER_SECONDS = 60


def through_payee(**extra: Any) -> dict[str, Any]:
    """Scenario 1: no verified beneficiary, the payee gives an account on the provider's page."""
    return {
        "amount": 2699,
        "currency": "EUR",
        "reference": "SELLER-42-2026-11",
        "communication": "Demo Shop payout November",
        "payee": PAYEE,
        **extra,
    }


def to_beneficiary(**extra: Any) -> dict[str, Any]:
    """Scenario 2: a verified beneficiary, the transfer starts at once."""
    return {
        "amount": 27300,
        "currency": "EUR",
        "reference": "SELLER-7-2026-11",
        "communication": "Demo Shop payout November",
        "beneficiary": BENEFICIARY,
        **extra,
    }


async def post_payout(stack: Stack, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = dict(stack.admin)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await stack.http.post(f"{stack.service_url}/payouts", headers=headers, json=body)


async def created(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    response = await post_payout(stack, body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def read(stack: Stack, payout_id: str) -> dict[str, Any]:
    response = await stack.http.get(f"{stack.service_url}/payouts/{payout_id}", headers=stack.admin)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def moves(stack: Stack, payout_id: str) -> list[tuple[str | None, str, str]]:
    return [
        (t["from_status"], t["to_status"], t["source"]) for t in (await read(stack, payout_id))["transitions"]
    ]


async def provider_payout_calls(stack: Stack) -> list[dict[str, Any]]:
    return [r for r in await stack.api_requests() if r["path"] == PAYOUT_PATH]


def query_sent(call: dict[str, Any]) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(call["query"]).items()}


async def payout_rows(stack: Stack) -> tuple[int, int]:
    return await stack.count(Payout), await stack.count(PayoutTransition)


async def drain(stack: Stack) -> None:
    """Deliver the simulator's webhooks and process the inbox here (the stack's worker is off)."""
    await stack.flush_webhooks()
    await stack.service.state.workers.drain_inbox()


def created_before(payout: dict[str, Any]) -> tuple[tuple[None, str, str], tuple[str, str, str]]:
    return (None, "creating", "api"), ("creating", payout["status"], "api")


async def test_scenario_1_through_the_payees_page_and_the_callback(stack: Stack) -> None:
    payout = await created(stack, through_payee(language="fr"))
    assert (payout["status"], payout["delivery"], payout["provider"]) == (
        "awaiting_payee",
        "link",
        "fintecture",
    )
    assert payout["payee"] == {**PAYEE, "phone": None} and payout["beneficiary"] is None
    assert payout["payee_url"].startswith(f"{stack.simulator_url}/connect/v2/")
    expires = datetime.fromisoformat(payout["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)

    [call] = await provider_payout_calls(stack)
    assert query_sent(call)["redirect_uri"] == f"{stack.service_url}/payouts/callback"
    assert call["headers"]["x-language"] == "fr"
    sent = json.loads(call["body"])
    assert sent["meta"] == {
        "psu_name": "John Doe",
        "psu_email": "john@example.com",
        "expiry": 604800,
        "method": "link",
    }
    assert sent["data"]["attributes"] == {
        "amount": "26.99",
        "currency": "EUR",
        "communication": "Demo Shop payout November",
    }

    # The provider's webhooks wait on the simulator's clock, so the payee's return is applied first.
    await stack.faults(webhook_delay={"count": 10, "seconds": 120})
    page = await stack.http.get(payout["payee_url"])
    assert page.status_code == 200 and "IBAN" in page.text
    submitted = await stack.http.post(
        payout["payee_url"],
        data={"outcome": "confirm", "name": "John Doe", "iban": "FR76 3000 6000 0112 3456 7890 189"},
    )
    assert submitted.status_code == 303
    back = submitted.headers["location"]
    assert back.startswith(f"{stack.service_url}/payouts/callback?")
    assert query_of(back)["state"] and query_of(back)["session_id"] == payout["provider_payout_id"]

    returned = await stack.http.get(back, headers={"Accept": "text/html"})
    assert returned.status_code == 200, returned.text
    assert "Your payout was sent" in returned.text
    done = await read(stack, payout["id"])
    assert (done["status"], done["provider_status"], done["transfer_state"]) == (
        "paid",
        "payment_created",
        "completed",
    )
    assert await moves(stack, payout["id"]) == [
        *created_before(payout),
        ("awaiting_payee", "paid", "callback"),
    ]

    # The webhooks arrive too, and change nothing; nor does the payee reloading the page.
    await stack.advance_clock(120)
    await stack.settle()
    events = await stack.count(
        ProviderEvent, ProviderEvent.provider_session_id == payout["provider_payout_id"]
    )
    assert events == 2  # iban_received, payment_created
    again = await stack.http.get(back)
    assert again.status_code == 200
    assert again.json() == {"payout_id": payout["id"], "status": "paid"}
    assert len(await moves(stack, payout["id"])) == 3


async def test_scenario_2_is_settled_by_webhook_only(stack_factory: StackFactory) -> None:
    stack = await stack_factory(simulator_overrides={"payout_transfer_seconds": TRANSFER_SECONDS})
    # The creation's own webhook waits a little, so it never overtakes the service's commit.
    await stack.faults(webhook_delay={"count": 1, "seconds": 5})
    payout = await created(stack, to_beneficiary())
    assert (payout["status"], payout["provider_status"], payout["transfer_state"]) == (
        "initiated",
        "payment_created",
        "initiated",
    )
    assert payout["beneficiary"] == {"name": "Julien Lefebre", "iban": IBAN, "bic": "PSSTFRPPXXX"}
    assert (payout["delivery"], payout["payee_url"], payout["expires_at"]) == (None, None, None)
    [call] = await provider_payout_calls(stack)
    sent = json.loads(call["body"])
    assert sent["data"]["attributes"]["beneficiary"] == {
        "name": "Julien Lefebre",
        "iban": IBAN,
        "swift_bic": "PSSTFRPPXXX",
    }
    assert sent["data"]["attributes"]["amount"] == "273.00"
    assert sent["meta"] == {"psu_name": "Julien Lefebre"}

    await stack.advance_clock(TRANSFER_SECONDS)  # the bank executes the transfer
    await stack.settle()
    assert (await read(stack, payout["id"]))["status"] == "paid"
    assert await moves(stack, payout["id"]) == [*created_before(payout), ("initiated", "paid", "webhook")]
    deliveries = await stack.deliveries(payout["provider_payout_id"])
    assert [d["event"] for d in deliveries] == [
        "payment_session.status.payment_created",
        "payment_session.transfer_states.completed",
    ]


async def test_a_forged_payout_callback_is_rejected_and_writes_nothing(stack: Stack) -> None:
    payout = await created(stack, through_payee())
    [call] = await provider_payout_calls(stack)
    state = query_sent(call)["state"]
    provider_id = payout["provider_payout_id"]
    before = await payout_rows(stack), await read(stack, payout["id"])
    reads_before = len([r for r in await stack.api_requests() if r["method"] == "GET"])

    forged = {
        "unknown state": {"state": "forged", "session_id": provider_id, "status": "payment_created"},
        "another payout's id": {"state": state, "session_id": "f" * 32, "status": "payment_created"},
        "no session id": {"state": state, "status": "payment_created"},
        "nothing": {},
    }
    for case, params in forged.items():
        response = await stack.http.get(f"{stack.service_url}/payouts/callback?{urlencode(params)}")
        assert response.status_code == 400, case
        assert response.json()["error"]["code"] == "invalid_payout_link", case
    page = await stack.http.get(
        f"{stack.service_url}/payouts/callback?{urlencode(forged['unknown state'])}",
        headers={"Accept": "text/html"},
    )
    assert page.status_code == 400 and "could not recognise this payout link" in page.text
    # A payout's return is not a payment's: the payment callback does not know it either.
    assert (
        await stack.http.get(f"{stack.service_url}/callback?state={state}&session_id={provider_id}")
    ).status_code == 400

    assert (await payout_rows(stack), await read(stack, payout["id"])) == before
    assert len([r for r in await stack.api_requests() if r["method"] == "GET"]) == reads_before

    # A genuine link whose query claims the payout is done: the provider is asked, and says otherwise.
    lying = await stack.http.get(
        f"{stack.service_url}/payouts/callback?"
        + urlencode({"state": state, "session_id": provider_id, "status": "payment_created"})
    )
    assert lying.status_code == 200
    assert lying.json() == {"payout_id": payout["id"], "status": "awaiting_payee"}
    assert await moves(stack, payout["id"]) == list(created_before(payout))


async def test_duplicate_and_out_of_order_payout_webhooks_give_one_transition_each(
    stack_factory: StackFactory, merchant_keys: tuple[str, str]
) -> None:
    stack = await stack_factory(workers_enabled=False)
    payout = await created(stack, through_payee())
    provider_id = payout["provider_payout_id"]

    # Each status in turn, every delivery sent three times.
    await stack.faults(webhook_duplicate={"count": 20, "copies": 3})
    for status, transfer in (
        ("iban_received", None),
        ("payment_created", "initiated"),
        ("payment_created", "completed"),
    ):
        await stack.drive(provider_id, status, transfer)
        await drain(stack)
    assert await moves(stack, payout["id"]) == [
        *created_before(payout),
        ("awaiting_payee", "account_received", "webhook"),
        ("account_received", "initiated", "webhook"),
        ("initiated", "paid", "webhook"),
    ]
    deliveries = await stack.deliveries(provider_id)
    assert sum(1 for d in deliveries for a in d["attempts"] if a["status_code"] == 200) == 9
    assert await stack.count(ProviderEvent, ProviderEvent.provider_session_id == provider_id) == 3

    # A second payout's deliveries held, then sent newest first (and twice each).
    other = await created(stack, through_payee(reference="SELLER-43-2026-11"))
    other_id = other["provider_payout_id"]
    await stack.faults(webhook_reorder={"count": 3}, webhook_duplicate={"count": 3, "copies": 2})
    await stack.drive(other_id, "iban_received")
    await stack.drive(other_id, "payment_created", "initiated")
    await stack.drive(other_id, "payment_created", "completed")
    await drain(stack)
    async with stack.sessionmaker() as db:
        arrived = await db.scalars(
            select(ProviderEvent.event_type)
            .where(ProviderEvent.provider_session_id == other_id)
            .order_by(ProviderEvent.id)
        )
        assert list(arrived) == [
            "payment_session.transfer_states.completed",
            "payment_session.status.payment_created",
            "payment_session.status.iban_received",
        ]
    assert await moves(stack, other["id"]) == [*created_before(other), ("awaiting_payee", "paid", "webhook")]

    # A late delivery (a new one, properly signed) saying the first payout still waits for its IBAN.
    body = urlencode(
        {"session_id": provider_id, "status": "iban_required", "type": "RequestForPayout", "state": "late"}
    ).encode()
    headers = build_delivery(
        public_key_from_pem(merchant_keys[1]),
        body,
        date=datetime.now(UTC),
        request_id=str(uuid.uuid4()),
        key_id=APP_ID,
    )
    late = await stack.http.post(f"{stack.service_url}/webhooks/fintecture", content=body, headers=headers)
    assert late.status_code == 200 and late.json() == {"received": True, "duplicate": False}
    replayed = await stack.http.post(f"{stack.service_url}/webhook", content=body, headers=headers)
    assert replayed.json() == {"received": True, "duplicate": True}
    await stack.service.state.workers.drain_inbox()
    assert (await read(stack, payout["id"]))["status"] == "paid"
    assert len(await moves(stack, payout["id"])) == 5
    async with stack.sessionmaker() as db:
        outcomes = set(await db.scalars(select(ProviderEvent.outcome)))
    assert {str(o) for o in outcomes} == {"applied"}


async def test_idempotency_key_replay_returns_the_same_payout(stack: Stack) -> None:
    first = await post_payout(stack, to_beneficiary(), key="payout-once-1")
    again = await post_payout(stack, to_beneficiary(), key="payout-once-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await post_payout(stack, to_beneficiary(amount=100), key="payout-once-1")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"

    # The same key at once from many clicks: still one payout, one provider call.
    burst = await asyncio.gather(
        *(post_payout(stack, through_payee(), key="payout-once-2") for _ in range(5))
    )
    assert {r.status_code for r in burst} <= {201, 409}
    assert len({r.json()["id"] for r in burst if r.status_code == 201}) == 1
    assert await stack.count(Payout) == 2
    assert len(await provider_payout_calls(stack)) == 2


async def test_invalid_requests_are_refused_and_write_nothing(stack: Stack) -> None:
    invalid: dict[str, dict[str, Any]] = {
        "IBAN check digits": to_beneficiary(
            beneficiary={**BENEFICIARY, "iban": "FR15 2004 1010 0505 0001 3M02 606"}
        ),
        "IBAN too short": to_beneficiary(beneficiary={**BENEFICIARY, "iban": "FR12312321321232321"}),
        "IBAN country": to_beneficiary(beneficiary={**BENEFICIARY, "iban": "ZZ1420041010050500013M02606"}),
        "BIC length": to_beneficiary(beneficiary={**BENEFICIARY, "bic": "PSSTFR"}),
        "BIC country": to_beneficiary(beneficiary={**BENEFICIARY, "bic": "PSSTZZPPXXX"}),
        "no payee nor beneficiary": {k: v for k, v in through_payee().items() if k != "payee"},
        "email without address": through_payee(payee={"name": "John Doe"}, delivery="email"),
        "sms without phone": through_payee(delivery="sms"),
        "bad phone": through_payee(payee={**PAYEE, "phone": "0612345678"}, delivery="sms"),
        "delivery with a beneficiary": to_beneficiary(delivery="email"),
        "zero amount": to_beneficiary(amount=0),
        "decimal amount": to_beneficiary(amount="273.00"),
        "unsupported currency": to_beneficiary(currency="USD"),
        "no communication": {k: v for k, v in to_beneficiary().items() if k != "communication"},
        "unknown field": to_beneficiary(fee=10),
    }
    for case, body in invalid.items():
        response = await post_payout(stack, body)
        assert response.status_code == 422, (case, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error", case
        assert error["details"], case
    iban = (await post_payout(stack, invalid["IBAN check digits"])).json()["error"]["details"][0]
    assert iban["field"] == "body.beneficiary.iban" and "not a valid IBAN" in iban["message"]
    bic = (await post_payout(stack, invalid["BIC country"])).json()["error"]["details"][0]
    assert bic["field"] == "body.beneficiary.bic" and "not a valid BIC" in bic["message"]

    not_enabled = await post_payout(stack, to_beneficiary(provider="nope"))
    assert (not_enabled.status_code, not_enabled.json()["error"]["code"]) == (422, "provider_not_enabled")
    no_key = await stack.http.post(f"{stack.service_url}/payouts", json=to_beneficiary())
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "unauthorized"

    assert await payout_rows(stack) == (0, 0)
    assert await provider_payout_calls(stack) == []


async def test_powens_cannot_pay_out(stack_factory: StackFactory) -> None:
    stack = await stack_factory(powens=True, default_provider="powens")
    refused = await post_payout(stack, to_beneficiary(provider="powens"))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_supported"
    assert await payout_rows(stack) == (0, 0)
    assert [r for r in await stack.api_requests() if r["provider"] == "powens"] == []
    # Without a provider named, a payout goes to the first enabled one that can pay out.
    payout = await created(stack, to_beneficiary())
    assert payout["provider"] == "fintecture"


async def test_a_payout_the_provider_refuses_is_kept_as_failed(stack: Stack) -> None:
    # The payout callback is not registered with the provider: it refuses the payout (400).
    app = stack.simulator.state.fintecture.config.applications[0]
    app.redirect_uris = [uri for uri in app.redirect_uris if not uri.endswith("/payouts/callback")]
    response = await post_payout(stack, to_beneficiary())
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payout_refused"
    [failed] = (await stack.http.get(f"{stack.service_url}/payouts", headers=stack.admin)).json()["items"]
    assert (failed["status"], failed["provider_payout_id"]) == ("failed", None)
    assert "invalid_field" in failed["last_error"]
    assert await moves(stack, failed["id"]) == [(None, "creating", "api"), ("creating", "failed", "api")]
    sync = await stack.http.post(f"{stack.service_url}/payouts/{failed['id']}/sync", headers=stack.admin)
    assert (sync.status_code, sync.json()["error"]["code"]) == (409, "payout_not_at_provider")

    # No answer at all: it may exist at the provider, so a person checks before paying again.
    await stack.faults(api_error={"status": 500, "path_prefix": PAYOUT_PATH, "count": 1})
    unsure = await post_payout(stack, through_payee())
    assert unsure.status_code == 502
    listed = (
        await stack.http.get(f"{stack.service_url}/payouts?status=needs_review", headers=stack.admin)
    ).json()
    [review] = listed["items"]
    assert "may have created" in review["review_reason"]


async def test_the_sweeper_and_the_operators_sync_reach_the_payout_writer(
    stack_factory: StackFactory,
) -> None:
    stack = await stack_factory(workers_enabled=False, simulator_overrides={"payout_transfer_seconds": 60})
    await stack.faults(webhook_drop={"count": 100})
    swept = await created(stack, to_beneficiary())
    synced = await created(stack, to_beneficiary(reference="SELLER-8-2026-11"))
    await stack.advance_clock(TRANSFER_SECONDS)
    assert await stack.count(ProviderEvent) == 0  # every webhook was lost

    sync = await stack.http.post(f"{stack.service_url}/payouts/{synced['id']}/sync", headers=stack.admin)
    assert sync.status_code == 200, sync.text
    assert sync.json()["changed"] is True and sync.json()["payout"]["status"] == "paid"
    await stack.sweep()
    assert await moves(stack, swept["id"]) == [*created_before(swept), ("initiated", "paid", "poll")]
    assert await moves(stack, synced["id"]) == [*created_before(synced), ("initiated", "paid", "operator")]
    again = await stack.http.post(f"{stack.service_url}/payouts/{synced['id']}/sync", headers=stack.admin)
    assert again.json()["changed"] is False
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        missing = await stack.http.post(f"{stack.service_url}/payouts/{unknown}/sync", headers=stack.admin)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_list_filters_and_pagination(stack: Stack) -> None:
    paid = [await created(stack, to_beneficiary(reference=f"BATCH-{n}")) for n in range(3)]
    waiting = [await created(stack, through_payee(reference=f"LINK-{n}")) for n in range(2)]
    assert {p["status"] for p in paid} == {"paid"}  # the simulator executes these at once

    async def page(**params: Any) -> httpx.Response:
        return await stack.http.get(f"{stack.service_url}/payouts", headers=stack.admin, params=params)

    seen: list[str] = []
    cursor = None
    while True:
        body = (await page(limit=2, **({"cursor": cursor} if cursor else {}))).json()
        assert len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["id"] for p in reversed(paid + waiting)]  # newest first, each once
    assert all(item["transitions"] is None for item in (await page()).json()["items"])

    assert [i["id"] for i in (await page(status="awaiting_payee")).json()["items"]] == [
        w["id"] for w in reversed(waiting)
    ]
    assert [i["id"] for i in (await page(reference="BATCH-1")).json()["items"]] == [paid[1]["id"]]
    start = datetime.fromisoformat(paid[1]["created_at"])
    end = datetime.fromisoformat(waiting[0]["created_at"])
    ranged = (await page(created_from=start.isoformat(), created_to=end.isoformat())).json()["items"]
    assert [i["id"] for i in ranged] == [paid[2]["id"], paid[1]["id"]]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert (await page(created_from=tomorrow)).json()["items"] == []
    assert len((await page(created_to=tomorrow)).json()["items"]) == 5

    for params, code in (
        ({"cursor": "nonsense"}, "invalid_cursor"),
        ({"status": "sent"}, "validation_error"),
        ({"created_from": tomorrow, "created_to": "2020-01-01"}, "invalid_range"),
        ({"limit": 0}, "validation_error"),
    ):
        response = await page(**params)
        assert (response.status_code, response.json()["error"]["code"]) == (422, code), params
    unauthorised = await stack.http.get(f"{stack.service_url}/payouts")
    assert unauthorised.status_code == 401
    assert (
        await stack.http.get(f"{stack.service_url}/payouts/{uuid.uuid4()}", headers=stack.admin)
    ).status_code == 404
